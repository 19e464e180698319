"""Data-aware conversion: a trained network keeps working after conversion when its
converted layers are refitted on unlabelled inputs; fidelity is measured, not assumed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from dsconv_cli.cli import app

from .zoo import SmallCNN, patterns, train_on_patterns

runner = CliRunner()


def run(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SmallCNN trained to high accuracy on the pattern task (a few seconds), saved with
    256 unlabelled calibration inputs and 256 held-out ones."""
    d = tmp_path_factory.mktemp("cal")
    torch.manual_seed(0)
    model = SmallCNN()
    acc = train_on_patterns(model, steps=150, n=1024)
    assert acc > 0.9, acc  # the task is learnt: agreement below will mean something
    torch.save(model, d / "cnn.pt")
    torch.save(patterns(256, seed=3)[0], d / "cal.pt")
    np.save(d / "eval.npy", patterns(256, seed=4)[0].numpy())
    return d


def convert(d: Path, *extra: Any) -> dict[str, Any]:
    r = run("convert", d / "cnn.pt", "--trust-pickle", "--dry-run", "--min-channels", "8",
            "--depth-multiplier", "1", "--eval-data", d / "eval.npy", "--json", *extra)
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)["cases"][0]


def test_calibration_keeps_the_model_working(trained: Path) -> None:
    plain = convert(trained)
    cal = convert(trained, "--calibration-data", trained / "cal.pt")
    a0, a1 = plain["fidelity"]["agreement"], cal["fidelity"]["agreement"]
    assert cal["fidelity"]["on"] == "eval" and cal["fidelity"]["n"] == 256
    assert a1 >= 0.9 and a1 > a0, (a0, a1)
    assert cal["fidelity"]["rel_output_error"] < plain["fidelity"]["rel_output_error"]
    assert cal["fidelity_on_calibration"]["on"] == "calibration"
    rows = [la for la in cal["layers"] if la["status"] == "converted"]
    assert len(rows) == 3  # the 32-channel 3x3 convs (the 3-channel stem is skipped)
    for la in rows:  # the refit never makes a layer worse on the data it was fitted on
        assert la["output_error"]["calibrated"] <= la["output_error"]["svd"] + 1e-9


def test_the_refit_is_exact_where_the_ds_form_is(trained: Path, tmp_path: Path) -> None:
    # full rank (m = 9 for a 3x3 kernel): the DS form can represent every layer exactly
    cal = convert(trained, "--calibration-data", trained / "cal.pt", "--depth-multiplier",
                  "9", "--allow-larger")
    for la in cal["layers"]:
        if la["status"] == "converted":
            assert la["output_error"]["calibrated"] < 1e-5, la
    assert cal["fidelity"]["agreement"] == 1.0


def test_min_agreement_refuses_and_writes_nothing(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.pt"
    r = run("convert", trained / "cnn.pt", "--trust-pickle", "-o", out, "--min-channels", "8",
            "--eval-data", trained / "eval.npy", "--min-agreement", "0.999")
    assert r.exit_code == 1 and "below --min-agreement" in r.stderr and not out.exists()
    r = run("convert", trained / "cnn.pt", "--trust-pickle", "-o", out, "--min-channels", "8",
            "--eval-data", trained / "eval.npy", "--max-output-error", "0.0001")
    assert r.exit_code == 1 and "--max-output-error" in r.stderr and not out.exists()


def test_plan_records_calibration_and_arch(trained: Path, tmp_path: Path) -> None:
    model = torch.load(trained / "cnn.pt", weights_only=False)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    out = tmp_path / "o.pt"
    r = run("convert", tmp_path / "sd.pt", "-o", out, "--arch", "tests.zoo:SmallCNN",
            "--arch-kwargs", '{"classes": 4}', "--min-channels", "8",
            "--calibration-data", trained / "cal.pt")
    assert r.exit_code == 0, r.stderr
    plan = json.loads((tmp_path / "o.pt.plan.json").read_text())
    assert plan["arch"] == {"arch": "tests.zoo:SmallCNN", "arch_kwargs": {"classes": 4}}
    assert all(la["calibrated"] for la in plan["layers"]) and len(plan["layers"]) == 3
    from dsconv_cli import apply_plan

    rebuilt = apply_plan(SmallCNN(classes=4), plan)
    rebuilt.load_state_dict(torch.load(out, weights_only=True))


@pytest.mark.parametrize("make,message", [
    (lambda d: torch.save(torch.randn(4, 5, 16, 16), d / "bad.pt"), "do not fit the model"),
    (lambda d: torch.save(torch.randn(0, 3, 16, 16), d / "bad.pt"), "expected N inputs"),
    (lambda d: torch.save(torch.full((2, 3, 16, 16), float("nan")), d / "bad.pt"), "NaN"),
    (lambda d: torch.save(torch.zeros(2, 3, 16, 16, dtype=torch.int64), d / "bad.pt"),
     "floating-point"),
    (lambda d: torch.save({"x": nn.Linear(1, 1)}, d / "bad.pt"), "pickled objects"),
    (lambda d: None, "no such file"),
])
def test_bad_calibration_data(trained: Path, tmp_path: Path, make: Any, message: str) -> None:
    make(tmp_path)
    out = tmp_path / "o.pt"
    r = run("convert", trained / "cnn.pt", "--trust-pickle", "-o", out, "--min-channels", "8",
            "--calibration-data", tmp_path / "bad.pt")
    assert r.exit_code == 2 and message in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("Error:") and not out.exists()


class Conv2dSame(nn.Conv2d):
    """timm's pattern: TF-style 'same' padding computed in forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        ph = max((ih - 1) // self.stride[0] * self.stride[0] + self.kernel_size[0] - ih, 0)
        pw = max((iw - 1) // self.stride[1] * self.stride[1] + self.kernel_size[1] - iw, 0)
        x = nn.functional.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return nn.functional.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation,
                                    self.groups)


class StdConv2d(nn.Conv2d):
    """timm's weight-standardised conv."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return self._conv_forward(x, w, self.bias)


def test_conv_subclasses_with_their_own_forward_are_not_converted(tmp_path: Path) -> None:
    m = nn.Sequential(Conv2dSame(32, 32, 3, stride=2), StdConv2d(32, 32, 3, padding=1))
    p = tmp_path / "m.pt"
    torch.save(m, p)
    r = run("convert", p, "--trust-pickle", "--dry-run", "--input-shape", "1,32,15,15",
            "--json")
    case = json.loads(r.stdout)["cases"][0]
    assert case["totals"]["converted"] == 0
    assert all("overrides Conv2d.forward" in la["reason"] for la in case["layers"])
    assert case["verification"]["rel_diff"] == 0.0


def test_report_counts_the_whole_model(tmp_path: Path) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from .zoo import convnext_like

    torch.manual_seed(0)
    m = convnext_like()
    p = tmp_path / "m.pt"
    torch.save(m, p)
    r = run("convert", p, "--trust-pickle", "-o", tmp_path / "o.pt", "--min-channels", "1",
            "--input-shape", "1,3,32,32", "--allow-larger", "--json")
    assert r.exit_code == 0, r.stderr
    tot = json.loads(r.stdout)["cases"][0]["totals"]
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m.eval()(torch.randn(1, 3, 32, 32))
    assert tot["model_macs_before"] == fc.get_total_flops() // 2
    assert tot["model_macs_before"] > tot["conv_macs_before"]  # the MLP's Linear layers count
    converted = torch.load(tmp_path / "o.pt", weights_only=False)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        converted.eval()(torch.randn(1, 3, 32, 32))
    assert tot["model_macs_after"] == fc.get_total_flops() // 2


def test_a_ds_form_that_changes_the_shape_keeps_the_original(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dsconv_cli.torch_backend import convert as conv_mod

    real = conv_mod.make_pair

    def wrong_stride(conv: nn.Conv2d, m: int, init: str, svd: Any = None) -> nn.Sequential:
        pair = real(conv, m, init, svd)
        pair[0].stride = (2, 2)  # what a mis-converted layer looks like
        return pair

    monkeypatch.setattr(conv_mod, "make_pair", wrong_stride)
    m = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 8, 3))
    p = tmp_path / "m.pt"
    torch.save(m, p)
    r = run("convert", p, "--trust-pickle", "-o", tmp_path / "o.pt", "--input-shape",
            "1,32,12,12", "--json", "--write-unchanged")
    assert r.exit_code == 0, r.stderr
    case = json.loads(r.stdout)["cases"][0]
    assert case["totals"]["converted"] == 0
    assert all("changes the output shape" in la["reason"] for la in case["layers"])
    assert case["verification"]["rel_diff"] == 0.0


@pytest.mark.parametrize("target", ["0.5", "0.8", "0.3"])
def test_target_macs_meets_its_budget_and_never_exceeds_it(trained: Path, tmp_path: Path,
                                                           target: str) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    out = tmp_path / "o.pt"
    r = run("convert", trained / "cnn.pt", "--trust-pickle", "-o", out, "--min-channels",
            "8", "--input-shape", "1,3,16,16", "--target-macs", target, "--json")
    assert r.exit_code == 0, r.stderr
    tot = json.loads(r.stdout)["cases"][0]["totals"]
    converted = torch.load(out, weights_only=False).eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        converted(torch.randn(1, 3, 16, 16))
    macs = fc.get_total_flops() // 2
    assert macs == tot["model_macs_after"] <= float(target) * tot["model_macs_before"]
    ranks = [la["rank"] for la in json.loads(r.stdout)["cases"][0]["layers"] if la["rank"]]
    assert ranks and max(ranks) >= 1


def test_target_macs_rules(trained: Path) -> None:
    base = ["convert", trained / "cnn.pt", "--trust-pickle", "--dry-run", "--min-channels",
            "8", "--input-shape", "1,3,16,16"]
    r = run(*base, "--target-macs", "0.5", "--depth-multiplier", "2")
    assert r.exit_code == 2 and "one of them" in r.stderr
    r = run(*base, "--target-macs", "0.5", "--energy", "0.9")
    assert r.exit_code == 2
    r = run(*base, "--target-macs", "0.01")  # below what multiplier 1 everywhere gives
    assert r.exit_code == 1 and "even at depth multiplier 1" in r.stderr
    big = run(*base, "--target-macs", "0.9", "--json")
    small = run(*base, "--target-macs", "0.4", "--json")
    r_big = sum(la["rank"] or 0 for la in json.loads(big.stdout)["cases"][0]["layers"])
    r_small = sum(la["rank"] or 0 for la in json.loads(small.stdout)["cases"][0]["layers"])
    assert r_big > r_small  # a larger budget buys more rank


def test_grouped_conv_converts_per_group_and_is_exact_at_full_rank(tmp_path: Path) -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1, groups=4, bias=True), nn.ReLU())
    p = tmp_path / "m.pt"
    torch.save(m, p)
    out = tmp_path / "o.pt"
    r = run("convert", p, "--trust-pickle", "-o", out, "--input-shape", "2,32,10,10",
            "--depth-multiplier", "9", "--allow-larger", "--json")
    assert r.exit_code == 0, r.stderr
    case = json.loads(r.stdout)["cases"][0]
    (la,) = case["layers"]
    assert la["status"] == "converted" and la["max_rank"] == 9 and la["weight_error"] < 1e-6
    assert case["verification"]["rel_diff"] < 1e-6
    pair = torch.load(out, weights_only=False)[0]
    assert pair[1].groups == 4 and pair[0].groups == 32
    assert sum(t.numel() for t in pair.parameters()) == la["params_after"]
    # at m=1 it is smaller and, calibrated on data, still a least-squares fit per group
    data = torch.randn(64, 32, 10, 10)
    torch.save(data, tmp_path / "cal.pt")
    r = run("convert", p, "--trust-pickle", "--dry-run", "--calibration-data",
            tmp_path / "cal.pt", "--json")
    (la,) = json.loads(r.stdout)["cases"][0]["layers"]
    assert la["params_after"] < la["params_before"]
    assert la["output_error"]["calibrated"] <= la["output_error"]["svd"] + 1e-9


def test_refine_steps_alternate_depthwise_and_pointwise(trained: Path) -> None:
    base = convert(trained, "--calibration-data", trained / "cal.pt")
    refined = convert(trained, "--calibration-data", trained / "cal.pt", "--refine-steps", "2")
    for a, b in zip(base["layers"], refined["layers"], strict=True):
        if a["status"] != "converted":
            continue
        assert b["output_error"]["refine_steps"] == 2
        # alternating least squares never increases the error it minimises (first layer:
        # the same activations; later layers see refined earlier ones, so compare loosely)
        assert b["output_error"]["calibrated"] <= a["output_error"]["calibrated"] * 1.05
    first = next(la for la in refined["layers"] if la["status"] == "converted")
    first_base = next(la for la in base["layers"] if la["status"] == "converted")
    assert first["output_error"]["calibrated"] < first_base["output_error"]["calibrated"]
    assert refined["fidelity"]["rel_output_error"] <= base["fidelity"]["rel_output_error"]
    r = run("convert", trained / "cnn.pt", "--trust-pickle", "--dry-run", "--refine-steps", "1")
    assert r.exit_code == 2 and "--calibration-data" in r.stderr


# ------------------------------------------------------------ dtypes, memory, odd data

def _errors(case: dict[str, Any]) -> list[float]:
    return [la["output_error"]["calibrated"] for la in case["layers"]
            if la["status"] == "converted"]


def test_calibration_data_is_cast_to_the_models_dtype(trained: Path, tmp_path: Path) -> None:
    # numpy's default float64 and fp16 data against a float32 model: the same inputs,
    # cast, give the refit that float32 data gives (they failed in the layer-order pass)
    x = torch.load(trained / "cal.pt")
    np.save(tmp_path / "c64.npy", x.double().numpy())
    np.save(tmp_path / "c16.npy", x.half().numpy())
    torch.save(x.half().float(), tmp_path / "c16as32.pt")
    def calibrated(data: Path) -> dict[str, Any]:
        r = run("convert", trained / "cnn.pt", "--trust-pickle", "--dry-run", "--json",
                "--min-channels", "8", "--calibration-data", data)
        assert r.exit_code == 0, r.stderr
        return json.loads(r.stdout)["cases"][0]

    ref, c64 = calibrated(trained / "cal.pt"), calibrated(tmp_path / "c64.npy")
    assert len(_errors(ref)) == 3
    assert _errors(c64) == pytest.approx(_errors(ref), rel=1e-4, abs=1e-6)
    assert c64["fidelity"] == ref["fidelity"]
    c16, ref16 = calibrated(tmp_path / "c16.npy"), calibrated(tmp_path / "c16as32.pt")
    assert _errors(c16) == pytest.approx(_errors(ref16), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_models_calibrate(trained: Path, tmp_path: Path,
                                        dtype: torch.dtype) -> None:
    model = torch.load(trained / "cnn.pt", weights_only=False).to(dtype)
    torch.save(model, tmp_path / "low.pt")
    np.save(tmp_path / "c64.npy", torch.load(trained / "cal.pt").double().numpy())
    r = run("convert", tmp_path / "low.pt", "--trust-pickle", "-o", tmp_path / "o.pt",
            "--min-channels", "8", "--calibration-data", tmp_path / "c64.npy",
            "--eval-data", trained / "eval.npy", "--json")
    assert r.exit_code == 0, r.stderr
    case = json.loads(r.stdout)["cases"][0]
    errs = _errors(case)
    assert len(errs) == 3 and all(e < 0.9 for e in errs)  # refitted, in float64 from bf16
    assert case["fidelity"]["agreement"] >= 0.9, case["fidelity"]
    out = torch.load(tmp_path / "o.pt", weights_only=False)
    assert {p.dtype for p in out.parameters()} == {dtype}  # written in its own dtype


@pytest.mark.parametrize("option", ["--calibration-data", "--eval-data"])
@pytest.mark.parametrize("data,message", [
    (lambda: torch.randn(4, 3, 16, 16, device="meta"), "meta tensor"),
    (lambda: torch.randn(4, 3, 16, 16).to_sparse(), "sparse_coo tensor"),
    (lambda: torch.randn(4, 3, 16, 16, dtype=torch.complex64), "floating-point"),
    (lambda: torch.zeros(4, 3, 16, 16, dtype=torch.int64), "floating-point"),
    (lambda: torch.zeros(0, 3, 16, 16), "expected N inputs"),
    (lambda: torch.zeros(4, 0, 16, 16), "expected N inputs"),
])
def test_odd_tensors_as_data_are_one_line(trained: Path, tmp_path: Path, option: str,
                                          data: Any, message: str) -> None:
    torch.save(data(), tmp_path / "d.pt")
    r = run("convert", trained / "cnn.pt", "--trust-pickle", "--dry-run", "--min-channels",
            "8", option, tmp_path / "d.pt")
    assert r.exit_code == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith(f"Error: {option} ") and message in lines[-1], r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr


def test_big_endian_npy_is_one_line(trained: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "be.npy", np.zeros((4, 3, 16, 16), dtype=">f4"))
    r = run("convert", trained / "cnn.pt", "--trust-pickle", "--dry-run",
            "--calibration-data", tmp_path / "be.npy")
    assert r.exit_code == 2 and "byte order" in r.stderr.strip().splitlines()[-1]


def _mapping_of(t: torch.Tensor) -> str | None:
    """What /proc/self/maps says holds the tensor's first byte: a file's path, [heap]..."""
    addr = t.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split()
        lo, hi = (int(v, 16) for v in parts[0].split("-"))
        if lo <= addr < hi:
            return parts[5] if len(parts) > 5 else None
    return None


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_data_is_memory_mapped_and_batches_are_copies(tmp_path: Path) -> None:
    from dsconv_cli.torch_backend.calibrate import _batches, load_inputs

    x = torch.randn(64, 3, 8, 8, dtype=torch.float64)
    np.save(tmp_path / "d.npy", x.numpy())
    torch.save(x.float(), tmp_path / "d.pt")
    for name in ("d.npy", "d.pt"):
        data = load_inputs(tmp_path / name, "--calibration-data")
        assert _mapping_of(data) == str(tmp_path / name)  # not read into memory
        model = nn.Conv2d(3, 4, 1)  # float32: float64 data is cast per batch
        batches = list(_batches(data, 16, model))
        assert [b.shape[0] for b in batches] == [16] * 4
        assert all(b.dtype == torch.float32 and _mapping_of(b) != str(tmp_path / name)
                   for b in batches)
        batches[0].zero_()  # a model writing to its input never writes to the data
        assert torch.equal(data[:16], (x if name == "d.npy" else x.float())[:16])


class Recorder(nn.Module):
    """SmallCNN-like; records the batch size of every forward it runs."""

    seen: list[int] = []

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        Recorder.seen.append(x.shape[0])
        return self.body(x)


def test_memory_is_estimated_before_the_first_batch_and_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dsconv_cli.torch_backend import calibrate

    torch.manual_seed(0)
    torch.save(Recorder().state_dict(), tmp_path / "sd.pt")
    torch.save(torch.randn(64, 3, 32, 32), tmp_path / "cal.pt")
    base = ["convert", tmp_path / "sd.pt", "--arch", "tests.test_calibrate:Recorder",
            "--dry-run", "--min-channels", "8", "--calibration-data", tmp_path / "cal.pt"]
    # the estimate is computed for real; only the machine's free memory is made small
    monkeypatch.setattr(calibrate, "free_memory", lambda: 6_000_000)
    Recorder.seen.clear()
    r = run(*base, "--calibration-batch", "64")
    assert r.exit_code == 2, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: --calibration-batch 64: calibration would need about")
    assert "6 MB is free" in line and "per input" in line
    assert set(Recorder.seen) == {1}  # one-input forwards only: nothing batched ran
    fits = int(line.rsplit("--calibration-batch ", 1)[1].split()[0])
    assert 1 <= fits < 64
    assert run(*base, "--calibration-batch", fits).exit_code == 0  # what it says fits
    assert run(*base, "--calibration-batch", fits + 1).exit_code == 2
    monkeypatch.setattr(calibrate, "free_memory", lambda: 1 << 10)
    r = run(*base)
    assert r.exit_code == 2 and "not even --calibration-batch 1 fits" in r.stderr


def test_memory_estimate_grows_with_what_it_counts() -> None:
    from dsconv_cli.torch_backend import footprint
    from dsconv_cli.torch_backend.calibrate import _survey
    from dsconv_cli.torch_backend.convert import make_pair

    def pair_net(hw: int) -> tuple[nn.Module, nn.Module, torch.Tensor]:
        torch.manual_seed(0)
        orig = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        conv = nn.Sequential(make_pair(orig[0], 2, "svd"), nn.ReLU())
        return orig, conv, torch.randn(4, 8, hw, hw)

    def measured(hw: int) -> footprint.Survey:
        orig, conv, x = pair_net(hw)
        return _survey(orig, conv, ["0"], x, "--calibration-data")

    small, big = measured(8), measured(16)
    la = small.layers["0"]
    # measured on a real forward: (8, 8, 8) in, 16 depthwise and 16 output channels
    assert (la.pair_in, la.mid, la.out, la.patches) == (512, 1024, 1024, 8 * 9 * 64)
    assert small.largest == 1024 and small.output == 1024 and small.elem == 4
    e_small = footprint.estimate(small, "calibration", 4)
    e_big = footprint.estimate(big, "calibration", 4)
    assert e_big.per_input == 4 * e_small.per_input  # activations scale with the pixels
    assert e_big.fixed == e_small.fixed  # the normal equations do not
    refine = footprint.estimate(small, "calibration", 4, refine_steps=1)
    assert refine.per_input > e_small.per_input and refine.fixed > e_small.fixed
    cached = footprint.estimate(small, "calibration", 4, cached_targets=True)
    assert cached.fixed - e_small.fixed == 4 * 1024 * 4


@pytest.mark.parametrize("limit,usage,left", [
    ("1000000\n", "400000\n", 600_000),  # a container's limit: what it leaves
    ("max\n", "400000\n", None),  # cgroup v2 without a limit
    ("9223372036854771712\n", "5\n", None),  # cgroup v1's "unlimited"
    ("100\n", "400\n", 0),  # over the limit already
])
def test_free_memory_respects_a_container_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                limit: str, usage: str,
                                                left: int | None) -> None:
    import dsconv_cli.torch_backend as tb

    (tmp_path / "max").write_text(limit)
    (tmp_path / "cur").write_text(usage)
    monkeypatch.setattr(tb, "CGROUP_FILES", ((str(tmp_path / "none"), str(tmp_path / "x")),
                                             (str(tmp_path / "max"), str(tmp_path / "cur"))))
    assert tb._cgroup_left() == left
    monkeypatch.setattr(tb.os, "sysconf", lambda name: 4096 if "SIZE" in name else 1000)
    host = 4096 * 1000
    assert tb.free_memory() == (host if left is None else min(host, left))
