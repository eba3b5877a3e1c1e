#!/usr/bin/env python3
"""How well `plan --calibrate` forecasts a rollout: examples/local run three times, then the
calibrated forecast against the fourth run's actual finish.

A private copy of examples/local on a free loopback port is applied three times; then
`plan --fresh --calibrate --format json` gives totals.finish_ms, a fourth apply runs, and its
journal's run-end took_ms is the actual. Repeated for several rounds (each in a fresh copy);
the forecast error per round and the median are printed. Target: within 20%.

    python3 bench/calibrate.py [--rounds 3] [--milepost target/release/milepost]
"""

import argparse
import glob
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def milepost(binary, args, cwd):
    env = dict(os.environ, NO_COLOR="1")
    env.pop("MILEPOST_DEMO_FAIL", None)
    return subprocess.run([binary, *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)


def last_run_took_ms(state):
    runs = sorted(glob.glob(os.path.join(state, "runs", "*", "journal.jsonl")))
    with open(runs[-1]) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return next(r["took_ms"] for r in records if r["type"] == "run-end")


def round_once(binary):
    work = tempfile.mkdtemp(prefix="milepost-calibrate-")
    local = os.path.join(work, "local")
    shutil.copytree(os.path.join(REPO, "examples", "local"), local,
                    ignore=shutil.ignore_patterns(".work", ".milepost"))
    port = ["--var", f"port={free_port()}"]
    try:
        for _ in range(3):
            milepost(binary, ["apply", "phase2.kdl", *port], local)
        plan = json.loads(milepost(binary, ["plan", "phase2.kdl", "--fresh", "--calibrate",
                                            "--format", "json", *port], local).stdout)
        budget = json.loads(milepost(binary, ["plan", "phase2.kdl", "--fresh", "--format", "json",
                                              *port], local).stdout)
        milepost(binary, ["apply", "phase2.kdl", *port], local)
        actual = last_run_took_ms(os.path.join(local, ".milepost"))
        return plan["totals"]["finish_ms"], budget["totals"]["finish_ms"], actual
    finally:
        pid_file = os.path.join(local, ".work", "service.pid")
        if os.path.exists(pid_file):
            try:
                os.kill(int(open(pid_file).read().strip()), signal.SIGTERM)
            except (ValueError, ProcessLookupError):
                pass
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--milepost", default=os.path.join(REPO, "target", "release", "milepost"))
    args = parser.parse_args()
    args.milepost = os.path.abspath(args.milepost)
    if not os.path.exists(args.milepost):
        sys.exit(f"{args.milepost} does not exist; build it with `cargo build --release`")
    errors = []
    print(f"{'round':>5} {'calibrated':>11} {'budgets':>9} {'actual':>8} {'error':>7}")
    for i in range(args.rounds):
        forecast, budget, actual = round_once(args.milepost)
        error = (forecast - actual) / actual * 100
        errors.append(abs(error))
        print(f"{i + 1:>5} {forecast / 1000:>10.2f}s {budget / 1000:>8.0f}s {actual / 1000:>7.2f}s {error:>+6.1f}%")
    median = statistics.median(errors)
    verdict = "within" if median <= 20 else "outside"
    print(f"median |error| {median:.1f}% ({verdict} the 20% target)")


if __name__ == "__main__":
    main()
