"""Fidelity of conversion: SVD only, calibrated (layer-wise refit) and distilled
(``--distill-steps``), and what calibration costs.

1. Two networks trained here on the pattern task of tests/zoo.py (a plain CNN and a
   residual one): top-1 agreement with the original and relative output error on 512
   held-out inputs, at depth multiplier 1, 2, 3 and at --target-macs 0.5, SVD only,
   calibrated (256 unlabelled inputs) and distilled, and the MACs kept.
2. The target: a ResNet-18-style network (BasicBlocks 2-2-2-2, width 16, a stride-2 3x3
   stem) on real handwritten digits, scikit-learn's load_digits (1,797 8x8 images,
   upsampled bilinear to 32x32, one channel). The split was fixed before any result:
   train_test_split(test_size=0.33, random_state=0), 1,203 training and 594 held-out
   images. The original is trained here on the training split with labels (its held-out
   accuracy in the row); dsconv converts it at multiplier 1 SVD only, calibrated and
   distilled from the first 512 training images, without labels (--refine-steps 2,
   --distill-steps 300); agreement and output error on the 594 held-out images (target:
   >= 99% top-1 agreement). The same row at --target-latency 0.7 (eager, 2 threads).
3. Calibration on a ResNet-50-sized model (tests/models.py, 25.6M params, 16 layers) with
   128 inputs of 224x224: wall time and peak RSS of the whole convert process (target:
   120 s, 4 GB on 2 cores), beside the memory estimate made before the first batch.

Run from the repo root: .venv/bin/python benchmarks/fidelity.py [--quick] [--skip-patterns]
[--skip-latency] [--skip-resnet50]
(--quick: multiplier 1 only for the pattern networks, ResNet-50 at 32 inputs of 112x112; its
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

from tests.models import BasicBlock  # noqa: E402  (torchvision's block)
from tests.zoo import ResidualCNN, SmallCNN, patterns, train_on_patterns  # noqa: E402

#: the subprocesses' environment: a fresh cache folder (the per-layer latency table of
#: --target-latency is measured in this run, never read from an earlier one)
#: --target-latency is measured in this run, never read from an earlier one) and one
#: thread (see :data:`THREADS`)
THREADS = 1
ENV = {"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", ""),
       "DSCONV_CACHE_DIR": tempfile.mkdtemp(), "OMP_NUM_THREADS": str(THREADS)}


def convert(path: Path, d: Path, *extra: str) -> dict:
    """``dsconv convert`` in a subprocess (a dry run), its JSON case."""
    cmd = [sys.executable, "-m", "dsconv_cli", "convert", str(path), "--dry-run",
           "--min-channels", "8", "--eval-data", str(d / "eval.npy"), "--json", *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=ENV)
    if p.returncode != 0:
        raise Refused(p.stderr.strip().splitlines()[-1] if p.stderr.strip() else
                      f"exit {p.returncode}")
    return json.loads(p.stdout)["cases"][0]


class Refused(SystemExit):
    """dsconv convert exited non-zero; the message is its last stderr line."""


HEAD = ("| network (accuracy) | setting | MACs after / before | agreement: SVD | calibrated | "
        "distilled | rel. output error: SVD | calibrated | distilled | distill time |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")


def three_ways(label: str, path: Path, d: Path, opts: list[str], steps: int,
               load: list[str], fit: tuple[str, ...] = (), cal: str = "cal.pt") -> None:
    """One table row: SVD only, calibrated, calibrated + distilled (``fit``: options of
    the calibrated and distilled runs; ``cal``: the calibration inputs' file)."""
    shape = [] if "--input-shape" in opts else ["--input-shape", d.joinpath("shape").read_text()]
    plain = convert(path, d, *load, *opts, *shape)
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
    print("\nPattern task (tests/zoo.py), 256 calibration / 512 held-out inputs, "
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


# ------------------------------------------------------------ ResNet-18-style on real digits

class ResNet18ish(nn.Module):
    """ResNet-18's layout (BasicBlocks 2-2-2-2 after a 3x3 stem), narrower. For 32x32
    digits the stem has stride 2 (torchvision's ResNet-18 goes to 8x8 there)."""

    def __init__(self, in_channels: int = 3, width: int = 16, classes: int = 10,
                 stem_stride: int = 1) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, stem_stride, 1, bias=False),
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


#: the held-out set, fixed before any result was seen: scikit-learn's train_test_split of
#: load_digits' 1,797 images with this test share and seed (no stratification), 1,203
#: training / 594 held-out images
HELD_OUT, SPLIT_SEED = 0.33, 0
#: the calibration (and distillation) inputs: the first this many training images, no labels
CALIBRATION = 512
#: each 8x8 digit is upsampled to this size (bilinear), one channel
HW = 32
#: the original's training: Adam, one-cycle schedule, batches of 64 training images, each
#: moved up to SHIFT pixels (the paper's value fills in)
TRAIN_STEPS, SHIFT = 800, 2
#: the calibrated and distilled runs
FIT = ("--refine-steps", "2")
DISTILL_STEPS = 300


def real_digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """sklearn's load_digits split as :data:`HELD_OUT` says, upsampled to HW x HW
    (bilinear), normalised by the training images' mean and std: (x_train, y_train,
    x_held, y_held)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=HELD_OUT, random_state=SPLIT_SEED)

    def up(a: np.ndarray) -> torch.Tensor:
        t = torch.tensor(a, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16
        return nn.functional.interpolate(t, size=(HW, HW), mode="bilinear",
                                         align_corners=False)

    a, b = up(xtr), up(xte)
    mean, std = a.mean(), a.std()
    return (a - mean) / std, torch.tensor(ytr), (b - mean) / std, torch.tensor(yte)


def _shifted(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Each image moved by up to SHIFT pixels each way; the paper (the least value) fills in."""
    pad = nn.functional.pad(x, (SHIFT,) * 4, value=float(x.amin()))
    dy, dx = torch.randint(0, 2 * SHIFT + 1, (2, len(x)), generator=g).tolist()
    return torch.stack([p[:, i:i + HW, j:j + HW] for p, i, j in zip(pad, dy, dx, strict=True)])


def train_real(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               xt: torch.Tensor, yt: torch.Tensor) -> float:
    """The original, trained on the training split with labels; its held-out accuracy."""
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=TRAIN_STEPS)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(TRAIN_STEPS):
        idx = torch.randint(0, len(x), (64,), generator=g)
        loss = nn.functional.cross_entropy(model(_shifted(x[idx], g)), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        return float((model(xt).argmax(1) == yt).float().mean())


def real_digits_setup() -> tuple[Path, str]:
    """Train the original on real digits; write it, the calibration and the held-out inputs
    to a new folder. Returns the folder and the row label."""
    d = Path(tempfile.mkdtemp())
    x, y, xt, yt = real_digits()
    torch.save(x[:CALIBRATION].clone(), d / "cal.pt")
    np.save(d / "eval.npy", xt.numpy())
    d.joinpath("shape").write_text(f"1,1,{HW},{HW}")
    torch.manual_seed(0)
    net = ResNet18ish(in_channels=1, stem_stride=2)
    t0 = time.perf_counter()
    acc = train_real(net, x, y, xt, yt)
    t_train = time.perf_counter() - t0
    torch.save(net.state_dict(), d / "r18.pt")
    return d, f"ResNet18ish ({100 * acc:.2f}% on the {len(xt)}, trained {t_train:.0f} s)"


#: how the real-digits net is loaded: its class and arguments
REAL_ARCH = ("--arch", f"{Path(__file__).resolve()}:ResNet18ish",
             "--arch-kwargs", '{"in_channels": 1, "stem_stride": 2}')


def resnet18_real(d: Path, label: str) -> None:
    """The target rows: multiplier 1, SVD only, calibrated and distilled."""
    x = torch.load(d / "cal.pt")
    print(f"ResNet-18-style (width 16, stride-2 stem, "
          f"{sum(p.numel() for p in ResNet18ish(1, stem_stride=2).parameters()):,} params) on "
          f"real handwritten digits (scikit-learn's load_digits, 8x8 upsampled to {HW}x{HW} "
          f"bilinear, one channel): train_test_split(test_size={HELD_OUT}, random_state="
          f"{SPLIT_SEED}); the original trained {TRAIN_STEPS} steps on the training split "
          f"with labels; calibration and distillation from the first {len(x)} training "
          f"images, unlabelled; agreement and output error on the held-out images; "
          f"distilled {DISTILL_STEPS} steps:\n")
    print(HEAD)
    three_ways(label, d / "r18.pt", d, ["--depth-multiplier", "1"], DISTILL_STEPS,
               list(REAL_ARCH), FIT)


def target_latency_row(d: Path, label: str, fraction: float = 0.7) -> None:
    """The row for ``convert --target-latency`` on the real-digits net: the same
    conversion as :func:`resnet18_real`'s, the budget a measured latency fraction (eager,
    2 threads, batch 1), calibrated and distilled, in the same table. A refusal (the
    fraction not reached) is a row saying so."""
    opts = ["--target-latency", str(fraction), "--runtime", "eager", "--threads", "2",
            "--input-shape", d.joinpath("shape").read_text()]
    try:
        three_ways(label, d / "r18.pt", d, opts, DISTILL_STEPS, list(REAL_ARCH), FIT)
    except Refused as e:
        print(f"| {label} | {' '.join([*opts, *FIT])} | refused: {e} |")


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
    ap.add_argument("--skip-patterns", action="store_true")
    ap.add_argument("--skip-latency", action="store_true",
                    help="leave out the --target-latency row (it times every layer)")
    ap.add_argument("--skip-resnet50", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    d, label = real_digits_setup()
    resnet18_real(d, label)
    if not args.skip_latency:
        target_latency_row(d, label, 0.7)
    if not args.skip_patterns:
        pattern_networks(args.quick)
    if not args.skip_resnet50:
        resnet50_cost(args.quick)


if __name__ == "__main__":
    from _common import results_to

    with results_to("fidelity_quick" if "--quick" in sys.argv else "fidelity"):
        main()
