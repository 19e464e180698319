"""Noise study and overhead of `dsconv profile` on configs/smoke.yaml.

Runs the smoke config N times (default 10) in fresh processes and reports, per case, the
spread of the measured median; the default --regression-threshold comes from it. Also
reports profile's overhead beyond the time it spent timing, excluding torch's import,
with the calibration cached (target <= 1.5x).
Run from the repo root: .venv/bin/python benchmarks/noise.py [N]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from dsconv_cli.gate import compare_baseline

ROOT = Path(__file__).parents[1]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    exe = [str(Path(sys.executable).parent / "dsconv"), "profile",
           str(ROOT / "configs" / "smoke.yaml"), "--json"]
    subprocess.run(exe, capture_output=True, check=False)  # warm the calibration cache
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    t_import = time.perf_counter() - t0
    medians: dict[str, list[float]] = {}
    iqrs: dict[str, list[float]] = {}
    runs: dict[str, list[dict[str, float]]] = {}
    overheads = []
    for _ in range(n):
        t0 = time.perf_counter()
        p = subprocess.run(exe, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        data = json.loads(p.stdout)
        timed = sum(c.get("timed_s", 0) for c in data["cases"])
        overheads.append((wall - t_import) / timed)
        for c in data["cases"]:
            medians.setdefault(c["name"], []).append(c["measured"]["median_ms"])
            iqrs.setdefault(c["name"], []).append(c["measured"]["iqr_ms"])
            runs.setdefault(c["name"], []).append(c["measured"])
    print(f"## Noise: configs/smoke.yaml, {n} runs\n")
    print("| case | median of medians ms | min | max | spread (max/min - 1) | CV | "
          "median IQR / median |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, ms in medians.items():
        med = statistics.median(ms)
        cv = statistics.stdev(ms) / statistics.mean(ms) if len(ms) > 1 else 0.0
        rel_iqr = statistics.median(iqrs[name]) / med
        print(f"| {name} | {med:.3f} | {min(ms):.3f} | {max(ms):.3f} | "
              f"{100 * (max(ms) / min(ms) - 1):.1f}% | {100 * cv:.1f}% | {100 * rel_iqr:.1f}% |")
    # every ordered pair of runs as (baseline, new): how often would an unchanged build
    # be called a regression at each threshold?
    pairs = [(a, b) for ms in runs.values() for i, a in enumerate(ms) for j, b in
             enumerate(ms) if i != j]
    print("\n| threshold | false regressions (of " + str(len(pairs)) + " run pairs) | "
          "'within noise' |")
    print("|---:|---:|---:|")
    for th in (0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.40, 0.50):
        st = [compare_baseline(b, a, th)["status"] for a, b in pairs]
        print(f"| {th:.2f} | {100 * st.count('regression') / len(st):.1f}% | "
              f"{100 * st.count('within noise') / len(st):.1f}% |")
    print(f"\n## Overhead\n\ntorch import {t_import:.2f} s; (wall - import) / timed: median "
          f"{statistics.median(overheads):.2f}x, max {max(overheads):.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    from _common import results_to

    with results_to("noise"):
        main()
