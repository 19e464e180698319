"""The contract fuzz (tests/test_fuzz.py) at 10x CI's examples, with its figures.

Run: .venv/bin/python benchmarks/fuzz.py [--examples N]   (default 5000 per property: 10x
CI's 500; the properties that run torch work get a tenth of that, as in CI). Prints
per-property seconds and writes them to benchmarks/results/fuzz.txt. ``--tests
tests/test_fuzz_merge.py`` fuzzes another file's properties (the merge re-judging) and
writes benchmarks/results/fuzz_merge.txt.
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
DEFAULT_TESTS = "tests/test_fuzz.py"


def _properties(tests: str) -> list[str]:
    text = (ROOT / tests).read_text()
    return re.findall(r"^def (test_\w+)", text, flags=re.M)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=5000)
    ap.add_argument("-k", default=None, help="only the properties matching (pytest -k)")
    ap.add_argument("--tests", default=DEFAULT_TESTS, help="the file of properties")
    args = ap.parse_args(argv)
    name = Path(args.tests).stem.removeprefix("test_")
    results = RESULTS.with_name(f"{name}.txt")
    env = {**os.environ, "DSCONV_FUZZ_EXAMPLES": str(args.examples), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=0",
           "-rf", "--timeout", "3600", args.tests] + (["-k", args.k] if args.k else [])
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    props = _properties(args.tests)
    durations = dict((prop, float(s)) for s, prop in re.findall(
        rf"^([\d.]+)s call\s+{re.escape(args.tests)}::(\w+)", p.stdout, flags=re.M))
    tail = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else p.stderr[-500:]
    of = "" if args.tests == DEFAULT_TESTS else f" of {args.tests}"
    lines = [f"fuzz: {len(props)} properties{of}, DSCONV_FUZZ_EXAMPLES={args.examples} "
             f"(torch-heavy properties: {max(args.examples // 10, 10)})",
             *(f"  {prop}: {durations[prop]:.1f} s" for prop in props if prop in durations),
             f"pytest: {tail}",
             f"failures: {0 if p.returncode == 0 else 'see below'}; wall {took:.0f} s"]
    if p.returncode != 0:
        lines.append(p.stdout[-4000:])
    text = "\n".join(lines) + "\n"
    print(text, end="")
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(text)
    if p.returncode != 0:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
