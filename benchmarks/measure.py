"""Issue-3 benchmarks, every ratio measured side by side in one run.

1. Layout: dsconv's DS layer in its recommended layout (the faster one that
   `--memory-format both` picks) vs a naive NCHW fp32 layer written the seed's way.
2. Agreement: dsconv's median vs an independent time.perf_counter loop (CUDA: events).
3. Overhead: wall time of `dsconv compare --measure --min-time T`, beyond torch's import,
   vs the time it spent measuring.

Run: .venv/bin/python benchmarks/measure.py [--device cpu|cuda] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import torch
from torch import nn

from dsconv_cli.specs import SeparableSpec
from dsconv_cli.torch_backend.build import build
from dsconv_cli.torch_backend.timing import prepare, time_call


class SeedDSConv(nn.Module):
    """The seed document's layer: two convs, NCHW, fp32, nothing else."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


ROUNDS = 3
SHAPES = [(32, 112), (64, 112), (128, 56), (256, 28), (512, 14), (512, 7)]


def perf_counter_ms(fn, device: torch.device, min_time: float) -> float:
    """Independent timer: plain loop, median of per-call times (CUDA: events)."""
    with torch.inference_mode():
        for _ in range(3):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        n = max(1, int(0.002 / max(time.perf_counter() - t0, 1e-7)))
        samples = []
        start = time.perf_counter()
        while time.perf_counter() - start < min_time or len(samples) < 5:
            if device.type == "cuda":
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record()
                for _ in range(n):
                    fn()
                e1.record()
                torch.cuda.synchronize()
                samples.append(e0.elapsed_time(e1) / n)
            else:
                t = time.perf_counter()
                for _ in range(n):
                    fn()
                samples.append((time.perf_counter() - t) * 1e3 / n)
    return statistics.median(samples)


def layout_and_agreement(device: torch.device, batches: list[int], min_time: float) -> None:
    print(f"\n## Layout: dsconv DS layer (recommended layout) vs naive seed NCHW fp32 "
          f"[{device.type}, {torch.get_num_threads()} threads]\n")
    print("| C | hw | B | naive NCHW ms | dsconv NCHW ms | dsconv channels_last ms | "
          "recommended | naive / dsconv | agreement (perf_counter / dsconv) |")
    print("|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    worst_speed, worst_agree = 10.0, 0.0
    for b in batches:
        for c, hw in SHAPES:
            shape = (b, c, hw, hw)
            naive, x = prepare(SeedDSConv(c, c), shape, device, torch.float32, "nchw")
            mods = {f: prepare(build(SeparableSpec(c, c)), shape, device, torch.float32, f)
                    for f in ("nchw", "channels_last")}
            # rounds interleave the variants so machine noise hits them alike
            res: dict[str, list[float]] = {"naive": [], "nchw": [], "channels_last": [],
                                           "agree": []}
            for _ in range(ROUNDS):
                res["naive"].append(time_call(partial(naive, x), device, min_time=min_time,
                                              warmup=3, threads=None).median_ms)
                for f, (m, xx) in mods.items():
                    t = time_call(lambda m=m, xx=xx: m(xx), device, min_time=min_time,
                                  warmup=3, threads=None).median_ms
                    res[f].append(t)
                best_f = min(mods, key=lambda f: res[f][-1])
                m, xx = mods[best_f]
                res["agree"].append(perf_counter_ms(lambda m=m, xx=xx: m(xx), device, min_time)
                                    / res[best_f][-1])
            med = {k: statistics.median(v) for k, v in res.items()}
            best = min(("nchw", "channels_last"), key=lambda f: med[f])
            worst_speed = min(worst_speed, med["naive"] / med[best])
            worst_agree = max(worst_agree, abs(med["agree"] - 1))
            print(f"| {c} | {hw} | {b} | {med['naive']:.3f} | {med['nchw']:.3f} | "
                  f"{med['channels_last']:.3f} | {best} | {med['naive'] / med[best]:.2f}x | "
                  f"{med['agree']:.3f} |")
    print(f"\nworst naive/dsconv: {worst_speed:.2f}x (target >= 1.00, noise aside); "
          f"worst disagreement with perf_counter: {100 * worst_agree:.1f}% (target <= 10%)")


def overhead(min_time: float, device: str) -> None:
    exe = str(Path(sys.executable).parent / "dsconv")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    t_import = time.perf_counter() - t0
    # warm the calibration cache so it is not counted
    subprocess.run([exe, "compare", "--in", "64", "--hw", "28", "--measure", "--min-time",
                    "0.01", "--device", device], check=True, capture_output=True)
    t0 = time.perf_counter()
    p = subprocess.run([exe, "compare", "--in", "64", "--hw", "28", "--measure", "--min-time",
                        str(min_time), "--json", "--device", device], check=True,
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    case = json.loads(p.stdout)["cases"][0]
    rows = [case["standard"], case["candidate"], *case["candidate"]["parts"].values()]
    measuring = sum(r["measured"]["median_ms"] * r["measured"]["calls"] for r in rows) / 1e3
    print(f"\n## Overhead (--min-time {min_time})\n")
    print(f"wall {wall:.2f} s, torch import {t_import:.2f} s, measuring {measuring:.2f} s "
          f"(4 layers x >= {min_time} s): (wall - import) / measuring = "
          f"{(wall - t_import) / measuring:.2f}x (target <= 1.5x)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    device = torch.device(a.device)
    layout_and_agreement(device, [1] if a.quick else [1, 8], 0.05 if a.quick else 0.1)
    overhead(0.5, a.device)


if __name__ == "__main__":
    from _common import results_to

    with results_to("measure"):
        main()
