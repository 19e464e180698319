"""Fidelity of conversion: SVD only, calibrated (layer-wise refit) and distilled
(``--distill-steps``), and what calibration costs.

1. Two networks trained here on the pattern task of tests/zoo.py (a plain CNN and a
   residual one): top-1 agreement with the original and relative output error on 512
   held-out inputs, at depth multiplier 1, 2, 3 and at --target-macs 0.5, SVD only,
   calibrated (256 unlabelled inputs) and distilled, and the MACs kept.
2. A ResNet-18-style network (BasicBlocks 2-2-2-2, width 16) trained 3000 steps here on
   a generated, seeded seven-segment digits dataset (10 classes, 32x32 RGB, random
   affine, stroke, colours and noise): the same three at multiplier 1 on 4000 held-out
   inputs (target: >= 99% top-1 agreement), with 512 and with 2048 calibration inputs,
   the calibrated and distilled runs with --refine-steps 2. The target's dataset is
   legible: the ink at least MIN_CONTRAST from the paper in one channel. A second net,
   trained on digits of any colours (some hidden under the noise, where the original
   can only guess), is converted beside it with 512 inputs.
3. Calibration on a ResNet-50-sized model (tests/models.py, 25.6M params, 16 layers) with
   128 inputs of 224x224: wall time and peak RSS of the whole convert process (target:
   120 s, 4 GB on 2 cores), beside the memory estimate made before the first batch.

Run from the repo root: .venv/bin/python benchmarks/fidelity.py [--quick] [--skip-resnet50]
(--quick: multiplier 1 only, shorter training, ResNet-50 at 32 inputs of 112x112; its
output goes to benchmarks/results/fidelity_quick.txt, the full run's to fidelity.txt).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from tests.zoo import ResidualCNN, SmallCNN, patterns, train_on_patterns  # noqa: E402

ENV = {"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "")}


def convert(path: Path, d: Path, *extra: str) -> dict:
    """``dsconv convert`` in a subprocess (a dry run), its JSON case."""
    cmd = [sys.executable, "-m", "dsconv_cli", "convert", str(path), "--dry-run",
           "--min-channels", "8", "--eval-data", str(d / "eval.npy"), "--json", *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=ENV)
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    return json.loads(p.stdout)["cases"][0]


HEAD = ("| network (accuracy) | setting | MACs after / before | agreement: SVD | calibrated | "
        "distilled | rel. output error: SVD | calibrated | distilled | distill time |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")


def three_ways(label: str, path: Path, d: Path, opts: list[str], steps: int,
               load: list[str], fit: tuple[str, ...] = (), cal: str = "cal.pt") -> None:
    """One table row: SVD only, calibrated, calibrated + distilled (``fit``: options of
    the calibrated and distilled runs; ``cal``: the calibration inputs' file)."""
    plain = convert(path, d, *load, *opts, "--input-shape", d.joinpath("shape").read_text())
    cal_run = convert(path, d, *load, *opts, *fit, "--calibration-data", str(d / cal))
    dist = convert(path, d, *load, *opts, *fit, "--calibration-data", str(d / cal),
                   "--distill-steps", str(steps))
    tot = cal_run["totals"]
    ratio = tot["model_macs_after"] / tot["model_macs_before"]
    row = [f"{100 * c['fidelity']['agreement']:.2f}%" for c in (plain, cal_run, dist)]
    row += [f"{c['fidelity']['rel_output_error']:.3f}" for c in (plain, cal_run, dist)]
    print(f"| {label} | {' '.join([*opts, *fit])} | {ratio:.2f} | {' | '.join(row)} | "
          f"{dist['distillation']['seconds']:.1f} s |")


def pattern_networks(quick: bool) -> None:
    d = Path(tempfile.mkdtemp())
    torch.save(patterns(256, seed=3)[0], d / "cal.pt")
    np.save(d / "eval.npy", patterns(512, seed=4)[0].numpy())
    d.joinpath("shape").write_text("1,3,16,16")
    print("Pattern task (tests/zoo.py), 256 calibration / 512 held-out inputs, "
          "distilled 200 steps:\n")
    print(HEAD)
    settings = [["--depth-multiplier", "1"]]
    if not quick:
        settings += [["--depth-multiplier", "2"], ["--depth-multiplier", "3"],
                     ["--target-macs", "0.5", "--input-shape", "1,3,16,16"]]
    for net in (SmallCNN(), ResidualCNN()):
        torch.manual_seed(0)
        acc = train_on_patterns(net, steps=300, n=2048)
        path = d / f"{type(net).__name__}.pt"
        torch.save(net, path)
        for opts in settings:
            three_ways(f"{type(net).__name__} ({100 * acc:.1f}%)", path, d, opts, 200,
                       ["--trust-pickle"])


# ------------------------------------------------------------ ResNet-18-style on digits

#: the seven segments of a digit in a unit box (x0, y0, x1, y1), and which each digit lights
SEGMENTS = torch.tensor([
    [0.25, 0.15, 0.75, 0.15], [0.75, 0.15, 0.75, 0.5], [0.75, 0.5, 0.75, 0.85],
    [0.25, 0.85, 0.75, 0.85], [0.25, 0.5, 0.25, 0.85], [0.25, 0.15, 0.25, 0.5],
    [0.25, 0.5, 0.75, 0.5]])
LIT = torch.tensor([[1, 1, 1, 1, 1, 1, 0], [0, 1, 1, 0, 0, 0, 0], [1, 1, 0, 1, 1, 0, 1],
                    [1, 1, 1, 1, 0, 0, 1], [0, 1, 1, 0, 0, 1, 1], [1, 0, 1, 1, 0, 1, 1],
                    [1, 0, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1],
                    [1, 1, 1, 1, 0, 1, 1]], dtype=torch.bool)


#: the least difference between ink and paper, in the channel where they differ most
MIN_CONTRAST = 0.3


def digits(n: int, seed: int, hw: int = 32,
           min_contrast: float = MIN_CONTRAST) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` seven-segment digits, seeded: rotated, sheared, scaled and moved, strokes of
    random width, random ink and paper colours, pixel noise; normalised."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)

    def u(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g)

    ang, scale, shear = (u(n) - 0.5) * 0.5, 0.75 + 0.35 * u(n), (u(n) - 0.5) * 0.4
    tx, ty = (u(n) - 0.5) * 0.25, (u(n) - 0.5) * 0.25
    lin = (torch.arange(hw) + 0.5) / hw - 0.5
    py, px = torch.meshgrid(lin, lin, indexing="ij")
    c, s = torch.cos(ang)[:, None, None], torch.sin(ang)[:, None, None]
    xx, yy = px - tx[:, None, None], py - ty[:, None, None]
    qx = (c * xx + s * yy) / scale[:, None, None] + shear[:, None, None] * yy + 0.5
    qy = (-s * xx + c * yy) / scale[:, None, None] + 0.5
    a, d = SEGMENTS[:, :2][None, :, None, None], (SEGMENTS[:, 2:] - SEGMENTS[:, :2])
    p = torch.stack([qx, qy], -1)[:, None]  # (n, 1, h, w, 2)
    t = (((p - a) * d[None, :, None, None]).sum(-1) / (d * d).sum(-1)[None, :, None, None])
    near = a + t.clamp(0, 1)[..., None] * d[None, :, None, None]
    dist = (p - near).norm(dim=-1).masked_fill(~LIT[y][:, :, None, None], 9.0).amin(1)
    ink = torch.sigmoid((0.05 + 0.04 * u(n)[:, None, None] - dist) / 0.02)
    fg, bg = u(n, 3, 1, 1), u(n, 3, 1, 1)
    # legible: ink within min_contrast of the paper in every channel (13% of draws at 0.3;
    # under the noise, often invisible) becomes the paper's opposite extreme
    faint = (fg - bg).abs().amax(1, keepdim=True) < min_contrast
    fg = torch.where(faint, (bg < 0.5).float(), fg)
    x = bg + (fg - bg) * ink[:, None] + torch.randn(n, 3, hw, hw, generator=g) * (
        0.03 + 0.1 * u(n, 1, 1, 1))
    return ((x - 0.5) / 0.3).float(), y


class Basic(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNet18ish(nn.Module):
    """ResNet-18's layout (BasicBlocks 2-2-2-2, a 3x3 stem for 32x32 inputs), narrower."""

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        blocks: list[nn.Module] = []
        cin = width
        for i in range(4):
            cout = width * 2**i
            blocks += [Basic(cin, cout, 1 if i == 0 else 2), Basic(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layers(self.stem(x)).mean((2, 3)))


def train_digits(model: nn.Module, steps: int, min_contrast: float = MIN_CONTRAST) -> float:
    """Adam with a one-cycle schedule on 8192 digits; held-out accuracy on 2000."""
    x, y = digits(8192, seed=1, min_contrast=min_contrast)
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=g)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    xt, yt = digits(2000, seed=2, min_contrast=min_contrast)
    with torch.no_grad():
        return float((model(xt).argmax(1) == yt).float().mean())


def resnet18_digits(quick: bool) -> None:
    steps = 100 if quick else 1000
    print(f"\nResNet-18-style (width 16, {sum(p.numel() for p in ResNet18ish().parameters()):,}"
          f" params) trained {400 if quick else 3000} steps on generated digits; 4000 "
          f"held-out inputs, distilled {steps} steps. Legible: the ink at least "
          f"{MIN_CONTRAST} from the paper in one channel (the target's dataset); faint "
          "allowed: any colours, some digits hidden under the noise:\n")
    print(HEAD)
    runs = [("legible", MIN_CONTRAST, (512, 2048))]
    if not quick:
        runs.append(("faint allowed", 0.0, (512,)))
    for label, contrast, sizes in runs:
        d = Path(tempfile.mkdtemp())
        for n in sizes:
            torch.save(digits(n, seed=3 if n == 512 else 5, min_contrast=contrast)[0],
                       d / f"cal{n}.pt")
        np.save(d / "eval.npy", digits(4000, seed=4, min_contrast=contrast)[0].numpy())
        d.joinpath("shape").write_text("1,3,32,32")
        torch.manual_seed(0)
        net = ResNet18ish()
        t0 = time.perf_counter()
        acc = train_digits(net, 400 if quick else 3000, contrast)
        t_train = time.perf_counter() - t0
        torch.save(net.state_dict(), d / "r18.pt")
        for n in sizes:
            three_ways(f"ResNet18ish, {label} ({100 * acc:.1f}%, trained {t_train:.0f} s), "
                       f"{n} calibration inputs", d / "r18.pt", d,
                       ["--depth-multiplier", "1"], steps,
                       ["--arch", f"{Path(__file__).resolve()}:ResNet18ish"],
                       ("--refine-steps", "2"), f"cal{n}.pt")


# ------------------------------------------------------------ ResNet-50-sized cost

def resnet50_cost(quick: bool) -> None:
    from tests.models import resnet50

    n, hw = (32, 112) if quick else (128, 224)
    d = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    model = resnet50().eval()
    torch.save(model, d / "r50.pt")
    torch.save(torch.randn(n, 3, hw, hw), d / "cal.pt")
    est = _estimate(model, n, hw)
    cmd = [sys.executable, "-m", "dsconv_cli", "convert", str(d / "r50.pt"), "--trust-pickle",
           "--dry-run", "--calibration-data", str(d / "cal.pt"), "--calibration-batch", "16",
           "--json"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=ENV)
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    case = json.loads(p.stdout)["cases"][0]
    print(f"\nResNet-50-sized, {n} inputs {hw}x{hw}, batch 16, {torch.get_num_threads()} "
          f"threads: {case['totals']['converted']} layers calibrated; whole process "
          f"{wall:.0f} s (calibration and fidelity {case['timing_s']['calibrate']:.0f} s); "
          f"peak RSS {rss:.0f} MB; estimated before the first batch: {est / 1e6:.0f} MB "
          "on top of the two model copies")


def _estimate(model: nn.Module, n: int, hw: int) -> int:
    """The calibration estimate dsconv makes (the survey's one-input forward)."""
    import copy

    from dsconv_cli.torch_backend import footprint
    from dsconv_cli.torch_backend.calibrate import _survey
    from dsconv_cli.torch_backend.convert import ConvertOptions, convert_model
    from dsconv_cli.torch_backend.loading import Loaded

    converted = copy.deepcopy(model)
    conv = convert_model(Loaded(converted, "module", "r50"),
                         ConvertOptions(input_shape=(1, 3, hw, hw)))
    names = [dec.facts.name for dec in conv.decisions if dec.convert]
    s = _survey(model, converted, names, torch.randn(1, 3, hw, hw), "--calibration-data")
    return footprint.estimate(s, "calibration", n).needed(16)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a reduced run (minutes)")
    ap.add_argument("--skip-resnet50", action="store_true")
    args = ap.parse_args()
    pattern_networks(args.quick)
    resnet18_digits(args.quick)
    if not args.skip_resnet50:
        resnet50_cost(args.quick)


if __name__ == "__main__":
    from _common import results_to

    with results_to("fidelity_quick" if "--quick" in sys.argv else "fidelity"):
        main()
