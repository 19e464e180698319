"""Fidelity of conversion with and without calibration, and what calibration costs.

1. Two networks trained here on the pattern task of tests/zoo.py (a plain CNN and a
   residual one): top-1 agreement with the original and relative output error on 512
   held-out inputs, at depth multiplier 1, 2, 3 and at --target-macs 0.5, without and with
   --calibration-data (256 unlabelled inputs), and the MACs saved.
2. Calibration on a ResNet-50-sized model (tests/models.py, 25.6M params) with 128 inputs
   of 224x224: wall time and peak RSS of the whole convert process (target: 2 min, 4 GB).

Run from the repo root: .venv/bin/python benchmarks/fidelity.py [--skip-resnet50]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from tests.zoo import ResidualCNN, SmallCNN, patterns, train_on_patterns  # noqa: E402


def convert(path: Path, d: Path, *extra: str) -> dict:
    cmd = [sys.executable, "-m", "dsconv_cli", "convert", str(path), "--trust-pickle",
           "--dry-run", "--min-channels", "8", "--eval-data", str(d / "eval.npy"), "--json",
           *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                       env={"PYTHONPATH": str(ROOT), "PATH": ""})
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    return json.loads(p.stdout)["cases"][0]


def fidelity_table() -> None:
    d = Path(tempfile.mkdtemp())
    torch.save(patterns(256, seed=3)[0], d / "cal.pt")
    np.save(d / "eval.npy", patterns(512, seed=4)[0].numpy())
    print("| network (accuracy) | setting | MACs after / before | agreement: SVD | "
          "agreement: calibrated | rel. output error: SVD | calibrated |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for net in (SmallCNN(), ResidualCNN()):
        torch.manual_seed(0)
        acc = train_on_patterns(net, steps=300, n=2048)
        path = d / f"{type(net).__name__}.pt"
        torch.save(net, path)
        for label, opts in (("m=1", ["--depth-multiplier", "1"]),
                            ("m=2", ["--depth-multiplier", "2"]),
                            ("m=3", ["--depth-multiplier", "3"]),
                            ("target 0.5", ["--target-macs", "0.5", "--input-shape",
                                            "1,3,16,16"])):
            plain = convert(path, d, *opts, "--input-shape", "1,3,16,16") if "target" not in \
                label else convert(path, d, *opts)
            cal = convert(path, d, *opts, "--calibration-data", str(d / "cal.pt"))
            tot = cal["totals"]
            ratio = tot["model_macs_after"] / tot["model_macs_before"]
            print(f"| {type(net).__name__} ({100 * acc:.1f}%) | {label} | {ratio:.2f} | "
                  f"{100 * plain['fidelity']['agreement']:.1f}% | "
                  f"{100 * cal['fidelity']['agreement']:.1f}% | "
                  f"{plain['fidelity']['rel_output_error']:.3f} | "
                  f"{cal['fidelity']['rel_output_error']:.3f} |")


def resnet50_cost() -> None:
    from tests.models import resnet50

    d = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    torch.save(resnet50(), d / "r50.pt")
    torch.save(torch.randn(128, 3, 224, 224), d / "cal.pt")
    cmd = [sys.executable, "-m", "dsconv_cli", "convert", str(d / "r50.pt"), "--trust-pickle",
           "--dry-run", "--calibration-data", str(d / "cal.pt"), "--calibration-batch", "16",
           "--json"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                       env={"PYTHONPATH": str(ROOT), "PATH": ""})
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    case = json.loads(p.stdout)["cases"][0]
    print(f"\nResNet-50-sized, 128 inputs 224x224, batch 16: {case['totals']['converted']} "
          f"layers calibrated; whole process {wall:.0f} s (calibration "
          f"{case['timing_s']['calibrate']:.0f} s); peak RSS {rss:.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-resnet50", action="store_true")
    args = ap.parse_args()
    fidelity_table()
    if not args.skip_resnet50:
        resnet50_cost()


if __name__ == "__main__":
    main()
