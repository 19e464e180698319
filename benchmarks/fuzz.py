"""The contract fuzz (tests/test_fuzz.py) at 10x CI's examples, with its figures.

Run: .venv/bin/python benchmarks/fuzz.py [--examples N]   (default 2000 per property)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=2000)
    args = ap.parse_args()
    env = {**os.environ, "DSCONV_FUZZ_EXAMPLES": str(args.examples), "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "tests/test_fuzz.py"], cwd=ROOT, env=env, capture_output=True,
                       text=True)
    took = time.perf_counter() - t0
    tail = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else p.stderr[-500:]
    n_props = 4
    print(f"properties: {n_props}, examples each: {args.examples}, "
          f"invocations: {n_props * args.examples:,}")
    print(f"pytest: {tail}")
    print(f"failures: {0 if p.returncode == 0 else 'see output'}; wall {took:.0f} s")
    if p.returncode != 0:
        print(p.stdout[-4000:])
        raise SystemExit(1)


if __name__ == "__main__":
    main()
