"""The figures the README's "Why: MACs are not latency" paragraph quotes, measured in one run.

1. The seed layer (256->256, 3x3, 14x14): standard vs DS median in the best layout, the
   measured speedup beside the MAC reduction, and the depthwise part's GFLOP/s beside the
   dense conv's (both from dsconv's own measurement path, ``compare --measure``).
2. Layout: the DS block's NCHW median over its channels_last median at 32-128 channels and
   56-112 px.

Each figure is printed as a range over ``--rounds`` rounds (default 3) so the README can
quote what this machine does, not one lucky run.

Run: .venv/bin/python benchmarks/readme_figures.py [--rounds N] [--min-time S]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile

from dsconv_cli.cases import resolve_layer
from dsconv_cli.services.compare import measure_layer
from dsconv_cli.torch_backend.measure import open_session
from dsconv_cli.torch_backend.timing import MeasureOptions

LAYOUT_CASES = [(32, 112), (64, 112), (64, 56), (128, 56)]


def _span(xs: list[float], fmt: str = ".1f") -> str:
    """Median over the rounds, and the range in brackets (one noisy round shows there)."""
    return f"{statistics.median(xs):{fmt}} [{min(xs):{fmt}}-{max(xs):{fmt}}]"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("DSCONV_CACHE_DIR", tempfile.mkdtemp())
    opts = MeasureOptions("cpu", "fp32", args.threads, ("nchw", "channels_last"),
                          args.min_time, 3)
    session = open_session(opts)
    seed = resolve_layer({"in": 256, "out": 256, "kernel": (3, 3), "hw": (14, 14)})
    speedups, dw_gflops, dense_gflops = [], [], []
    layout: dict[tuple[int, int], list[float]] = {c: [] for c in LAYOUT_CASES}
    for _ in range(args.rounds):
        r = measure_layer(seed, session)
        assert r.speedup and r.candidate.parts and r.standard.measured
        speedups.append(r.speedup.measured or 0.0)
        dw = r.candidate.parts["depthwise"].measured
        assert dw is not None
        dw_gflops.append(dw.gflops)
        dense_gflops.append(r.standard.measured.gflops)
        for cin, hw in LAYOUT_CASES:
            c = measure_layer(resolve_layer({"in": cin, "hw": (hw, hw)}), session)
            by_fmt = c.candidate.measured_by_format
            assert by_fmt is not None
            layout[(cin, hw)].append(by_fmt["nchw"].median_ms
                                     / by_fmt["channels_last"].median_ms)
    theory = seed.to_result().reduction.macs
    print(f"# README figures ({args.rounds} rounds, {args.threads} threads, "
          f"min-time {args.min_time} s, {session.environment['device_name']})")
    print(f"seed layer DS speedup (best layout): {_span(speedups)}x "
          f"(MAC reduction {theory:.2f}x)")
    print(f"seed layer depthwise part: {_span(dw_gflops)} GFLOP/s; dense conv: "
          f"{_span(dense_gflops, '.0f')} GFLOP/s")
    print("DS block, NCHW median / channels_last median:")
    for (cin, hw), ratios in layout.items():
        print(f"  in={cin} hw={hw}: {_span(ratios)}x")
    medians = [statistics.median(v) for v in layout.values()]
    print(f"  medians per shape: {min(medians):.1f}-{max(medians):.1f}x")


if __name__ == "__main__":
    from _common import results_to

    with results_to("readme_figures"):
        main()
