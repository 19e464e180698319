"""Presets: the papers' totals, torch's own counts of the built networks, the CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dsconv_cli.cli import app
from dsconv_cli.errors import FieldError
from dsconv_cli.presets import PAPER_TOTALS, PRESETS, full_conv, get_preset
from dsconv_cli.torch_backend.build import build_preset

from .utils import torch_counts, validate_report

runner = CliRunner()


@pytest.mark.parametrize("name", list(PAPER_TOTALS))
def test_papers_totals(name: str) -> None:
    macs, params = PAPER_TOTALS[name]
    c = get_preset(name).cost()
    assert abs(c.macs / macs - 1) <= 0.02
    # the papers print params to 0.1M: allow that rounding, then 3%
    assert abs(c.params - params) <= 0.05e6 + 0.03 * params


# torchvision's reference implementations, sum(p.numel()) (exact: same rounding rules)
TORCHVISION_PARAMS = {"mobilenet_v2": 3_504_872, "mobilenet_v3_large": 5_483_032,
                      "mobilenet_v3_small": 2_542_856, "efficientnet_b0": 5_288_548}


@pytest.mark.parametrize("name", list(TORCHVISION_PARAMS))
def test_reference_params_exact(name: str) -> None:
    assert get_preset(name).cost().params == TORCHVISION_PARAMS[name]


def test_v1_full_conv_matches_paper() -> None:
    # MobileNetV1 paper, Table 4: Conv MobileNet 4866M mult-adds, 29.3M params
    c = full_conv(get_preset("mobilenet_v1")).cost()
    assert abs(c.macs / 4_866e6 - 1) < 0.005 and abs(c.params / 29.3e6 - 1) < 0.005


@pytest.mark.parametrize("name,width,res", [(n, 1.0, 224) for n in PRESETS] + [
    ("mobilenet_v1", 0.75, 192), ("mobilenet_v2", 0.5, 160), ("mobilenet_v3_small", 0.75, 128)])
def test_built_network_matches_engine(name: str, width: float, res: int) -> None:
    p = get_preset(name, width, res, classes=10)
    c = p.cost()
    params, macs, out = torch_counts(build_preset(p), p.input_shape)
    assert (c.params, c.macs, c.output_shape) == (params, macs, out)


def test_width_rules() -> None:
    v1 = get_preset("mobilenet_v1", 0.75)
    assert v1.layers[0].spec.out_channels == 24  # int(32 * 0.75)
    v2 = get_preset("mobilenet_v2", 0.35)
    assert v2.layers[0].spec.out_channels == 16  # make_divisible(32 * 0.35) = 16


@pytest.mark.parametrize("kwargs,field", [({"name": "mobilenet_v4"}, "model"),
                                          ({"name": "mobilenet_v1", "width": 0}, "width"),
                                          ({"name": "mobilenet_v1", "resolution": 31},
                                           "resolution"),
                                          ({"name": "mobilenet_v1", "classes": 0}, "classes")])
def test_bad_preset(kwargs: dict, field: str) -> None:
    with pytest.raises(FieldError) as e:
        get_preset(**kwargs)
    assert e.value.field == field


def test_cli_preset_table_and_json() -> None:
    r = runner.invoke(app, ["compare", "--model", "mobilenet_v1", "--width", "0.75",
                            "--resolution", "192"])
    assert r.exit_code == 0, r.stderr
    assert "stage4" in r.stdout and "total" in r.stdout
    r = runner.invoke(app, ["compare", "--model", "mobilenet_v1", "--vs", "full-conv",
                            "--per-layer", "--json"])
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    validate_report(data)
    (case,) = data["cases"]
    assert case["totals"]["macs"] == get_preset("mobilenet_v1").cost().macs
    assert sum(s["macs"] for s in case["stages"]) == case["totals"]["macs"]
    assert sum(la["params"] for la in case["layers"]) == case["totals"]["params"]
    assert case["full_conv"]["totals"]["macs"] > 8 * case["totals"]["macs"]


@pytest.mark.parametrize("args,needle", [
    (["--model", "resnet50"], "mobilenet_v2"),
    (["--model", "mobilenet_v1", "--width", "0"], "--width"),
    (["--model", "mobilenet_v1", "--resolution", "16"], "--resolution"),
    (["--model", "mobilenet_v1", "--classes", "0"], "--classes"),
    (["--model", "mobilenet_v1", "--in", "32"], "--in"),
    (["--in", "32", "--hw", "8", "--per-layer"], "--per-layer"),
    (["--in", "32", "--hw", "8", "--width", "0.5"], "--width"),
])
def test_cli_bad_preset_exit_2(args: list[str], needle: str) -> None:
    r = runner.invoke(app, ["compare", *args])
    assert r.exit_code == 2 and needle in r.stderr and "Traceback" not in r.output


def test_cli_preset_measure() -> None:
    r = runner.invoke(app, ["compare", "--model", "mobilenet_v3_small", "--resolution", "64",
                            "--measure", "--min-time", "0.01", "--json"])
    assert r.exit_code == 0, r.stderr
    case = json.loads(r.stdout)["cases"][0]
    assert case["measured"]["median_ms"] > 0
    shares = [s["measured"]["share_time"] for s in case["stages"]]
    assert all(0 <= x <= 1 for x in shares)
    assert sum(shares) == pytest.approx(1.0, abs=0.01)
