"""Runtimes side by side (issue: measure where the model will run), in one run.

1. Table: the seed layer, MobileNetV2's inverted residual blocks at 112/56/28/14 px and two
   presets, per runtime (eager, compile, onnxruntime): standard and DS medians (presets:
   the network and its full-conv twin), the measured DS speedup beside the MAC ratio, and
   the fastest runtime of each side.
2. Agreement: dsconv's ONNX Runtime median against a plain `InferenceSession.run` loop
   timed with `time.perf_counter` on the same exported model (target: within 10%).

Run: .venv/bin/python benchmarks/runtimes.py [--min-time 0.2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from functools import partial

import torch

from dsconv_cli.cases import resolve_layer
from dsconv_cli.presets import full_conv, get_preset
from dsconv_cli.services.compare import measure_layer
from dsconv_cli.torch_backend.build import build, build_preset
from dsconv_cli.torch_backend.measure import measure_all, open_session
from dsconv_cli.torch_backend.runtimes import get_runtime
from dsconv_cli.torch_backend.timing import MeasureOptions, prepare

RUNTIMES = ("eager", "compile", "onnxruntime")
LAYERS = [
    ("seed 256->256 3x3 14px", {"in": 256, "out": 256, "kernel": (3, 3), "hw": (14, 14)}),
    ("MBv2 IR 16->24 t6 112px", {"kind": "inverted-residual", "in": 16, "out": 24,
                                 "hw": (112, 112), "expansion": 6.0}),
    ("MBv2 IR 24->24 t6 56px", {"kind": "inverted-residual", "in": 24, "out": 24,
                                "hw": (56, 56), "expansion": 6.0}),
    ("MBv2 IR 32->32 t6 28px", {"kind": "inverted-residual", "in": 32, "out": 32,
                                "hw": (28, 28), "expansion": 6.0}),
    ("MBv2 IR 96->96 t6 14px", {"kind": "inverted-residual", "in": 96, "out": 96,
                                "hw": (14, 14), "expansion": 6.0}),
]
PRESETS = [("mobilenet_v2", 1.0, 224), ("mobilenet_v3_small", 1.0, 224)]


def _cell(by_rt: dict[str, float], rt: str) -> str:
    return f"{by_rt[rt]:.3f}" if rt in by_rt else "failed"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--min-time", type=float, default=0.2)
    args = ap.parse_args()
    os.environ.setdefault("DSCONV_CACHE_DIR", tempfile.mkdtemp())
    threads = torch.get_num_threads()
    opts = MeasureOptions("cpu", "fp32", threads, ("nchw", "channels_last"), args.min_time, 3,
                          runtimes=RUNTIMES)
    s = open_session(opts)
    print(f"# Runtimes, {threads} threads, min-time {args.min_time} s, best layout per "
          "runtime (ms)\n")
    print("| case | side | " + " | ".join(RUNTIMES) + " | DS speedup per runtime | MAC ratio "
          "| fastest |")
    print("|---|---|" + "---:|" * len(RUNTIMES) + "---|---:|---|")
    for label, values in LAYERS:
        r = measure_layer(resolve_layer(values), s)
        std = {m.runtime: m.median_ms for m in r.standard.measured_by_runtime or []}
        cand = {m.runtime: m.median_ms for m in r.candidate.measured_by_runtime or []}
        sp = r.speedup_by_runtime or {}
        sp_txt = ", ".join(f"{k} {v:.2f}x" for k, v in sp.items())
        fs, fc = r.standard.fastest or {}, r.candidate.fastest or {}
        print(f"| {label} | standard | " + " | ".join(_cell(std, rt) for rt in RUNTIMES)
              + f" | | {r.reduction.macs:.2f}x | {fs.get('runtime')}/{fs.get('memory_format')} |")
        print("| | DS | " + " | ".join(_cell(cand, rt) for rt in RUNTIMES)
              + f" | {sp_txt} | | {fc.get('runtime')}/{fc.get('memory_format')} |")
    for name, width, res in PRESETS:
        p = get_preset(name, width, res, 1000)
        fc_p = full_conv(p)
        meds = {}
        for tag, preset in (("network (DS)", p), ("full-conv twin", fc_p)):
            c = preset.cost(1, "fp32")
            _, _, per = measure_all(partial(build_preset, preset), c.input_shape, c, s)
            meds[tag] = {m.runtime: m.median_ms for m in per or []}
        ratio = fc_p.cost().macs / p.cost().macs
        sp_txt = ", ".join(f"{rt} {meds['full-conv twin'][rt] / meds['network (DS)'][rt]:.2f}x"
                           for rt in RUNTIMES if rt in meds["network (DS)"]
                           and rt in meds["full-conv twin"])
        for tag in ("full-conv twin", "network (DS)"):
            best = min(meds[tag], key=meds[tag].get) if meds[tag] else "-"
            print(f"| {name} | {tag} | " + " | ".join(_cell(meds[tag], rt) for rt in RUNTIMES)
                  + (f" | {sp_txt} | {ratio:.2f}x" if tag == "network (DS)" else " | |")
                  + f" | {best} |")
    if s.errors:
        print("\nruntime errors:", s.errors)

    # agreement with a plain perf_counter loop on the same exported model
    print("\n# ONNX Runtime: dsconv's median vs a plain InferenceSession loop (perf_counter)\n")
    print("| case | dsconv ms | plain loop ms | difference |")
    print("|---|---:|---:|---:|")
    rt = get_runtime("onnxruntime", torch.device("cpu"), threads)
    for label, values in LAYERS[:3]:
        case = resolve_layer(values)
        for side, spec in (("standard", case.standard), ("DS", case.candidate)):
            module, x = prepare(build(spec), case.input_shape, torch.device("cpu"),
                                torch.float32, "nchw")
            prepared = rt.prepare(module, x)
            from dsconv_cli.torch_backend.timing import time_call

            ours = time_call(prepared.fn, torch.device("cpu"), min_time=args.min_time,
                             warmup=3, threads=threads).median_ms
            for _ in range(5):
                prepared.fn()
            samples = []
            t_end = time.perf_counter() + args.min_time
            while time.perf_counter() < t_end or len(samples) < 20:
                t0 = time.perf_counter()
                prepared.fn()
                samples.append((time.perf_counter() - t0) * 1e3)
            plain = statistics.median(samples)
            print(f"| {label} {side} | {ours:.3f} | {plain:.3f} | "
                  f"{100 * (ours / plain - 1):+.1f}% |")


if __name__ == "__main__":
    from _common import results_to

    with results_to("runtimes"):
        main()
