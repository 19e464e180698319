"""int8 by ONNX Runtime's static quantization (issue 28): outputs against the fp32 module
within a stated tolerance, the node types ORT ran (its profile, its optimized model), the
per-tensor loss on depthwise filters of unequal ranges and what equalisation does about
it, ``compare --dtype int8``, ``convert --quantize int8`` and its gates, and the bad
inputs refused before any work."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from dsconv_cli import apply_plan
from dsconv_cli.cli import app

pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from dsconv_cli.torch_backend.export import export_onnx  # noqa: E402
from dsconv_cli.torch_backend.quantize import (  # noqa: E402
    equalise,
    quantize,
    ran_ops,
    sensitivity,
)

runner = CliRunner()
#: int8 against fp32 on these small layers: relative output error (||int8 - fp32|| /
#: ||fp32||) at most 5% per channel (8-bit rounding of weights and activations is about
#: 1%; the seed layer measured 0.016 and 0.021)
TOLERANCE = 0.05
FAST = ["--min-time", "0.01", "--warmup", "1", "--threads", "1"]


def run(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def ort_out(data: bytes, x: torch.Tensor) -> torch.Tensor:
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def ds_pair(c: int = 32, spread: float = 0.0) -> nn.Sequential:
    """A depthwise + pointwise pair; ``spread``: the depthwise filters' scales span
    10**-spread .. 1 across channels (trained depthwise filters do; random ones do not),
    the pointwise compensating so the function's scale stays."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False),
                      nn.Conv2d(c, c, 1, bias=False)).eval()
    if spread:
        s = torch.logspace(-spread, 0, c)
        with torch.no_grad():
            m[0].weight.mul_(s.view(-1, 1, 1, 1))
            m[1].weight.div_(s.view(1, -1, 1, 1))
    return m


@pytest.mark.parametrize("module", [nn.Conv2d(32, 32, 3, padding=1, bias=False),
                                    ds_pair()], ids=["standard", "separable"])
def test_int8_output_within_tolerance_of_fp32(module: nn.Module) -> None:
    module.eval()
    cal = torch.randn(64, 32, 14, 14, generator=torch.Generator().manual_seed(1))
    x = torch.randn(1, 32, 14, 14, generator=torch.Generator().manual_seed(2))
    data, _ = export_onnx(module, x)
    q = quantize(data, cal, "per-channel")
    with torch.no_grad():
        want = module(x)
    got = ort_out(q.data, x)
    assert got.shape == want.shape
    err = rel(got, want)
    assert 0 < err <= TOLERANCE, err  # int8 changes the output, a little
    assert q.info["scheme"] == "per-channel" and q.info["format"] == "QDQ"


def test_node_types_from_the_profile_and_the_optimized_model(tmp_path: Path) -> None:
    m = ds_pair()
    x = torch.randn(1, 32, 14, 14)
    data, _ = export_onnx(m, x)
    q = quantize(data, torch.randn(16, 32, 14, 14), "per-channel")
    # the quantized graph as written: QDQ around the fp32 convs
    written = {n.op_type for n in onnx.load_from_string(q.data).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= written
    # what ORT made of it (its optimised model file): the QDQ pairs fused into int8 convs
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(q.data, so, providers=["CPUExecutionProvider"])
    optimized = [n.op_type for n in onnx.load(tmp_path / "opt.onnx").graph.node]
    assert optimized.count("QLinearConv") == 2 and "Conv" not in optimized
    # and what it ran (its profiling JSON)
    ran = {o["op"]: o for o in ran_ops(q.data, x.numpy(), threads=1)}
    assert ran["QLinearConv"]["calls"] == 2
    assert {"QuantizeLinear", "DequantizeLinear"} <= set(ran)
    assert abs(sum(o["share"] for o in ran.values()) - 1) < 0.01
    fp32_ran = {o["op"] for o in ran_ops(data, x.numpy(), threads=1)}
    assert not fp32_ran & {"QLinearConv", "QuantizeLinear"}


def test_per_tensor_loses_on_outlier_depthwise_filters() -> None:
    """Sheng et al.'s effect: a few depthwise filters with large weights (folded BatchNorm
    makes them) set the one range of a per-tensor scheme, and the others round to
    almost nothing; per-channel ranges keep them. ReLU6 bounds the activations alike."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False), nn.ReLU6(),
                      nn.Conv2d(32, 32, 1, bias=False)).eval()
    with torch.no_grad():
        m[0].weight[:2] *= 100
    x = torch.randn(1, 32, 14, 14, generator=torch.Generator().manual_seed(2))
    cal = torch.randn(64, 32, 14, 14, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = m(x)
    data = export_onnx(m, x)[0]
    err = {s: rel(ort_out(quantize(data, cal, s).data, x), want)
           for s in ("per-tensor", "per-channel")}
    assert err["per-channel"] <= TOLERANCE
    assert err["per-tensor"] > 2 * err["per-channel"], err


def test_equalisation_recovers_unequal_intermediate_ranges() -> None:
    """Depthwise outputs whose ranges span 1000x (the pointwise compensating) lose the
    small channels in the per-tensor activation range between the two convs, whatever
    the weights' scheme; equalising the pair (the same fp32 function) makes the ranges
    alike and int8 keeps them."""
    m = ds_pair(spread=3.0)
    x = torch.randn(1, 32, 14, 14, generator=torch.Generator().manual_seed(2))
    cal = torch.randn(64, 32, 14, 14, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = m(x)
    eq = ds_pair(spread=3.0)
    assert equalise(eq) == 1
    with torch.no_grad():
        assert rel(eq(x), want) < 1e-5  # an exact rewrite in fp32
    for scheme in ("per-tensor", "per-channel"):
        before = rel(ort_out(quantize(export_onnx(m, x)[0], cal, scheme).data, x), want)
        after = rel(ort_out(quantize(export_onnx(eq, x)[0], cal, scheme).data, x), want)
        assert after <= TOLERANCE < before, (scheme, before, after)


def test_keep_fp32_leaves_the_most_sensitive_node_unquantized() -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                      nn.Conv2d(16, 16, 3, padding=1)).eval()
    with torch.no_grad():  # one outlier weight: its conv's int8 ranges are coarse
        m[2].weight[0, 0, 0, 0] = 40.0
    x = torch.randn(1, 8, 12, 12)
    data, _ = export_onnx(m, x)
    cal = torch.randn(32, 8, 12, 12)
    sens = sensitivity(data, cal, "per-tensor", n=8)
    assert len(sens) == 2 and sens[0][1] >= sens[1][1] > 0
    names = [n.name for n in onnx.load_from_string(data).graph.node if n.op_type == "Conv"]
    assert sens[0][0] == names[1]  # the conv with the outlier
    q = quantize(data, cal, "per-tensor", keep_fp32=[sens[0][0]])
    ran = {o["op"]: o["calls"] for o in ran_ops(q.data, x.numpy(), threads=1)}
    assert ran.get("QLinearConv") == 1 and ran.get("Conv") == 1


def test_compare_measure_int8_layer() -> None:
    r = run("compare", "--in", "16", "--hw", "8", "--measure", "--runtime", "onnxruntime",
            "--dtype", "int8", "--json", *FAST)
    assert r.exit_code == 0, r.output
    env = json.loads(r.stdout)
    assert env["environment"]["dtype"] == "int8"
    case = env["cases"][0]
    sides = [case["standard"], case["candidate"], *case["candidate"]["parts"].values()]
    for side in sides:
        q = side["int8"]
        assert q["scheme"] == "per-channel" and 0 < q["rel_error"] <= TOLERANCE
        assert "QLinearConv" in {o["op"] for o in q["ops"]}
        lo, hi = q["speedup"]["ci95"]
        assert lo <= q["speedup"]["estimate"] <= hi
        assert q["fp32_ms"] > 0 and q["int8_ms"] > 0
        assert (q.get("why") is None) == (q["speedup"]["verdict"] == "faster")
        assert side["measured"]["dtype"] == "int8" and side["measured"]["runtime"] == (
            "onnxruntime")
    text = run("compare", "--in", "16", "--hw", "8", "--measure", "--runtime",
               "onnxruntime", "--dtype", "int8", *FAST)
    assert text.exit_code == 0 and "int8 standard (per-channel): fp32" in text.stdout


def test_compare_model_int8_needs_and_uses_calibration_data(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(16, 4))
    torch.save(net, tmp_path / "m.pt")
    base = ["compare", "--model", tmp_path / "m.pt", "--trust-pickle", "--input-shape",
            "1,3,8,8", "--measure", "--runtime", "onnxruntime", "--dtype", "int8", *FAST]
    r = run(*base)
    assert r.exit_code == 2 and "--calibration-data" in r.stderr
    torch.save(torch.randn(32, 3, 8, 8), tmp_path / "cal.pt")
    r = run(*base, "--calibration-data", tmp_path / "cal.pt", "--json")
    assert r.exit_code == 0, r.output
    q = json.loads(r.stdout)["cases"][0]["int8"]
    assert 0 < q["rel_error"] <= TOLERANCE
    assert "QLinearConv" in {o["op"] for o in q["ops"]}


@pytest.mark.parametrize("args,needle", [
    (["--dtype", "int8"], "--runtime onnxruntime"),
    (["--dtype", "int8", "--runtime", "onnxruntime,eager"], "--runtime onnxruntime"),
    (["--quantize-scheme", "per-tensor", "--runtime", "onnxruntime"], "--dtype int8"),
    (["--dtype", "int8", "--runtime", "onnxruntime", "--calibration-data", "x.pt"],
     "--calibration-data"),
])
def test_compare_int8_bad_options_exit_2(args: list[str], needle: str) -> None:
    r = run("compare", "--in", "8", "--hw", "8", "--measure", *args)
    assert r.exit_code == 2 and needle in r.stderr and "Traceback" not in r.output
    assert len(r.stderr.strip().splitlines()) == 1


def test_int8_without_onnxruntime_exit_2(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    r = run("compare", "--in", "8", "--hw", "8", "--measure", "--runtime", "onnxruntime",
            "--dtype", "int8")
    assert r.exit_code == 2 and "dsconv[onnx]" in r.stderr
    r = run("convert", tmp_path / "m.pt", "-o", tmp_path / "o.pt", "--export",
            tmp_path / "o.onnx", "--quantize", "int8", "--calibration-data",
            tmp_path / "cal.pt")
    assert r.exit_code == 2 and "dsconv[onnx]" in r.stderr


@pytest.mark.parametrize("extra,needle", [
    (["--export", "o.onnx"], "--calibration-data"),
    (["--export", "o.pt2", "--calibration-data", "cal.pt"], ".pt2"),
    (["--calibration-data", "cal.pt"], "--export"),
    (["--export", "o.onnx", "--calibration-data", "cal.pt", "--keep-fp32", "-1"],
     "--keep-fp32"),
])
def test_convert_quantize_bad_input_exit_2_before_any_work(tmp_path: Path, extra: list[str],
                                                           needle: str) -> None:
    # the model does not even exist: the options are refused before anything is loaded
    r = runner.invoke(app, ["convert", str(tmp_path / "missing.pt"), "-o",
                            str(tmp_path / "o.pt"), "--quantize", "int8", *extra],
                      catch_exceptions=False)
    assert r.exit_code == 2 and needle in r.stderr, r.output
    assert "missing.pt" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.a = nn.Conv2d(32, 32, 3, padding=1)
        self.head = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.a(torch.relu(self.stem(x))))
        return self.head(x.mean((2, 3)))


def saved(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    (tmp_path / "net.py").write_text(
        "import torch\nfrom torch import nn\n\n\n" + _net_source())
    torch.save(Net().state_dict(), tmp_path / "sd.pt")
    g = torch.Generator().manual_seed(3)
    torch.save(torch.randn(64, 3, 12, 12, generator=g), tmp_path / "cal.pt")
    np.save(tmp_path / "eval.npy", torch.randn(48, 3, 12, 12, generator=g).numpy())
    return tmp_path / "sd.pt"


def _net_source() -> str:
    import inspect

    return inspect.getsource(Net)


def test_convert_quantize_int8_writes_a_checked_dynamic_int8_onnx(tmp_path: Path) -> None:
    sd = saved(tmp_path)
    out, onnx_path = tmp_path / "o.pt", tmp_path / "o.onnx"
    r = run("convert", sd, "--arch", f"{tmp_path}/net.py:Net", "-o", out, "--export",
            onnx_path, "--quantize", "int8", "--calibration-data", tmp_path / "cal.pt",
            "--eval-data", tmp_path / "eval.npy", "--json")
    assert r.exit_code == 0, r.output
    case = json.loads(r.stdout)["cases"][0]
    ex, q = case["export"], case["int8"]
    assert ex["dtype"] == "int8" and ex["dynamic_dims"] == {"batch": 0}
    assert ex["bytes"] == onnx_path.stat().st_size == q["bytes"]["converted_int8"]
    assert q["bytes"]["converted_int8"] < q["bytes"]["converted_fp32"] < (
        q["bytes"]["original_fp32"])
    assert {"QuantizeLinear", "DequantizeLinear"} <= {
        n.op_type for n in onnx.load(onnx_path).graph.node}
    # the written int8 model, at a batch it was not exported at, against the converted
    # fp32 model rebuilt from the state_dict + plan
    model = apply_plan(Net(), json.loads(Path(f"{out}.plan.json").read_text()))
    model.load_state_dict(torch.load(out, weights_only=True))
    x = torch.from_numpy(np.load(tmp_path / "eval.npy")[:5])
    with torch.no_grad():
        want = model.eval()(x)
    assert rel(ort_out(onnx_path.read_bytes(), x), want) <= TOLERANCE
    # the fidelity figures: of the int8 model against the original, beside the fp32's
    assert q["fidelity"]["on"] == "eval" and q["fidelity"]["n"] == 48
    assert q["fidelity_fp32"] == case["fidelity"]
    for k in ("original_fp32", "converted_fp32", "converted_int8"):
        assert q["latency_ms"][k]["median_ms"] > 0
    assert set(q["speedups"]) == {"converted_fp32_vs_original_fp32",
                                  "converted_int8_vs_original_fp32",
                                  "converted_int8_vs_converted_fp32"}
    assert "QLinearConv" in {o["op"] for o in q["ops"]}


def test_the_gates_refuse_an_int8_artifact_the_fp32_one_passes(tmp_path: Path) -> None:
    """At full rank the conversion is exact (fp32 error ~1e-7): an error limit between it
    and int8's rounding passes fp32 and refuses int8: exit 1, nothing written."""
    sd = saved(tmp_path)
    base = ["convert", sd, "--arch", f"{tmp_path}/net.py:Net", "--depth-multiplier", "9",
            "--allow-larger", "--calibration-data", tmp_path / "cal.pt", "--eval-data",
            tmp_path / "eval.npy"]
    r = run(*base, "--dry-run", "--max-output-error", "1e-3", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["cases"][0]["fidelity"]["rel_output_error"] < 1e-3
    out = tmp_path / "out"
    out.mkdir()
    r = run(*base, "-o", out / "o.pt", "--export", out / "o.onnx", "--quantize", "int8",
            "--max-output-error", "1e-3", "--json")
    assert r.exit_code == 1, r.output
    case = json.loads(r.stdout)["cases"][0]
    assert "int8" in case["refusal"] and case["int8"]["fidelity"]["rel_output_error"] > 1e-3
    assert list(out.iterdir()) == []


def test_equalise_and_keep_fp32_are_reported(tmp_path: Path) -> None:
    sd = saved(tmp_path)
    r = run("convert", sd, "--arch", f"{tmp_path}/net.py:Net", "--dry-run", "--export",
            tmp_path / "o.onnx", "--quantize", "int8", "--quantize-scheme", "per-tensor",
            "--equalise", "--keep-fp32", "1", "--calibration-data", tmp_path / "cal.pt",
            "--json")
    assert r.exit_code == 0, r.output
    q = json.loads(r.stdout)["cases"][0]["int8"]
    assert q["scheme"] == "per-tensor" and q["equalised_pairs"] == 1
    assert len(q["fp32_nodes"]) == 1 and q["fp32_nodes"][0]["rel_error_alone"] > 0
    assert q["fidelity"]["on"] == "calibration"
    assert not (tmp_path / "o.onnx").exists()


def test_every_conv_of_a_fresh_mobilenet_v2_block_runs_int8(tmp_path: Path) -> None:
    """The exporter shares a fresh block's equal (zero) folded biases through Identity
    nodes; left so, the quantizer keeps that conv fp32 (a dequantized Conv in ORT)."""

    import dsconv_cli.cli.compare as cc
    from dsconv_cli.torch_backend.build import build

    vals: dict[str, Any] = {f: None for f in cc.FIELDS}
    vals.update({"in": "32", "hw": "8", "expansion": "6", "kind": "inverted-residual",
                 "activation": None})
    block = build(cc.build_cases(vals, "fp32", 1)[0].candidate).eval()
    x = torch.randn(1, 32, 8, 8)
    data, _ = export_onnx(block, x)
    q = quantize(data, torch.randn(16, 32, 8, 8), "per-channel")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(q.data, so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(tmp_path / "opt.onnx").graph.node]
    assert ops.count("QLinearConv") == 3 and "Conv" not in ops, ops
    with torch.no_grad():
        assert rel(ort_out(q.data, x), block(x)) <= TOLERANCE
