"""Whole-model analysis: counts against torch's FlopCounterMode and sum(numel) on real zoo
patterns; loading, uncounted ops, --strict, --measure and --vs ds as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from dsconv_cli.cli import app
from dsconv_cli.torch_backend.counting import count_model

from .test_measure import FAST
from .utils import validate_report
from .zoo import ZOO, DataDependent, Spectral

ROOT = Path(__file__).parents[1]
runner = CliRunner()


def reference(model: nn.Module, shape: tuple[int, ...]) -> tuple[int, int, tuple[int, ...]]:
    """(params, MACs, output shape) from torch itself on real tensors: FlopCounterMode / 2,
    with attention on its math path and MultiheadAttention's fused fast path off (the
    fused kernels are invisible to FlopCounterMode)."""
    model.eval()
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False) as fc, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
            y = model(torch.randn(*shape))
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    return sum(p.numel() for p in model.parameters()), fc.get_total_flops() // 2, tuple(y.shape)


@pytest.mark.parametrize("name", list(ZOO))
def test_counts_equal_torch_on_the_zoo(name: str) -> None:
    factory, shape = ZOO[name]
    torch.manual_seed(0)
    model = factory()
    params, macs, out = reference(model, shape)
    c = count_model(model, shape)
    assert c.counted_on == "meta"
    assert (c.params, c.macs, c.output_shape) == (params, macs, out)
    assert c.macs > 0 and not c.uncounted, c.uncounted
    # the model itself was not touched: its weights are still real
    assert all(not p.is_meta for p in model.parameters())


def test_shared_parameters_count_once() -> None:
    conv = nn.Conv2d(8, 8, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU(), conv)
    c = count_model(model, (1, 8, 6, 6))
    assert c.params == 8 * 8 * 9 + 8
    assert c.macs == 2 * 8 * 8 * 9 * 36  # called twice: MACs twice


def test_rows_include_children_and_attention_is_counted() -> None:
    from .zoo import ViT

    model = ViT()
    c = count_model(model, (2, 3, 32, 32))
    blocks = c.modules["blocks"].macs
    assert blocks == sum(c.modules[f"blocks.{i}"].macs for i in range(2))
    attn = c.modules["blocks.0.attn"].macs
    qkv, proj = c.modules["blocks.0.attn.qkv"].macs, c.modules["blocks.0.attn.proj"].macs
    n, d = 17, 64
    assert attn - qkv - proj == 2 * 2 * n * n * d  # QK^T and AV, batch 2


def test_meta_failure_falls_back_to_zeros_and_says_so() -> None:
    c = count_model(DataDependent(), (1, 3, 8, 8))
    assert c.counted_on.startswith("zeros") and c.macs == 8 * 3 * 9 * 36


class DataDependentAttention(nn.Module):
    """Attention behind a value-dependent branch: counted on real zeros, where CPU
    attention runs its fused flash kernel (which torch's own registry lacks)."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(32, 96)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).view(2, 16, 3, 4, 8).permute(2, 0, 3, 1, 4)
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return y if float(y.sum()) >= 0 else -y


def test_zeros_fallback_counts_attention() -> None:
    model = DataDependentAttention()
    c = count_model(model, (2, 16, 32))
    assert c.counted_on.startswith("zeros")
    _, macs, _ = reference(model, (2, 16, 32))
    linear = 2 * 16 * 32 * 96
    attention = 2 * 2 * 4 * 16 * 16 * 8  # QK^T and AV: batch 2, 4 heads, 16 tokens, dim 8
    assert macs == linear + attention and c.macs == macs


def run(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def test_uncounted_op_is_listed_and_strict_fails(tmp_path: Path) -> None:
    p = tmp_path / "m.pt"
    torch.save(Spectral(), p)
    r = run("compare", "--model", p, "--trust-pickle", "--input-shape", "1,3,8,8", "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    validate_report(data)
    (unc,) = data["cases"][0]["uncounted"]
    assert unc["op"] == "aten::_fft_r2c" and unc["calls"] == 1 and unc["modules"] == [""]
    r = run("compare", "--model", p, "--trust-pickle", "--input-shape", "1,3,8,8")
    assert "aten::_fft_r2c x1" in r.stdout
    r = run("compare", "--model", p, "--trust-pickle", "--input-shape", "1,3,8,8", "--strict")
    assert r.exit_code == 1 and "_fft_r2c" in r.stderr


def test_arch_alone_builds_without_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    r = run("compare", "--arch", "tests.zoo:ViT", "--arch-kwargs", '{"depth": 3}',
            "--input-shape", "1,3,32,32", "--json", "--depth", "1")
    assert r.exit_code == 0, r.stderr
    case = json.loads(r.stdout)["cases"][0]
    assert case["model"]["counted_on"] == "meta" and case["model"]["arch"] == "tests.zoo:ViT"
    from .zoo import ViT

    params, macs, _ = reference(ViT(depth=3), (1, 3, 32, 32))
    assert case["totals"]["params"] == params and case["totals"]["macs"] == macs


def test_table_depth_and_ds_forms(tmp_path: Path) -> None:
    from .models import small_resnet

    p = tmp_path / "sd.pt"
    torch.save(small_resnet().state_dict(), p)
    args = ["compare", "--model", p, "--arch", "tests.models:small_resnet", "--input-shape",
            "1,3,64,64"]
    r = run(*args, "--json")
    case = json.loads(r.stdout)["cases"][0]
    rows = {la["name"]: la for la in case["layers"]}
    conv2 = rows["stages.0.0.conv2"]  # a 32->32 3x3 conv at 16x16
    assert conv2["ds"]["params"] == 32 * 9 + 32 * 32
    assert conv2["ds"]["macs"] == (32 * 9 + 32 * 32) * 16 * 16
    assert rows["stem.0"]["ds_skipped"].startswith("in_channels 3 < --min-channels")
    opp = case["ds_opportunity"]
    saved = sum(la["macs"] - la["ds"]["macs"] for la in case["layers"] if la.get("ds"))
    assert opp["macs_after"] == opp["macs_now"] - saved and opp["eligible_convs"] == 2
    # the same options as convert: --exclude and --depth-multiplier change the plan
    r = run(*args, "--json", "--exclude", "stages.1.*", "--depth-multiplier", "2")
    opp2 = json.loads(r.stdout)["cases"][0]["ds_opportunity"]
    assert opp2["eligible_convs"] == 1 and opp2["depth_multiplier"] == 2
    r = run(*args, "--depth", "1")
    assert "stages.0" not in r.stdout and "stages " in r.stdout
    for fmt in ("csv", "markdown"):
        assert run(*args, "--format", fmt).exit_code == 0


def test_loading_rules(tmp_path: Path) -> None:
    from .models import small_resnet

    sd, ck, pk = tmp_path / "sd.pt", tmp_path / "ck.pt", tmp_path / "pk.pt"
    torch.save(small_resnet().state_dict(), sd)
    torch.save({"state": small_resnet().state_dict(), "epoch": 1}, ck)
    torch.save(small_resnet(), pk)
    shape = ("--input-shape", "1,3,32,32")
    assert run("compare", "--model", sd, "--arch", "tests.models:small_resnet",
               *shape).exit_code == 0
    r = run("compare", "--model", ck, "--arch", "tests.models:small_resnet",
            "--state-dict-key", "state", *shape)
    assert r.exit_code == 0, r.stderr
    r = run("compare", "--model", pk, *shape)
    assert r.exit_code == 2 and "--trust-pickle" in r.stderr
    r = run("compare", "--model", sd, *shape)
    assert r.exit_code == 2 and "--arch" in r.stderr
    r = run("compare", "--model", sd, "--arch", "tests.models:small_resnet")
    assert r.exit_code == 2 and "--input-shape" in r.stderr


def test_two_inputs_broken_arch_and_wrong_shape() -> None:
    r = run("compare", "--arch", "tests.zoo:TwoInputs", "--input-shape", "1,4")
    assert r.exit_code == 2 and "(image, mask)" in r.stderr
    r = run("compare", "--arch", "tests.zoo:broken", "--input-shape", "1,3,8,8")
    assert r.exit_code == 2 and "cannot build with 10 classes" in r.stderr
    r = run("compare", "--arch", "tests.models:small_resnet", "--input-shape", "1,4,32,32")
    assert r.exit_code == 2 and "stem.0 (Conv2d)" in r.stderr and "Traceback" not in r.stderr


def test_measure_and_vs_ds(tmp_path: Path) -> None:
    r = run("compare", "--arch", "tests.models:small_resnet", "--input-shape", "1,3,32,32",
            "--measure", "--vs", "ds", "--memory-format", "both", "--json", *FAST)
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    validate_report(data)
    case = data["cases"][0]
    assert set(case["measured_by_format"]) == {"nchw", "channels_last"}
    assert "hooks" in case["attribution"]
    top = [la for la in case["layers"] if la["depth"] == 1]
    assert all(la["measured"]["median_ms"] > 0 for la in top)
    # "other" is what the same hooked forwards spent outside the top-level modules
    assert case["totals"]["other_ms"] == pytest.approx(
        case["totals"]["attributed_ms"] - sum(la["measured"]["inclusive_ms"] for la in top),
        abs=1e-5)
    sp = case["speedup"]
    # one figure: the interleaved A/B estimate, inside its own interval (issue 29)
    assert sp["measured"] == pytest.approx(sp["estimate"], rel=1e-3)
    assert sp["ci95"][0] <= sp["estimate"] <= sp["ci95"][1]
    assert case["vs"]["totals"]["macs"] == case["ds_opportunity"]["macs_after"]
    r = run("compare", "--arch", "tests.models:small_resnet", "--input-shape", "1,3,32,32",
            "--vs", "ds")
    assert r.exit_code == 2 and "--measure" in r.stderr


def test_profile_model_case_counts_functional_convs_and_attention(tmp_path: Path) -> None:
    from .zoo import ViT

    torch.manual_seed(0)
    torch.save(ViT().state_dict(), tmp_path / "vit.pt")
    _, macs, _ = reference(ViT(), (1, 3, 32, 32))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("timing: {min_time: 0.01, warmup: 1}\ncases:\n  - name: vit\n    model: "
                   "{path: vit.pt, arch: 'tests.zoo:ViT', input_shape: [1, 3, 32, 32]}\n"
                   f"    budget: {{max_macs: {macs}}}\n")
    r = run("profile", cfg, "--json", "--trust-code")
    assert r.exit_code == 0, r.stdout + r.stderr
    (case,) = json.loads(r.stdout)["cases"]
    assert case["analytic"]["macs"] == macs and case["budget"]["max_macs"]["ok"]
    cfg.write_text(cfg.read_text().replace(f"max_macs: {macs}", f"max_macs: {macs - 1}"))
    r = run("profile", cfg, "--json", "--trust-code")
    assert r.exit_code == 1  # attention and the class-token path count toward the budget


def test_installed_dsconv_analyses_an_arch() -> None:
    exe = Path(sys.executable).parent / "dsconv"
    cmd: list[str] = [str(exe)] if exe.exists() else [sys.executable, "-m", "dsconv_cli"]
    p = subprocess.run([*cmd, "compare", "--arch", "tests.zoo:convnext_like", "--input-shape",
                        "1,3,32,32", "--json"], capture_output=True, text=True, timeout=120,
                       cwd=ROOT)
    assert p.returncode == 0, p.stderr
    case = json.loads(p.stdout)["cases"][0]
    from .zoo import convnext_like

    assert case["totals"]["macs"] == reference(convnext_like(), (1, 3, 32, 32))[1]


