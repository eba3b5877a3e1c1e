#!/usr/bin/env python3
"""milepost against make -j2 and ninja -j2 on the same generated DAG, in one run.

A seeded DAG of N steps, each depending on up to 3 random steps among the previous 50, is
written as a milepost workflow (one module per step), a Makefile and a build.ninja. Each
tool runs it for several interleaved rounds; medians and milepost's ratio to make are
printed. Two workloads: `true` (pure overhead) and `sleep 0.01`.

    python3 bench/compare.py [--steps 1000] [--rounds 5] [--seed 7] [--milepost target/release/milepost]
                             [--workload true|sleep]

Shared VMs are noisy (±5% between runs of the same binary): use 15 rounds or more for a
figure to quote.

Needs make and ninja (apt-get install ninja-build). Peak RSS of milepost is printed too.
"""

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def dag(n, seed):
    rng = random.Random(seed)
    deps = []
    for i in range(n):
        window = list(range(max(0, i - 50), i))
        deps.append(sorted(rng.sample(window, min(len(window), rng.randint(0, 3)))))
    return deps


def write(dir, deps, command):
    with open(os.path.join(dir, "w.kdl"), "w") as f:
        f.write("workflow bench { parallelism 2 }\n")
        for i, d in enumerate(deps):
            after = f"after {' '.join(f's{j}' for j in d)}; " if d else ""
            f.write(f'module s{i} {{ budget "1m"; {after}install {{ run step "{command}" }} }}\n')
    with open(os.path.join(dir, "Makefile"), "w") as f:
        f.write(".PHONY: all " + " ".join(f"s{i}" for i in range(len(deps))) + "\n")
        f.write("all: " + " ".join(f"s{i}" for i in range(len(deps))) + "\n")
        for i, d in enumerate(deps):
            f.write(f"s{i}: {' '.join(f's{j}' for j in d)}\n\t@{command}\n")
    with open(os.path.join(dir, "build.ninja"), "w") as f:
        f.write(f"rule step\n  command = {command}\n")
        for i, d in enumerate(deps):
            # phony outputs: ninja runs every step every time, like make's .PHONY
            order = f" | {' '.join(f's{j}' for j in d)}" if d else ""
            f.write(f"build s{i}: step{order}\n")
        f.write("build all: phony " + " ".join(f"s{i}" for i in range(len(deps))) + "\ndefault all\n")


def timed(cmd, cwd):
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed: {proc.stderr.decode()[-2000:]}")
    return took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--milepost", default="target/release/milepost")
    ap.add_argument("--workload", choices=["true", "sleep"], help="run one workload only")
    args = ap.parse_args()
    milepost = os.path.abspath(args.milepost)
    for tool in ("make", "ninja"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed (apt-get install make ninja-build)")
    deps = dag(args.steps, args.seed)
    print(f"{args.steps} steps, {sum(map(len, deps))} edges, seed {args.seed}, {args.rounds} rounds, -j2")
    workloads = {"true": ["true"], "sleep": ["sleep 0.01"], None: ["true", "sleep 0.01"]}[args.workload]
    for workload in workloads:
        with tempfile.TemporaryDirectory() as dir:
            write(dir, deps, workload)
            times = {"milepost": [], "make": [], "ninja": []}
            for _ in range(args.rounds):
                shutil.rmtree(os.path.join(dir, ".milepost"), ignore_errors=True)
                for f in (".ninja_log", ".ninja_deps"):
                    if os.path.exists(os.path.join(dir, f)):
                        os.remove(os.path.join(dir, f))
                times["make"].append(timed(["make", "-j2", "-s", "all"], dir))
                times["ninja"].append(timed(["ninja", "-j2", "-d", "keepdepfile", "all"], dir))
                before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                times["milepost"].append(timed([milepost, "apply", "w.kdl", "--progress", "plain"], dir))
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            med = {k: statistics.median(v) for k, v in times.items()}
            print(f"\nworkload `{workload}` (median of {args.rounds}):")
            for k in ("make", "ninja", "milepost"):
                print(f"  {k:9} {med[k]:7.3f} s   ({med[k] / med['make']:.2f}x make)")
            print(f"  peak RSS of the largest child so far: {rss / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
