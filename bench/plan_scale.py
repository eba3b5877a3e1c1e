#!/usr/bin/env python3
"""Times the whole `milepost plan` command on generated workflows (issue 15 item 10).

    python3 bench/plan_scale.py [--bin target/release/milepost] [--sizes 10000,100000] [--rounds 3]

The workflow is the one `benches/scale.rs` generates (`generate(n)`: module i after three of
the 50 before it, chosen by the same xorshift), written to a temp dir; each size is planned
`--rounds` times (`plan FILE > /dev/null`, also `--format json`) and the median wall time
printed, beside `validate` of the same file (what loading alone costs).
"""
import argparse
import os
import statistics
import subprocess
import tempfile
import time

MASK = (1 << 64) - 1


def generate(n):
    out = ['workflow generated {\n    parallelism 8\n    vars { host "svc.internal" }\n}\n']
    seed = 0x9E3779B97F4A7C15
    for i in range(n):
        out.append(f'module m{i} {{\n    budget "{10 + i % 50}m" buffer="10%"\n')
        if i > 0:
            out.append("    after")
            for _ in range(min(3, i)):
                seed ^= (seed << 13) & MASK
                seed ^= seed >> 7
                seed ^= (seed << 17) & MASK
                back = 1 + seed % min(50, i)
                out.append(f" m{i - back}")
            out.append("\n")
        out.append(
            f'    install {{ run deploy "kubectl apply -f {{{{ dir }}}}/m{i}.yaml" timeout="5m" retries=1 }}\n'
            f'    validate {{ http health "https://{{{{ vars.host }}}}/m{i}/healthz" expect=200 }}\n}}\n'
        )
    return "".join(out)


def timed(cmd):
    began = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/milepost")
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(s) for s in args.sizes.split(",")]:
            path = os.path.join(tmp, f"generated-{n}.kdl")
            with open(path, "w") as f:
                f.write(generate(n))
            for label, extra in [("validate", None), ("plan", []), ("plan --format json", ["--format", "json"])]:
                cmd = [args.bin, "validate", path] if extra is None else [args.bin, "plan", path, "--fresh", *extra]
                runs = [timed(cmd) for _ in range(args.rounds)]
                print(f"{n:>7} {label:<18} median {statistics.median(runs):7.2f} s  (runs: "
                      + ", ".join(f"{r:.2f}" for r in runs) + ")", flush=True)


if __name__ == "__main__":
    main()
