"""False alarms and power of dsconv's A/B gate on this machine (issue 19: verdicts noise
cannot flip).

Same-job A/B (profile `vs:`): N runs (default 100) of a chain of convs against an identical
copy, against one with 5% more work (20 vs 21 identical convs) and 10% more (20 vs 22). Each
run is one **sequential** interleaved A/B as profile runs it: 10 rounds, then rounds added
until the ratio's 99% interval is narrower than the threshold (5%) or the time cap (50 s).
Reported per pair:
- "flagged": verdict slower/faster at alpha 0.01 (p < 0.01 and the 99% interval excludes 1);
- rounds and seconds per run (median, max): the target is under 60 s per pair.
Targets: +5% flagged in >= 90% of runs, identical pairs in <= 1%.
Stored baselines across processes (unless --skip-processes): N pairs of separate processes
timing the identical model (and the +5% / +10% ones against the base), compared with
`compare_baseline` (U test + the default 30% threshold), as `profile --baseline` does.

Run from the repo root: .venv/bin/python benchmarks/ab_noise.py [--runs 100] [--quick]
(--quick: 3 runs, shorter timing, no processes, nothing written: a check that it works).
Writes benchmarks/results/ab_noise.txt.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dsconv_cli.gate import DEFAULT_REGRESSION_THRESHOLD, compare_baseline
from dsconv_cli.options import MeasureOptions
from dsconv_cli.stats import compare_samples
from dsconv_cli.torch_backend.measure import ab_modules, open_session

SHAPE = (1, 32, 32, 32)
ALPHA = 0.01
#: the sequential A/B stops when the 99% interval's high end is within this of its low end
WIDTH = 0.05
TIME_CAP_S = 50.0


def chain(n: int) -> nn.Module:
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 32, 3, padding=1, bias=False)  # n times the same work
    return nn.Sequential(*[m for _ in range(n) for m in (conv, nn.ReLU())])


#: (label, convs in the reference, convs in the model under test)
PAIRS = (("identical", 20, 20), ("+5% work", 20, 21), ("+10% work", 20, 22))


def same_job(runs: int, opts: MeasureOptions, cap: float
             ) -> dict[str, list[tuple[str, float, int, float]]]:
    """Per pair: (verdict at ALPHA, estimate, rounds, seconds) of each run."""
    session = open_session(opts)
    out: dict[str, list[tuple[str, float, int, float]]] = {}
    for label, n_ref, n_model in PAIRS:
        res = []
        ref, model = chain(n_ref), chain(n_model)
        for _ in range(runs):
            t0 = time.perf_counter()
            # A = the model under test, B = the reference: estimate = time(ref)/time(model)
            a, b = ab_modules(lambda m=model: m, SHAPE, "nchw", lambda m=ref: m, SHAPE, "nchw",
                              session, width=WIDTH, time_cap=cap, alpha=ALPHA)
            ab = compare_samples(a.samples_ms or [], b.samples_ms or [], alpha=ALPHA)
            res.append((ab.verdict, ab.estimate, ab.n[0], time.perf_counter() - t0))
        out[label] = res
    return out


def table(res: dict[str, list[tuple[str, float, int, float]]]) -> None:
    print("| pair | flagged (p<0.01, 99% CI excludes 1) | median estimate | rounds "
          "(median, max) | seconds (median, max) |")
    print("|---|---:|---:|---:|---:|")
    for label, r in res.items():
        flagged = sum(v != "no difference detected" for v, _, _, _ in r) / len(r)
        est = statistics.median(e for _, e, _, _ in r)
        rounds = [n for _, _, n, _ in r]
        secs = [t for _, _, _, t in r]
        print(f"| {label} | {100 * flagged:.1f}% | {est:.3f}x | "
              f"{statistics.median(rounds):.0f}, {max(rounds)} | "
              f"{statistics.median(secs):.1f}, {max(secs):.1f} |")


def process_samples(n: int, min_time: float) -> dict[str, Any]:
    code = ("import json, torch; from benchmarks.ab_noise import chain, SHAPE; "
            "from dsconv_cli.torch_backend.measure import measure_module, open_session; "
            "from dsconv_cli.options import MeasureOptions; "
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
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--min-time", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=None, help="default: torch's")
    ap.add_argument("--skip-processes", action="store_true")
    ap.add_argument("--quick", action="store_true",
                    help="3 runs, min_time 0.05 s, a 10 s cap, one thread, no processes, "
                    "nothing written")
    args = ap.parse_args()
    runs, min_time, cap, threads = ((3, 0.05, 10.0, 1) if args.quick
                                    else (args.runs, args.min_time, TIME_CAP_S, args.threads))
    opts = MeasureOptions("cpu", "fp32", threads, ("nchw",), min_time, 3, rounds=10)
    print(f"## Same-job sequential A/B, {runs} runs each, from 10 rounds (min_time "
          f"{min_time} s) until the 99% interval is narrower than {100 * WIDTH:.0f}% or "
          f"{cap:.0f} s, threads {threads or torch.get_num_threads()}")
    table(same_job(runs, opts, cap))
    if args.skip_processes or args.quick:
        return
    print(f"\n## Stored baseline across processes, {runs} pairs, threshold "
          f"{DEFAULT_REGRESSION_THRESHOLD}")
    print("| pair | U test significant (p<0.01) | regression (gate) |")
    print("|---|---:|---:|")
    for label, n_ref, n_model in PAIRS:
        sig = reg = 0
        for _ in range(runs):
            base = process_samples(n_ref, min_time)
            new = process_samples(n_model, min_time)
            check = compare_baseline(new, base, DEFAULT_REGRESSION_THRESHOLD)
            sig += check.get("p_value", 1) < 0.01
            reg += check["status"] == "regression"
        print(f"| {label} | {100 * sig / runs:.1f}% | {100 * reg / runs:.1f}% |")


if __name__ == "__main__":
    from _common import results_to

    with results_to("ab_noise", save="--quick" not in sys.argv):
        main()
