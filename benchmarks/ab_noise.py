"""False alarms and power of dsconv's A/B gate on this machine (issue: timing you can gate on).

Same-job A/B (profile `vs:`): 40 runs of a model against an identical copy, 40 against one
with 10% more work (one more identical conv in ten), 40 against 25% more; each run is one
interleaved A/B at the defaults (10 rounds, min_time 0.2 s per side). Reported, per set:
- "A/B says different": verdict faster/slower (p < 0.05, CI excludes 1);
- "gate fails": max_slowdown's rule, slower by more than 10% AND p < 0.01.
Stored baselines across processes: 40 pairs of separate processes timing the identical
model (and the +10% / +25% ones against the base), compared with `compare_baseline`
(U test + the default 30% threshold), as `profile --baseline` does.

Run from the repo root: .venv/bin/python benchmarks/ab_noise.py [--runs 40] [--min-time 0.2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dsconv_cli.gate import DEFAULT_MAX_SLOWDOWN, DEFAULT_REGRESSION_THRESHOLD, compare_baseline
from dsconv_cli.stats import compare_samples
from dsconv_cli.torch_backend.measure import ab_modules, open_session
from dsconv_cli.torch_backend.timing import MeasureOptions

SHAPE = (1, 64, 32, 32)


def chain(n: int) -> nn.Module:
    torch.manual_seed(0)
    conv = [nn.Conv2d(64, 64, 3, padding=1, bias=False) for _ in range(n)]
    return nn.Sequential(*[m for c in conv for m in (c, nn.ReLU())])


def rates(results: list[tuple[str, float, float]], threshold: float) -> tuple[float, float]:
    different = sum(v != "no difference detected" for v, _, _ in results) / len(results)
    gate = sum(1 / est - 1 > threshold and p < 0.01 for _, est, p in results) / len(results)
    return different, gate


#: (label, convs in the reference, convs in the model under test)
PAIRS = (("identical", 10, 10), ("+10% work", 10, 11), ("+25% work", 8, 10))


def same_job(runs: int, opts: MeasureOptions) -> dict[str, list[tuple[str, float, float]]]:
    session = open_session(opts)
    out: dict[str, list[tuple[str, float, float]]] = {}
    for label, n_ref, n_model in PAIRS:
        res = []
        ref, model = chain(n_ref), chain(n_model)
        for _ in range(runs):
            # A = the model under test, B = the reference: estimate = time(ref)/time(model)
            a, b = ab_modules(lambda m=model: m, SHAPE, "nchw", lambda m=ref: m, SHAPE, "nchw",
                              session)
            ab = compare_samples(a.samples_ms or [], b.samples_ms or [])
            res.append((ab.verdict, ab.estimate, ab.p_value))
        out[label] = res
    return out


def process_samples(n: int, min_time: float) -> dict[str, Any]:
    code = ("import json, torch; from benchmarks.ab_noise import chain, SHAPE; "
            "from dsconv_cli.torch_backend.measure import measure_module, open_session; "
            "from dsconv_cli.torch_backend.timing import MeasureOptions; "
            "from dsconv_cli.cost import Cost; "
            f"s = open_session(MeasureOptions('cpu', 'fp32', None, ('nchw',), {min_time}, 3)); "
            "c = Cost('m', 0, 1, SHAPE, SHAPE, 1, 0, 0, 4); "
            f"m, _ = measure_module(lambda: chain({n}), SHAPE, c, s); "
            "print(json.dumps({'median_ms': m.median_ms, 'q1_ms': m.q1_ms, "
            "'q3_ms': m.q3_ms, 'samples_ms': m.samples_ms}))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=Path(__file__).parents[1])
    if p.returncode != 0:
        raise SystemExit(f"a measuring process failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--min-time", type=float, default=0.2)
    ap.add_argument("--skip-processes", action="store_true")
    args = ap.parse_args()
    opts = MeasureOptions("cpu", "fp32", None, ("nchw",), args.min_time, 3, rounds=10)
    res = same_job(args.runs, opts)
    print(f"## Same-job A/B, {args.runs} runs each, 10 rounds, min_time {args.min_time} s")
    print("| pair | A/B says different | gate fails (>10% and p<0.01) | median estimate |")
    print("|---|---:|---:|---:|")
    for label, r in res.items():
        diff, gate = rates(r, DEFAULT_MAX_SLOWDOWN)
        est = sorted(e for _, e, _ in r)[len(r) // 2]
        print(f"| {label} | {100 * diff:.1f}% | {100 * gate:.1f}% | {est:.3f}x |")
    if args.skip_processes:
        return
    print(f"\n## Stored baseline across processes, {args.runs} pairs, threshold "
          f"{DEFAULT_REGRESSION_THRESHOLD}")
    print("| pair | U test significant (p<0.01) | regression (gate) |")
    print("|---|---:|---:|")
    for label, n_ref, n_model in PAIRS:
        sig = reg = 0
        for _ in range(args.runs):
            base = process_samples(n_ref, args.min_time)
            new = process_samples(n_model, args.min_time)
            check = compare_baseline(new, base, DEFAULT_REGRESSION_THRESHOLD)
            sig += check.get("p_value", 1) < 0.01
            reg += check["status"] == "regression"
        print(f"| {label} | {100 * sig / args.runs:.1f}% | {100 * reg / args.runs:.1f}% |")


if __name__ == "__main__":
    main()
