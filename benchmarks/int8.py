"""int8 by ONNX Runtime's static quantization (QDQ): what it does to depthwise separable
layers, measured, and a quantized export that keeps its fidelity.

1. Layers, through ``dsconv compare --measure --runtime onnxruntime --dtype int8``: the
   seed layer (256->256, K=3, 14x14) and MobileNetV2-style inverted residual blocks,
   standard and DS sides each timed as int8 beside its fp32 self (interleaved A/B, 95%
   intervals), the relative output error of int8 against fp32 per scheme (per-tensor,
   per-channel). These layers carry random initial weights: their per-channel ranges are
   alike, so per-tensor loses little here (the trained network below is the real test).
2. A ResNet-18-style network (BasicBlocks 2-2-2-2, width 16, plain torch) trained here on
   scikit-learn's ``load_digits`` (1,797 real 8x8 digits, upsampled to 32x32; 1,297 to
   train, 500 held out), converted to DS with ``dsconv convert`` (calibrated on 512
   augmented training digits, ``--refine-steps 2``, distilled), then quantized per scheme:
   per-tensor, per-channel, each with and without cross-layer equalisation
   (``--equalise``), and per-channel with the most int8-sensitive node kept fp32
   (``--keep-fp32 1``); the original network quantized beside it. Top-1 agreement and
   relative output error against the *fp32 original* on the 500 held-out digits (target:
   per-channel int8 of the converted net >= 98.5%); ONNX Runtime latencies of the
   original and converted graphs in fp32 and int8 at batch 1 and 32, each pair
   interleaved, with intervals; the node types ORT ran where int8 is slower.

Run from the repo root: .venv/bin/python benchmarks/int8.py layers|digits [--quick]
[--train-steps N] [--distill-steps N]; each part writes results/int8_<part>.txt
(--quick: shorter training and timing, results/int8_<part>_quick.txt).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
from tests.models import BasicBlock  # noqa: E402  (torchvision's block)

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
THREADS = 2


def dsconv(*args: str) -> dict[str, Any]:
    """A dsconv command in a subprocess, its JSON report."""
    cmd = [sys.executable, "-m", "dsconv_cli", *args, "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=ENV)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}\n{p.stderr}")
    return json.loads(p.stdout)


def ci(sp: dict[str, Any]) -> str:
    lo, hi = sp["ci95"]
    return f"{sp['estimate']:.2f}x [{lo:.2f}, {hi:.2f}]"


# ------------------------------------------------------------------------ 1. layers

LAYERS = [
    ("seed layer 256->256 K3 14x14 (separable)", ["--in", "256", "--hw", "14"]),
    ("MobileNetV2 block 24->24 t=6 56x56", ["--kind", "inverted-residual", "--in", "24",
                                            "--hw", "56", "--expansion", "6"]),
    ("MobileNetV2 block 96->96 t=6 14x14", ["--kind", "inverted-residual", "--in", "96",
                                            "--hw", "14", "--expansion", "6"]),
]


def layers(quick: bool) -> None:
    min_time = "0.2" if quick else "0.5"
    print("Layers in ONNX Runtime (random weights), int8 vs fp32 per side: fp32 ms, int8 ms, "
          "speedup fp32/int8 [95% CI] from an interleaved A/B, relative output error of "
          f"int8 vs fp32; {THREADS} threads, batch 1:\n")
    print("| case | side | scheme | fp32 ms | int8 ms | int8 speedup [95% CI] | verdict | "
          "int8 error |")
    print("|---|---|---|---:|---:|---:|---|---:|")
    slow: list[str] = []
    for label, args in LAYERS:
        for scheme in ("per-channel", "per-tensor"):
            case = dsconv("compare", *args, "--measure", "--runtime", "onnxruntime",
                          "--dtype", "int8", "--quantize-scheme", scheme, "--threads",
                          str(THREADS), "--min-time", min_time)["cases"][0]
            sides = [("standard", case["standard"]),
                     (case["candidate"]["kind"], case["candidate"])]
            sides += list((case["candidate"].get("parts") or {}).items())
            for name, side in sides:
                q = side["int8"]
                print(f"| {label} | {name} | {scheme} | {q['fp32_ms']:.3f} | "
                      f"{q['int8_ms']:.3f} | {ci(q['speedup'])} | "
                      f"{q['speedup']['verdict']} | {q['rel_error']:.4f} |")
                if q.get("why") and scheme == "per-channel":
                    slow.append(f"- {label}, {name}: {q['why']}")
    if slow:
        print("\nWhere int8 was not faster (per-channel), from ORT's profile:\n")
        print("\n".join(slow))


# ------------------------------------------------------------------------ 2. digits

class ResNet18Digits(nn.Module):
    """ResNet-18's layout (BasicBlocks 2-2-2-2, a 3x3 stem for 32x32 grey inputs),
    width 16."""

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        blocks: list[nn.Module] = []
        cin = width
        for i in range(4):
            cout = width * 2**i
            blocks += [BasicBlock(cin, cout, 1 if i == 0 else 2), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layers(self.stem(x)).mean((2, 3)))


def load_digits_32() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's digits, upsampled to 32x32 (bilinear) and normalised; a seeded
    split: 1,297 to train on, 500 held out."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    x = (x - 0.25) / 0.35
    y = torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:-500], perm[-500:]
    return x[tr], y[tr], x[te], y[te]


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 2 pixels and a little pixel noise (training and the
    unlabelled calibration inputs)."""
    n = len(x)
    dx, dy = (torch.randint(-2, 3, (2,), generator=g)).tolist()
    out = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    return out + 0.05 * torch.randn(n, *x.shape[1:], generator=g)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=g)
        loss = nn.functional.cross_entropy(model(augment(x[idx], g)), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()


def digits(quick: bool, train_steps: int | None = None, distill_steps: int | None = None
           ) -> None:
    from dsconv_cli import apply_plan
    from dsconv_cli.options import MeasureOptions
    from dsconv_cli.results import OpTime
    from dsconv_cli.torch_backend.calibrate import fidelity
    from dsconv_cli.torch_backend.export import export_onnx
    from dsconv_cli.torch_backend.measure import int8_why, ort_latencies
    from dsconv_cli.torch_backend.quantize import (
        OrtModule,
        equalise,
        quantize,
        ran_ops,
        sensitivity,
    )

    xtr, ytr, xte, yte = load_digits_32()
    d = Path(tempfile.mkdtemp(prefix="dsconv-int8-"))
    g = torch.Generator().manual_seed(3)
    cal = torch.cat([augment(xtr[i:i + 64], g) for i in range(0, 512, 64)])[:512]
    torch.save(cal, d / "cal.pt")
    np.save(d / "eval.npy", xte.numpy())
    torch.manual_seed(0)
    net = ResNet18Digits()
    steps = train_steps or (300 if quick else 1000)
    t0 = time.perf_counter()
    train(net, xtr, ytr, steps)
    t_train = time.perf_counter() - t0
    with torch.no_grad():
        acc = float((net(xte).argmax(1) == yte).float().mean())
    torch.save(net.state_dict(), d / "r18.pt")
    distill = str(distill_steps or (200 if quick else 500))
    arch = f"{Path(__file__).resolve()}:ResNet18Digits"
    t0 = time.perf_counter()
    case = dsconv("convert", str(d / "r18.pt"), "--arch", arch, "-o", str(d / "r18_ds.pt"),
                  "--min-channels", "8", "--calibration-data", str(d / "cal.pt"),
                  "--eval-data", str(d / "eval.npy"), "--refine-steps", "2",
                  "--distill-steps", distill, "--export", str(d / "r18_ds_int8.onnx"),
                  "--quantize", "int8")["cases"][0]
    t_convert = time.perf_counter() - t0
    print(f"\nResNet-18-style (width 16, {sum(p.numel() for p in net.parameters()):,} params) "
          f"trained {steps} steps ({t_train:.0f} s) on scikit-learn's load_digits (32x32, "
          f"1,297 train / 500 held out): held-out accuracy {100 * acc:.1f}%. Converted "
          f"with `dsconv convert --min-channels 8 --calibration-data (512 augmented train "
          f"digits) --refine-steps 2 --distill-steps {distill} --export r18_ds_int8.onnx "
          f"--quantize int8` in {t_convert:.0f} s: {case['totals']['converted']} of "
          f"{case['totals']['layers']} convs converted, model MACs "
          f"{case['totals']['model_macs_after'] / case['totals']['model_macs_before']:.2f}"
          " of the original's.")
    q8, ex = case["int8"], case["export"]
    dims = ", ".join(f"{k} (dim {v})" for k, v in ex["dynamic_dims"].items()) or "none"
    print(f"The command's own report: int8 ({q8['scheme']}) agreement with the fp32 "
          f"original {100 * q8['fidelity']['agreement']:.2f}%, error "
          f"{q8['fidelity']['rel_output_error']:.4f}; converted fp32 "
          f"{100 * q8['fidelity_fp32']['agreement']:.2f}%, error "
          f"{q8['fidelity_fp32']['rel_output_error']:.4f}; export dynamic dims: {dims}, "
          f"checked at batch {' and '.join(map(str, ex['checked_batches']))}.")

    plan = json.loads(Path(f"{d / 'r18_ds.pt'}.plan.json").read_text())
    conv = apply_plan(ResNet18Digits(), plan)
    conv.load_state_dict(torch.load(d / "r18_ds.pt", weights_only=True))
    conv.eval()
    x1 = xte[:1].contiguous()
    fp32 = {"original": export_onnx(net, x1, dynamic=True)[0],
            "converted": export_onnx(conv, x1, dynamic=True)[0]}
    eq = ResNet18Digits()
    eq = apply_plan(eq, plan)
    eq.load_state_dict(conv.state_dict())
    eq.eval()
    pairs = equalise(eq)
    fp32_eq = export_onnx(eq, x1, dynamic=True)[0]
    with torch.no_grad():
        eq_err = float((eq(xte) - conv(xte)).norm() / conv(xte).norm())

    print(f"\nAgainst the fp32 original on the 500 held-out digits (cross-layer equalisation: "
          f"{pairs} depthwise/pointwise pairs, fp32 change {eq_err:.1e}):\n")
    print("| model | int8 scheme | fixes | agreement | rel. output error |")
    print("|---|---|---|---:|---:|")
    rows: list[tuple[str, str, str, Any]] = [
        ("converted", "fp32 (no int8)", "-", conv),
    ]
    int8s: dict[str, bytes] = {}
    for model in ("original", "converted"):
        for scheme in ("per-tensor", "per-channel"):
            qd = quantize(fp32[model], cal, scheme).data
            int8s[f"{model} {scheme}"] = qd
            rows.append((model, scheme, "-", OrtModule(qd, THREADS)))
    for scheme in ("per-tensor", "per-channel"):
        qd = quantize(fp32_eq, cal, scheme).data
        rows.append(("converted", scheme, "equalised", OrtModule(qd, THREADS)))
    t0 = time.perf_counter()
    sens = sensitivity(fp32["converted"], cal, "per-channel")
    t_sens = time.perf_counter() - t0
    keep = [sens[0][0]]
    qd = quantize(fp32["converted"], cal, "per-channel", keep_fp32=keep).data
    int8s["converted per-channel, 1 fp32"] = qd
    rows.append(("converted", "per-channel", f"kept fp32: {keep[0]} (alone "
                 f"{sens[0][1]:.4f}; next {sens[1][1]:.4f})", OrtModule(qd, THREADS)))
    for model, scheme, fixes, m in rows:
        f = fidelity(net, m, xte, "eval", 100)
        print(f"| {model} | {scheme} | {fixes} | {100 * (f.agreement or 0):.2f}% | "
              f"{f.rel_output_error:.4f} |")
    print(f"\n(the sensitivity scan, one quantization per weighted node: {t_sens:.0f} s)")

    min_time = 0.3 if quick else 0.5
    opts = MeasureOptions(threads=THREADS, min_time=min_time, rounds=20 if not quick else 10)
    for batch in (1, 32):
        xb = xte[:batch].contiguous()
        graphs = {"original fp32": fp32["original"], "original int8": int8s[
            "original per-channel"], "converted fp32": fp32["converted"],
                  "converted int8": int8s["converted per-channel"]}
        lat = ort_latencies({k.replace(" ", "_"): v for k, v in graphs.items()}, xb, opts)
        print(f"\nONNX Runtime latency, batch {batch}, {THREADS} threads (int8 per-channel; "
              "median [IQR] of interleaved blocks; speedup = time(B)/time(A) [95% CI]):\n")
        print("| graph | bytes | median ms | IQR ms |")
        print("|---|---:|---:|---:|")
        for k, data in graphs.items():
            m = lat["latency_ms"][k.replace(" ", "_")]
            print(f"| {k} | {len(data):,} | {m['median_ms']:.3f} | {m['iqr_ms']:.3f} |")
        print("\n| A vs B | speedup [95% CI] | verdict |")
        print("|---|---:|---|")
        for key, sp in lat["speedups"].items():
            a, b = key.split("_vs_")
            print(f"| {a.replace('_', ' ')} vs {b.replace('_', ' ')} | {ci(sp.__dict__)} | "
                  f"{sp.verdict} |")
        for model in ("original", "converted"):
            sp = lat["speedups"][f"{model}_int8_vs_{model}_fp32"]
            if sp.verdict != "faster":
                ops = [OpTime(**o) for o in ran_ops(graphs[f"{model} int8"],
                                                    xb.numpy(), THREADS)]
                print(f"\n{model} int8 at batch {batch}: {int8_why(ops, sp.verdict)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=("layers", "digits"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--train-steps", type=int)
    ap.add_argument("--distill-steps", type=int)
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    print("Machine shared with other work while measuring (2 cores, load average above 10); "
          "every ratio below comes from an interleaved A/B in one process.\n")
    if args.part == "layers":
        layers(args.quick)
    else:
        digits(args.quick, args.train_steps, args.distill_steps)


if __name__ == "__main__":
    from _common import results_to

    part = "layers" if "layers" in sys.argv else "digits"
    quick = "--quick" in sys.argv
    with results_to(f"int8_{part}" + ("_quick" if quick else "")):
        main()
