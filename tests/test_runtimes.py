"""Runtimes: each one's output equals eager's on every layer kind and a preset; a runtime
that is not installed is exit 2; a compile failure loses no other runtime; compilation is
never inside the timed region."""

from __future__ import annotations

import builtins
import json
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dsconv_cli.cases import resolve_layer
from dsconv_cli.cli import app
from dsconv_cli.kinds import KINDS
from dsconv_cli.presets import get_preset
from dsconv_cli.torch_backend.build import build, build_preset
from dsconv_cli.torch_backend.runtimes import RUNTIMES, get_runtime

from .utils import validate_report

runner = CliRunner()
FAST = ["--min-time", "0.02", "--warmup", "1"]


def _out(y: Any) -> torch.Tensor:
    if isinstance(y, list):  # ONNX Runtime returns numpy arrays
        y = y[0]
    return torch.from_numpy(np.asarray(y)) if isinstance(y, np.ndarray) else y


def _modules() -> list[tuple[str, torch.nn.Module, tuple[int, ...]]]:
    out = []
    for kind in KINDS:
        case = resolve_layer({"in": 16, "hw": (8, 8), "kind": kind})
        out.append((kind, build(case.candidate), case.input_shape))
    p = get_preset("mobilenet_v3_small", width=0.35, resolution=64, classes=10)
    out.append(("preset", build_preset(p), (1, 3, 64, 64)))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("runtime", [r for r in RUNTIMES if r != "eager"])
def test_every_runtime_computes_what_eager_does(runtime: str) -> None:
    torch.manual_seed(0)
    rt = get_runtime(runtime, torch.device("cpu"), 2)
    for name, module, shape in _modules():
        module = module.eval()
        x = torch.randn(*shape)
        with torch.inference_mode():
            want = module(x)
            got = _out(rt.prepare(module, x).fn())
        torch.testing.assert_close(got.float(), want, rtol=1e-3, atol=1e-4,
                                   msg=f"{runtime} on {name}")


def test_a_runtime_not_installed_is_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    real = builtins.__import__

    def no_ort(name: str, *a: Any, **k: Any) -> Any:
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ort)
    r = runner.invoke(app, ["compare", "--in", "8", "--hw", "4", "--measure", "--runtime",
                            "eager,onnxruntime", *FAST])
    assert r.exit_code == 2 and "dsconv[onnx]" in r.stderr
    r = runner.invoke(app, ["compare", "--in", "8", "--hw", "4", "--measure", "--runtime",
                            "tpu", *FAST])
    assert r.exit_code == 2 and "'tpu' is not one of eager, compile, onnxruntime" in r.stderr


def test_compile_failure_keeps_the_other_runtimes(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*a: Any, **k: Any) -> Any:
        raise RuntimeError("inductor is unhappy")

    monkeypatch.setattr(torch, "compile", broken)
    r = runner.invoke(app, ["compare", "--in", "8", "--hw", "8", "--measure", "--json",
                            "--runtime", "eager,compile,onnxruntime", *FAST])
    assert r.exit_code == 1
    assert r.stderr.count("Error: runtime compile: torch.compile failed") == 1
    data = json.loads(r.stdout)
    validate_report(data)
    case = data["cases"][0]
    assert {m["runtime"] for m in case["standard"]["measured_by_runtime"]} == {
        "eager", "onnxruntime"}
    assert "compile" in data["runtime_errors"]


@pytest.mark.slow
def test_compile_time_is_not_in_the_timed_median() -> None:
    r = runner.invoke(app, ["compare", "--in", "16", "--hw", "8", "--measure", "--json",
                            "--runtime", "compile,onnxruntime", *FAST])
    assert r.exit_code == 0, r.stderr
    case = json.loads(r.stdout)["cases"][0]
    m = case["standard"]["measured_by_runtime"][0]
    assert m["runtime"] == "compile" and m["compile_s"] > 0
    # compiling took longer than any timed block: it could not have been inside one
    assert m["compile_s"] * 1e3 > m["max_ms"] * (m["calls"] / m["runs"])
    onnx = case["standard"]["measured_by_runtime"][1]
    assert onnx["exporter"] in ("torchscript", "dynamo") and onnx["max_abs_diff"] < 1e-3
    assert case["speedup_by_runtime"]["fastest"] > 0
    assert case["standard"]["fastest"]["runtime"] in ("compile", "onnxruntime")
