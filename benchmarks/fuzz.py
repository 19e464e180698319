"""The contract fuzz (tests/test_fuzz.py) at 10x CI's examples, with its figures.

Run: .venv/bin/python benchmarks/fuzz.py [--examples N]   (default 5000 per property: 10x
CI's 500; the properties that run torch work get a tenth of that, as in CI). Prints
per-property seconds and writes them to benchmarks/results/fuzz.txt.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "fuzz.txt"


def _properties() -> list[str]:
    text = (ROOT / "tests" / "test_fuzz.py").read_text()
    return re.findall(r"^def (test_\w+)", text, flags=re.M)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=5000)
    ap.add_argument("-k", default=None, help="only the properties matching (pytest -k)")
    args = ap.parse_args()
    env = {**os.environ, "DSCONV_FUZZ_EXAMPLES": str(args.examples), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=0",
           "-rf", "--timeout", "3600", "tests/test_fuzz.py"] + (["-k", args.k] if args.k else [])
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    props = _properties()
    durations = dict((name, float(s)) for s, name in re.findall(
        r"^([\d.]+)s call\s+tests/test_fuzz.py::(\w+)", p.stdout, flags=re.M))
    tail = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else p.stderr[-500:]
    lines = [f"fuzz: {len(props)} properties, DSCONV_FUZZ_EXAMPLES={args.examples} "
             f"(torch-heavy properties: {max(args.examples // 10, 10)})",
             *(f"  {name}: {durations[name]:.1f} s" for name in props if name in durations),
             f"pytest: {tail}",
             f"failures: {0 if p.returncode == 0 else 'see below'}; wall {took:.0f} s"]
    if p.returncode != 0:
        lines.append(p.stdout[-4000:])
    text = "\n".join(lines) + "\n"
    print(text, end="")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    if p.returncode != 0:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
