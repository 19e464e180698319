"""The Python API (``dsconv_cli.compare_layer/analyse/convert/profile``): the CLI's results
and messages, from the same services, checked against the CLI itself, torch's own counter
and real forward passes."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn
from typer.testing import CliRunner

import dsconv_cli
from dsconv_cli import errors
from dsconv_cli.cli import app
from dsconv_cli.render.show import table_text
from dsconv_cli.results import ComparedCase

from .models import MobileNetLike, small_resnet
from .utils import torch_counts, validate_report
from .zoo import TwoInputs, mobilenet_v3_like

ROOT = Path(__file__).parents[1]
runner = CliRunner()


def cli(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def cli_json(*args: Any) -> dict[str, Any]:
    r = cli(*args, "--json")
    assert r.exit_code == 0, r.stderr
    data: dict[str, Any] = json.loads(r.stdout)
    return data


def cli_error(*args: Any) -> str:
    """The CLI's one ``Error:`` line for ``args`` (exit 2)."""
    r = cli(*args)
    assert r.exit_code == 2, r.stdout
    line: str = r.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: ")
    return line.removeprefix("Error: ").split(" (hint: ")[0]


def snapshot(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def same_state(m: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    now = m.state_dict()
    return list(now) == list(before) and all(
        torch.equal(now[k], before[k]) and not now[k].is_meta for k in before)


# --------------------------------------------------------------------------- the package

def test_import_and_compare_layer_never_import_torch() -> None:
    code = ("import sys, dsconv_cli\n"
            "assert 'torch' not in sys.modules and 'dsconv_cli.api' not in sys.modules\n"
            "r = dsconv_cli.compare_layer()\n"
            "print(r.standard.params, r.candidate.params, r.standard.macs, r.candidate.macs)\n"
            "str(r); r._repr_markdown_(); r.to_dict()\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    first, mods = p.stdout.splitlines()
    # the seed case by hand: 256*256*9 params; DS: 256*9 + 256*256; MACs x 14*14
    assert first.split() == [str(256 * 256 * 9), str(256 * 9 + 256 * 256),
                             str(256 * 256 * 9 * 196), str((256 * 9 + 256 * 256) * 196)]
    assert mods == "[]"


def test_public_names_and_one_error_hierarchy() -> None:
    assert set(dsconv_cli.__all__) <= set(dir(dsconv_cli))
    for name in ("InputError", "FieldError", "ConfigError", "UserCodeError", "BackendError",
                 "BudgetError"):
        cls = getattr(dsconv_cli, name)
        assert cls is getattr(errors, name) and issubclass(cls, dsconv_cli.DsconvError)
    assert dsconv_cli.InputError.exit_code == 2 and dsconv_cli.BudgetError.exit_code == 1
    assert dsconv_cli.LayerComparison is ComparedCase  # no second schema
    with pytest.raises(AttributeError):
        dsconv_cli.no_such_name  # noqa: B018


# --------------------------------------------------------------------------- compare_layer

def test_compare_layer_is_the_cli_case_and_the_hand_formula() -> None:
    r = dsconv_cli.compare_layer(in_channels=64, out_channels=128, kernel=(5, 3), hw=28,
                                 stride=2)
    env = cli_json("compare", "--in", 64, "--out", 128, "-k", "5x3", "--hw", 28,
                   "--stride", 2)
    assert r.to_dict() == env["cases"][0]
    ho = (28 + 2 * 2 - (5 - 1) - 1) // 2 + 1  # default padding d*(K-1)//2 = 2, 1
    wo = (28 + 2 * 1 - (3 - 1) - 1) // 2 + 1
    assert r.standard.params == 128 * 64 * 15 and r.standard.macs == 128 * 64 * 15 * ho * wo
    assert r.candidate.macs == (64 * 15 + 64 * 128) * ho * wo
    assert r.reduction.params == round(r.standard.params / r.candidate.params, 4)


@pytest.mark.parametrize("kwargs,args", [
    ({"in_channels": 0}, ["--in", "0", "--hw", "14"]),
    ({"in_channels": 64, "hw": 2, "kernel": 7, "padding": 0},
     ["--in", "64", "--hw", "2", "-k", "7", "--padding", "0"]),
    ({"kind": "eca", "kernel": 3}, ["--kind", "eca", "--in", "256", "--hw", "14", "-k", "3"]),
    ({"groups": 3}, ["--in", "256", "--hw", "14", "--groups", "3"]),
    ({"padding": "valid"}, ["--in", "256", "--hw", "14", "--padding", "valid"]),
    ({"expansion": 0, "kind": "mbconv"},
     ["--kind", "mbconv", "--in", "256", "--hw", "14", "--expansion", "0"]),
])
def test_compare_layer_raises_the_cli_message_naming_the_keyword(
        kwargs: dict[str, Any], args: list[str]) -> None:
    with pytest.raises(dsconv_cli.InputError) as e:
        dsconv_cli.compare_layer(**kwargs)
    assert str(e.value) == as_keywords(cli_error("compare", *args))


def as_keywords(message: str) -> str:
    """A CLI message with its options written as the API's keywords."""
    names = {"in": "in_channels", "out": "out_channels"}
    return re.sub(r"'--([a-z-]+)'",
                  lambda m: f"'{names.get(m.group(1), m.group(1).replace('-', '_'))}'",
                  message)


@pytest.mark.parametrize("kwargs,keyword", [
    ({"in_channels": True}, "in_channels"), ({"in_channels": "x"}, "in_channels"),
    ({"hw": [14, 14, 14]}, "hw"), ({"bias": 1}, "bias"), ({"kind": 3}, "kind"),
    ({"dtype": ["fp32"]}, "dtype"), ({"expansion": "6"}, "expansion"),
    ({"measure": "yes"}, "measure"), ({"in_channels": [16, 32]}, "in_channels"),
])
def test_wrong_types_are_input_errors_naming_the_keyword(kwargs: dict[str, Any],
                                                         keyword: str) -> None:
    with pytest.raises(dsconv_cli.InputError, match=f"'{keyword}'"):
        dsconv_cli.compare_layer(**kwargs)


@pytest.mark.slow
def test_compare_layer_measured_matches_the_cli_shape_of_result() -> None:
    r = dsconv_cli.compare_layer(in_channels=16, hw=8, measure=True, min_time=0.01,
                                 warmup=1)
    assert r.speedup is not None and r.speedup.measured is not None
    assert r.standard.measured is not None and r.standard.measured.median_ms > 0
    validate_report(r.report())
    with pytest.raises(dsconv_cli.InputError, match="^rounds must be 10 to 10,000, got 5$"):
        dsconv_cli.compare_layer(measure=True, rounds=5)
    with pytest.raises(dsconv_cli.InputError, match="'runtime'"):
        dsconv_cli.compare_layer(measure=True, runtime="tensorrt")


# --------------------------------------------------------------------------- rendering

def test_results_render_as_the_cli_does() -> None:
    r = dsconv_cli.compare_layer()
    seed = ["compare", "--in", "256", "--out", "256", "-k", "3", "--hw", "14"]
    table = cli(*seed)  # conftest fixes DSCONV_WIDTH=160 for both
    assert str(r) == table.stdout.rstrip("\n")
    md = cli(*seed, "--format", "markdown")
    assert r._repr_markdown_() == md.stdout
    html = r._repr_html_()
    assert "<table>" in html and "115,605,504" in html and "|" not in html.split("<table>")[1]
    buf = io.StringIO()
    Console(file=buf, width=70, no_color=True).print(r)  # __rich__, at Rich's width
    assert buf.getvalue().rstrip("\n") == table_text(r.report(), "compare_view", 70)
    assert "hidden at 70 columns" in buf.getvalue()
    assert max(len(line) for line in buf.getvalue().splitlines()) <= 70


def test_print_uses_the_terminal_width(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("DSCONV_WIDTH")
    monkeypatch.delenv("COLUMNS", raising=False)
    print(dsconv_cli.compare_layer())  # captured: not a terminal -> the design width, 80
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80 and "8.69x" in out
    monkeypatch.setenv("COLUMNS", "120")
    assert "hidden at" not in str(dsconv_cli.compare_layer())


# --------------------------------------------------------------------------- analyse

def test_analyse_a_live_module_is_exact_and_leaves_it_untouched() -> None:
    torch.manual_seed(0)
    net = mobilenet_v3_like()
    net.train()
    before = snapshot(net)
    weights = [id(p) for p in net.parameters()]
    a = dsconv_cli.analyse(net, (2, 3, 32, 32))
    params, macs, shape = torch_counts(mobilenet_v3_like(), (2, 3, 32, 32))
    assert (a.macs, a.params, a.totals["output_shape"]) == (macs, params, list(shape))
    assert a.flops == 2 * macs
    assert a.model["source"] == "module" and a.name == "Sequential"
    assert net.training and same_state(net, before)
    assert [id(p) for p in net.parameters()] == weights


def test_analyse_matches_the_cli_case_for_an_arch_and_a_file(tmp_path: Path) -> None:
    a = dsconv_cli.analyse(None, (1, 3, 64, 64), arch="tests.models:small_resnet")
    env = cli_json("compare", "--arch", "tests.models:small_resnet", "--input-shape",
                   "1,3,64,64")
    assert a.to_dict() == env["cases"][0]
    torch.manual_seed(0)
    net = small_resnet()
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    f = dsconv_cli.analyse(tmp_path / "sd.pt", "1,3,64,64", arch="tests.models:small_resnet",
                           depth=1, depth_multiplier=2)
    env = cli_json("compare", "--model", tmp_path / "sd.pt", "--arch",
                   "tests.models:small_resnet", "--input-shape", "1,3,64,64", "--depth", 1,
                   "--depth-multiplier", 2)
    assert f.to_dict() == env["cases"][0]
    live = dsconv_cli.analyse(net, (1, 3, 64, 64), depth=1, depth_multiplier=2)
    assert live.layers == f.layers and live.ds_opportunity == f.ds_opportunity


def test_the_pytest_pattern() -> None:
    # docs/API.md "In a test suite": a MAC budget asserted on a live module
    assert dsconv_cli.analyse(small_resnet(), (1, 3, 224, 224)).macs <= 600e6
    a = dsconv_cli.analyse(MobileNetLike(), (1, 3, 224, 224))
    assert not a.uncounted
    assert not a.macs <= a.macs - 1  # a budget below the count fails the assertion


@pytest.mark.parametrize("call,match", [
    (lambda: dsconv_cli.analyse(small_resnet(), (1, 3, 0, 4)),
     "^input_shape '1,3,0,4': expected positive sizes"),
    (lambda: dsconv_cli.analyse(small_resnet(), "1,3,x"), "^input_shape '1,3,x'"),
    (lambda: dsconv_cli.analyse(small_resnet(), (1, 3, 8, 8), depth=-1),
     r"^Invalid value for 'depth': must be >= 0, got -1$"),
    (lambda: dsconv_cli.analyse(small_resnet(), (1, 3, 8, 8), depth_multiplier=0),
     "^Invalid value for 'depth_multiplier': one integer >= 1"),
    (lambda: dsconv_cli.analyse(small_resnet(), (1, 3, 8, 8), min_channels=0),
     "^Invalid value for 'min_channels'"),
    (lambda: dsconv_cli.analyse(42), "'model': expected an nn.Module or a model file"),
    (lambda: dsconv_cli.analyse("no/such.pt"), "^model no/such.pt: no such file"),
    (lambda: dsconv_cli.analyse(small_resnet(), arch="tests.models:small_resnet"),
     "'arch'"),
    (lambda: dsconv_cli.analyse(TwoInputs()), "forward takes 2 inputs"),
    (lambda: dsconv_cli.analyse(small_resnet(), (1, 3, 8, 8), vs_arch="x:y"),
     "^Invalid value for 'vs_arch': needs vs FILE"),
    (lambda: dsconv_cli.analyse(small_resnet(), (1, 3, 8, 8), arch_kwargs=[1]),
     "'arch_kwargs': expected a dict"),
    (lambda: dsconv_cli.analyse(small_resnet(), (1, 3, 8, 8), measure=True,
                                memory_format="nhwc"),
     "^Invalid value for 'memory_format': 'nhwc' is not one of"),
    (lambda: dsconv_cli.analyse(small_resnet(), (1, 3, 8, 8), vs="resnet999"),
     "^Invalid value for 'vs'"),
])
def test_analyse_bad_input_is_an_input_error(call: Any, match: str) -> None:
    with pytest.raises(dsconv_cli.InputError, match=match):
        call()


def test_analyse_messages_are_the_clis(tmp_path: Path) -> None:
    want = cli_error("compare", "--arch", "tests.models:small_resnet", "--input-shape",
                     "1,3,64,64", "--depth", "-1")
    with pytest.raises(dsconv_cli.InputError) as e:
        dsconv_cli.analyse(None, (1, 3, 64, 64), arch="tests.models:small_resnet", depth=-1)
    assert str(e.value) == want.replace("'--depth'", "'depth'")


# --------------------------------------------------------------------------- convert

def forward(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    m.eval()
    with torch.no_grad():
        y: torch.Tensor = m(x)
    return y


def test_convert_a_live_module(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = small_resnet()
    before = snapshot(net)
    c = dsconv_cli.convert(net, (1, 3, 32, 32), depth_multiplier=2)
    assert same_state(net, before) and isinstance(net.stages[0][0].conv2, nn.Conv2d)
    assert c.model is not net and isinstance(c.model.stages[0][0].conv2, nn.Sequential)
    assert sum(p.numel() for p in c.model.parameters()) == c.totals.model_params_after
    assert [la.name for la in c.layers if la.status == "converted"] == [
        e["name"] for e in c.plan["layers"]]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    written = c.save(tmp_path / "out.pt")
    assert written == [tmp_path / "out.pt", tmp_path / "out.pt.plan.json"]
    rebuilt = dsconv_cli.apply_plan(small_resnet(), tmp_path / "out.pt.plan.json")
    rebuilt.load_state_dict(torch.load(tmp_path / "out.pt", weights_only=True))
    assert torch.equal(forward(rebuilt, x), forward(c.model, x))
    with pytest.raises(dsconv_cli.InputError, match="exists"):
        c.save(tmp_path / "out.pt")
    c.save(tmp_path / "out.pt", force=True)


@pytest.mark.slow
def test_convert_export_is_checked_and_written(tmp_path: Path) -> None:
    c = dsconv_cli.convert(small_resnet(), (1, 3, 32, 32))
    info = c.export(tmp_path / "m.pt2")
    assert info.checked and (tmp_path / "m.pt2").stat().st_size == info.bytes
    prog = torch.export.load(tmp_path / "m.pt2")
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(prog.module()(x), forward(c.model, x), atol=1e-5)
    with pytest.raises(dsconv_cli.InputError, match="^export .*m.zip: the suffix picks the format"):
        c.export(tmp_path / "m.zip")


def test_convert_matches_the_cli_case(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.save(small_resnet().state_dict(), tmp_path / "sd.pt")
    c = dsconv_cli.convert(tmp_path / "sd.pt", (1, 3, 32, 32), arch="tests.models:small_resnet",
                           energy=0.5)
    env = cli_json("convert", tmp_path / "sd.pt", "--arch", "tests.models:small_resnet",
                   "--input-shape", "1,3,32,32", "--energy", "0.5", "--dry-run")
    got, want = c.to_dict(), env["cases"][0]
    got.pop("timing_s"), want.pop("timing_s")
    assert got == want


def test_convert_with_data_given_as_tensors() -> None:
    torch.manual_seed(0)
    net = small_resnet()
    cal = torch.randn(64, 3, 32, 32)
    held = np.random.default_rng(0).standard_normal((32, 3, 32, 32)).astype(np.float32)
    c = dsconv_cli.convert(net, calibration_data=cal, eval_data=held)
    assert c.fidelity is not None and c.fidelity.on == "eval" and c.fidelity.n == 32
    # the figure is the real forward passes' agreement on the held-out inputs
    xs = torch.from_numpy(held)
    agree = float((forward(net, xs).argmax(1) == forward(c.model, xs).argmax(1)).float().mean())
    assert c.fidelity.agreement == pytest.approx(agree)
    with pytest.raises(dsconv_cli.InputError, match="^calibration_data: holds NaN"):
        dsconv_cli.convert(net, calibration_data=torch.full((4, 3, 8, 8), float("nan")))
    with pytest.raises(dsconv_cli.InputError, match="'calibration_data': expected a tensor"):
        dsconv_cli.convert(net, calibration_data=[[1.0]])


def test_a_refused_conversion_raises_budget_error() -> None:
    net = small_resnet()
    with pytest.raises(dsconv_cli.BudgetError, match="above --max-output-error|max_output"):
        dsconv_cli.convert(net, calibration_data=torch.randn(16, 3, 32, 32),
                           max_output_error=1e-9)


@pytest.mark.parametrize("kwargs,match", [
    ({"target_latency": 1.5}, "^target_latency must be a finite number \\(0, 1\\), got 1.5$"),
    ({"target_latency": float("nan")}, "^target_latency must be a finite number"),
    ({"target_latency": "fast"}, "'target_latency': expected a number"),
    ({"target_latency": 0.5, "target_macs": 0.5},
     "^target_latency picks the multipliers itself: drop target_macs$"),
    ({"target_latency": 0.5, "runtime": "eager,compile"}, "one runtime"),
    ({"target_latency": 0.5, "memory_format": "both"}, "^memory_format: .* one layout"),
    ({"depth_multiplier": 0}, "^depth_multiplier must be >= 1, got 0$"),
    ({"distill_steps": 10}, "^distill_steps trains on data: give calibration_data$"),
    ({"calibration_batch": 0}, "^calibration_batch must be 1 to 65536, got 0$"),
    ({"energy": 0.5, "depth_multiplier": 2}, "energy or depth_multiplier"),
    ({"init": "zeros"}, "'init': 'zeros' is not one of svd, random"),
    ({"seed": -1}, "^seed must be"),
    ({"min_agreement": 0.9}, "^min_agreement needs inputs"),
    ({"runtime": "tensorrt"}, "'runtime': 'tensorrt' is not one of"),
    ({"threads": 1.5}, "'threads': expected an integer"),
])
def test_convert_bad_input(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(dsconv_cli.InputError, match=match):
        dsconv_cli.convert(small_resnet(), (1, 3, 32, 32), **kwargs)


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


FAST = {"min_time": 0.01, "threads": 1}


def test_target_latency_is_wired_to_the_measurement() -> None:
    net = tiny_net()
    before = snapshot(net)
    try:
        c = dsconv_cli.convert(net, (1, 3, 16, 16), target_latency=0.9, **FAST)
    except dsconv_cli.BudgetError as e:  # missed on a loaded machine: nothing to keep
        assert str(e).startswith("target_latency 0.9: ")
        return
    finally:
        assert same_state(net, before)
    lat = c.latency
    assert (lat.target, lat.runtime, lat.threads) == (0.9, "eager", 1)
    assert lat.verdict in ("met", "met within its interval")
    assert [la.name for la in lat.layers] == ["2", "4"]  # the eligible convs
    chosen = {la.name: la.chosen for la in lat.layers if la.chosen}
    assert {n: m[0].out_channels // m[0].in_channels for n, m in c.model.named_children()
            if isinstance(m, nn.Sequential)} == chosen


def test_an_unreachable_target_latency_raises_budget_error() -> None:
    with pytest.raises(dsconv_cli.BudgetError, match="^target_latency 0.02: "):
        dsconv_cli.convert(tiny_net(), (1, 3, 16, 16), target_latency=0.02, **FAST)


def test_convert_messages_are_the_clis(tmp_path: Path) -> None:
    torch.save(small_resnet().state_dict(), tmp_path / "sd.pt")
    want = cli_error("convert", tmp_path / "sd.pt", "--arch", "tests.models:small_resnet",
                     "--dry-run", "--refine-steps", "3")
    with pytest.raises(dsconv_cli.InputError) as e:
        dsconv_cli.convert(tmp_path / "sd.pt", arch="tests.models:small_resnet",
                           refine_steps=3)
    assert str(e.value) == want.replace("--refine-steps", "refine_steps").replace(
        "--calibration-data", "calibration_data")


# --------------------------------------------------------------------------- profile

CONFIG = {"timing": {"min_time": 0.01, "warmup": 1},
          "cases": [{"name": "too-big", "layer": {"in": 64, "hw": 8},
                     "budget": {"max_params": 10}},
                    {"name": "fine", "layer": {"in": 64, "hw": 8},
                     "budget": {"max_params": 100000}}]}


def test_profile_dry_run_is_the_clis_report(tmp_path: Path) -> None:
    import yaml

    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(CONFIG))
    p = dsconv_cli.profile(tmp_path / "cfg.yaml", dry_run=True)
    r = cli("profile", tmp_path / "cfg.yaml", "--dry-run", "--json")
    assert r.exit_code == 1
    assert p.to_dict() == json.loads(r.stdout)
    d = dsconv_cli.profile(CONFIG, dry_run=True)  # a dict: the same cases
    assert [c.to_dict() for c in d.cases] == [c.to_dict() for c in p.cases]
    assert not d.passed and d.exit_status == 1


def test_profile_returns_passed_and_failures(capsys: pytest.CaptureFixture[str]) -> None:
    result = dsconv_cli.profile(CONFIG)  # measures; a failed budget raises nothing
    assert not result.passed
    assert [c.verdict for c in result.cases] == ["fail", "pass"]
    # the separable block's params by hand: 64*3*3 depthwise + 64*64 pointwise
    assert result.failures == [f"too-big: max_params: {64 * 9 + 64 * 64:,} > limit 10"]
    validate_report(result.to_dict())
    assert "FAIL" in str(result) and "1 failed" in str(result)
    fine = dsconv_cli.profile({**CONFIG, "cases": CONFIG["cases"][1:]})
    assert fine.passed, "\n".join(fine.failures)
    assert capsys.readouterr() == ("", "")  # the library prints nothing


@pytest.mark.parametrize("config,error,match", [
    ({"cases": [{"name": "a", "layer": {"in": 8, "hw": 8, "strid": 2}}]},
     dsconv_cli.ConfigError,
     r"^config: cases\[0\]\.layer\.strid: unknown key 'strid'; allowed: kind, in,"),
    ({"cases": []}, dsconv_cli.ConfigError, "cases"),
    ({"version": 2, "cases": []}, dsconv_cli.ConfigError, "needs a newer dsconv"),
    ([1, 2], dsconv_cli.InputError, "'config': expected a path"),
    ("no/such.yaml", dsconv_cli.ConfigError, "^no/such.yaml: no such file"),
])
def test_profile_bad_config(config: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        dsconv_cli.profile(config, dry_run=True)


def test_profile_refuses_what_a_config_cannot_grant(tmp_path: Path) -> None:
    cfg = {"cases": [{"name": "m", "model": {"path": str(tmp_path / "m.pt"),
                                             "input_shape": [1, 3, 32, 32],
                                             "trust_pickle": True}}]}
    torch.save(small_resnet(), tmp_path / "m.pt")
    with pytest.raises(dsconv_cli.ConfigError,
                       match=r"^config: cases\[0\]\.model\.trust_pickle: case 'm' sets"):
        dsconv_cli.profile(cfg, dry_run=True)


# --------------------------------------------------------------------------- the contract

def test_never_prints_exits_or_reads_argv(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["dsconv", "--no-such-flag", "--json"])
    net = small_resnet()
    dsconv_cli.analyse(net, (1, 3, 32, 32))
    dsconv_cli.convert(net, (1, 3, 32, 32), progress=True)  # not a terminal: no bar
    with pytest.raises(dsconv_cli.DsconvError):
        dsconv_cli.convert(net, (1, 3, 32, 32), target_macs=-1)
    assert capsys.readouterr() == ("", "")


def test_user_code_errors_name_the_model() -> None:
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise ValueError("boom")

    with pytest.raises(dsconv_cli.DsconvError, match="boom"):
        dsconv_cli.analyse(Broken(), (1, 3, 8, 8))
    with pytest.raises(dsconv_cli.DsconvError, match="boom"):
        dsconv_cli.convert(Broken(), (1, 3, 8, 8))
