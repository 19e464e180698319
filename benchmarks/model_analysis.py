"""Whole-model analysis benchmarks, measured side by side in one run (issue: analyse the
user's own network).

1. Speed: the whole process `dsconv compare --arch tests.models:resnet50 --input-shape
   1,3,224,224 --json` against a whole process running torchinfo's `summary` of the same
   model (torchinfo is installed for this benchmark only: `pip install torchinfo`).
2. Memory: a ViT-Huge-sized encoder (d 1280, 32 blocks, ~630M params) analysed with
   `--arch` alone: peak RSS of the process (its weights are never materialised), beside the
   2.5 GB its fp32 weights alone would take.
3. Per-module times with `--measure`: the top-level modules' inclusive times and "other"
   against the hooked whole they were attributed in, and what the hooks add.

Run from the repo root: .venv/bin/python benchmarks/model_analysis.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
DSCONV = [sys.executable, "-m", "dsconv_cli"]
TORCHINFO = ("from torchinfo import summary; from tests.models import resnet50; "
             "summary(resnet50(), input_size=(1, 3, 224, 224), verbose=0)")


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr}")
    return time.perf_counter() - t0


def peak_rss_mb(cmd: list[str]) -> tuple[float, str]:
    """Peak resident memory of a child process (ru_maxrss of the waited child)."""
    code = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], "
            "capture_output=True, text=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
            "print(p.returncode); print(p.stdout[-4000:])")
    p = subprocess.run([sys.executable, "-c", code, *cmd], cwd=ROOT, capture_output=True,
                       text=True)
    lines = p.stdout.splitlines()
    return int(lines[0]) / 1024, "\n".join(lines[2:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    dsconv = [*DSCONV, "compare", "--arch", "tests.models:resnet50", "--input-shape",
              "1,3,224,224", "--json"]
    torchinfo = [sys.executable, "-c", TORCHINFO]
    ds_t, ti_t = [], []
    for _ in range(args.runs):  # interleaved, so drift hits both alike
        ds_t.append(wall(dsconv))
        ti_t.append(wall(torchinfo))
    d, t = statistics.median(ds_t), statistics.median(ti_t)
    print(f"## ResNet-50 (25.6M params), whole process, median of {args.runs}")
    print(f"dsconv compare --arch ... --json : {d:.2f} s  [{min(ds_t):.2f}-{max(ds_t):.2f}]")
    print(f"torchinfo summary                : {t:.2f} s  [{min(ti_t):.2f}-{max(ti_t):.2f}]")
    print(f"dsconv / torchinfo               : {d / t:.2f}x (target <= 1)")

    with tempfile.TemporaryDirectory() as tmp:
        rep = Path(tmp) / "vit.json"
        vit = [*DSCONV, "compare", "--arch", "tests.zoo:vit_huge_encoder", "--input-shape",
               "1,3,224,224", "--format", "csv", "--report", str(rep)]
        rss, _ = peak_rss_mb(vit)
        params = json.loads(rep.read_text())["cases"][0]["totals"]["params"]
    print("\n## ViT-Huge-sized encoder, --arch only (no weights)")
    print(f"params: {params:,} (fp32 weights would be {params * 4 / 1e9:.2f} GB)")
    print(f"peak RSS: {rss:.0f} MB (target < 1024 MB)")

    meas = [*DSCONV, "compare", "--arch", "tests.models:small_resnet", "--input-shape",
            "8,3,64,64", "--measure", "--json", "--depth", "1", "--min-time", "0.3"]
    p = subprocess.run(meas, cwd=ROOT, capture_output=True, text=True)
    case = json.loads(p.stdout)["cases"][0]
    tot = case["totals"]
    whole = tot["attributed_ms"]  # the hooked forwards the parts were attributed in
    top = sum(la["measured"]["inclusive_ms"] for la in case["layers"]
              if la["depth"] == 1 and la.get("measured"))
    print("\n## Per-module attribution (small ResNet, batch 8, 64x64)")
    print(f"hooked whole {whole:.3f} ms (mean); top-level modules sum {top:.3f} ms; other "
          f"{tot['other_ms']:.3f} ms = {100 * tot['other_share']:+.1f}%; parts + other - "
          f"whole = {100 * (top + tot['other_ms'] - whole) / whole:+.2f}% (target within 10%)")
    print(f"without hooks (interleaved) {tot['unhooked_ms']:.3f} ms: hooks add "
          f"{100 * tot['hook_overhead']:+.1f}%; whole-model median "
          f"{case['measured']['median_ms']:.3f} ms")


if __name__ == "__main__":
    from _common import results_to

    with results_to("model_analysis"):
        main()
