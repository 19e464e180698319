"""int8 by ONNX Runtime's static quantization: a step after the ONNX export, never a model
of its own. The fp32 graph :func:`.export.export_onnx` made is quantized by
``onnxruntime.quantization.quantize_static`` in the QDQ format (QuantizeLinear /
DequantizeLinear pairs that ORT's graph optimiser fuses into QLinearConv and friends),
weights int8 per output channel by default, activations uint8 (ORT's advice for x86: its
U8S8 kernels), ranges calibrated by min/max on the inputs given. Its output is checked
against the fp32 model like an export (:func:`check_int8`), and it is timed by the
ONNX runtime's int8 variant (:mod:`.runtimes.onnx`), so every command reaches int8 here.

Cross-layer equalisation (Nagel et al. 2019, :func:`equalise`) rescales a depthwise conv's
output channels and the next pointwise conv's input channels so both have the same range
per channel, an exact rewrite of the fp32 model that makes per-tensor ranges fit; it is
applied in torch before the export. Needs the ``onnx`` extra.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .runtimes import RuntimeFailure

__all__ = ["INT8_TOLERANCE", "SCHEMES", "Int8", "OrtModule", "check_int8", "equalise",
           "quantize", "random_calibration", "ran_ops", "rel_error"]

#: --quantize-scheme -> ORT's per_channel flag
SCHEMES: dict[str, bool] = {"per-channel": True, "per-tensor": False}
#: an int8 artifact whose relative output error (||int8 - fp32|| / ||fp32||) on the check
#: input is above this is not the model any more (a broken graph, not rounding): a
#: ``RuntimeFailure``. int8 rounding of a layer is about 1e-2 (measured on the seed layer:
#: 0.016 standard, 0.021 separable, per channel); the gates (--max-output-error) are
#: the user's tighter limits
INT8_TOLERANCE = 0.25
#: random calibration inputs for a layer (compare): batches of the layer's input shape
RANDOM_CALIBRATION = 8


@dataclass(frozen=True)
class Int8:
    """A quantized ONNX model's bytes and how it was made."""

    data: bytes
    info: dict[str, Any]


def _need_ort() -> Any:
    try:
        import onnxruntime
        import onnxruntime.quantization as q
    except ImportError:
        raise InputError("int8 needs ONNX Runtime: pip install 'dsconv[onnx]'") from None
    onnxruntime.set_default_logger_severity(3)  # the quantizer's sessions: errors only
    return onnxruntime, q


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ORT's quantizer logs advice on the root logger and prints: dsconv's stderr stays
    dsconv's."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _input_batch(model: Any) -> int | None:
    """The graph input's batch size, or None when it is dynamic."""
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    return int(dim.dim_value) if dim.HasField("dim_value") else None


def quantize(data: bytes, inputs: torch.Tensor | np.ndarray, scheme: str = "per-channel",
             keep_fp32: Sequence[str] = (), batch: int = 32) -> Int8:
    """``data`` (an fp32 ONNX model of one input) quantized statically, calibrated on
    ``inputs`` (N, ...): QDQ, int8 weights (per channel or per tensor), uint8
    activations. ``keep_fp32``: ONNX node names left in fp32."""
    import onnx

    ort, q = _need_ort()
    if scheme not in SCHEMES:
        raise InputError(f"--quantize-scheme {scheme!r}: choose from {', '.join(SCHEMES)}")
    arr = inputs.detach().cpu().float().numpy() if isinstance(inputs, torch.Tensor) else (
        np.asarray(inputs, dtype=np.float32))
    model = onnx.load_from_string(data)
    _inline_identities(model)
    name = model.graph.input[0].name
    fixed = _input_batch(model)
    step = fixed or batch
    chunks = [np.ascontiguousarray(arr[i:i + step]) for i in range(0, len(arr), step)]
    if fixed:  # a static graph takes batches of exactly its size
        full = [c for c in chunks if len(c) == fixed]
        chunks = full or [np.resize(arr, (fixed, *arr.shape[1:])).astype(np.float32)]

    base: Any = q.CalibrationDataReader

    class Reader(base):
        def __init__(self) -> None:
            self.it = iter(chunks)

        def get_next(self) -> dict[str, np.ndarray] | None:
            c = next(self.it, None)
            return None if c is None else {name: c}

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dsconv-int8-") as tmp, _quiet():
        out = os.path.join(tmp, "int8.onnx")
        try:
            q.quantize_static(
                model, out, Reader(), quant_format=q.QuantFormat.QDQ,
                per_channel=SCHEMES[scheme], activation_type=q.QuantType.QUInt8,
                weight_type=q.QuantType.QInt8, nodes_to_exclude=list(keep_fp32) or None,
                calibrate_method=q.CalibrationMethod.MinMax)
            with open(out, "rb") as f:
                qdata = f.read()
        except Exception as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise RuntimeFailure(f"ONNX Runtime could not quantize the model: {first}") from e
    return Int8(qdata, {"scheme": scheme, "format": "QDQ", "weights": "int8",
                        "activations": "uint8", "calibration_inputs": int(len(arr)),
                        "fp32_nodes": list(keep_fp32),
                        "seconds": round(time.perf_counter() - t0, 3)})


def _inline_identities(model: Any) -> int:
    """Identity nodes of an initializer, replaced by a copy of it. The TorchScript
    exporter shares equal constants through Identity (the zero biases of folded fresh
    BatchNorms); a conv whose bias is not an initializer is left in fp32 by the
    quantizer (measured: the depthwise conv of a MobileNetV2 block ran as a dequantized
    fp32 Conv). Returns how many were inlined."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    done = []
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            arr = numpy_helper.to_array(inits[node.input[0]])
            model.graph.initializer.append(numpy_helper.from_array(arr, node.output[0]))
            done.append(node)
    for node in done:
        model.graph.node.remove(node)
    return len(done)


def random_calibration(shape: Sequence[int], n: int = RANDOM_CALIBRATION,
                       seed: int = 0) -> torch.Tensor:
    """Seeded standard normal inputs: ``n`` batches of ``shape`` stacked along dim 0."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n * shape[0], *shape[1:], generator=g)


def rel_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """||got - want|| / ||want|| (Frobenius, in float64): the fidelity check's measure."""
    g, w = got.detach().double().cpu(), want.detach().double().cpu()
    ref = float(w.norm())
    return float((g - w).norm()) / ref if ref else float((g - w).norm())


def check_int8(got: torch.Tensor, want: torch.Tensor, what: str) -> float:
    """An int8 output against the fp32 model's: same shape, finite, relative error within
    :data:`INT8_TOLERANCE`. Returns the relative error; else a ``RuntimeFailure``."""
    if tuple(got.shape) != tuple(want.shape):
        raise RuntimeFailure(f"{what}'s output has shape {tuple(got.shape)}, the fp32 "
                             f"model's {tuple(want.shape)}")
    err = rel_error(got, want)
    if not math.isfinite(err) or err > INT8_TOLERANCE:
        raise RuntimeFailure(f"{what}'s output differs from the fp32 model's by a relative "
                             f"{err:.3g} (allowed {INT8_TOLERANCE} for int8 rounding)")
    return err


def ran_ops(sess_data: bytes, x: np.ndarray, threads: int | None = None,
            runs: int = 5) -> list[dict[str, Any]]:
    """The node types ONNX Runtime actually ran on ``x``, from its profiling JSON after
    every graph optimisation: ``[{op, calls, ms, share}]`` per forward (calls times the
    median call's time), slowest first."""
    ort, _ = _need_ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or torch.get_num_threads()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_profiling = True
    with tempfile.TemporaryDirectory(prefix="dsconv-ortprof-") as tmp:
        so.profile_file_prefix = os.path.join(tmp, "prof")
        sess = ort.InferenceSession(sess_data, so, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: x}
        sess.run(None, feed)  # the first run allocates; profiled with the rest
        for _ in range(runs):
            sess.run(None, feed)
        with open(sess.end_profiling()) as f:
            events = json.load(f)
    per: dict[str, list[float]] = {}
    for ev in events:
        if ev.get("cat") == "Node" and str(ev.get("name", "")).endswith("_kernel_time"):
            op = ev.get("args", {}).get("op_name", "?")
            per.setdefault(op, []).append(float(ev.get("dur", 0)))
    n = runs + 1
    # per forward: calls x the median call (one preempted call on a loaded machine must
    # not make an op look slow)
    ms = {op: len(v) / n * statistics.median(v) / 1e3 for op, v in per.items()}
    total = sum(ms.values()) or 1.0
    rows = [{"op": op, "calls": len(per[op]) // n, "ms": round(t, 6),
             "share": round(t / total, 4)} for op, t in ms.items()]
    return sorted(rows, key=lambda r: -r["ms"])


class OrtModule(nn.Module):
    """An ONNX Runtime session as a module (float32 in, the first output out), so that
    the fidelity check compares an artifact with the original as it does a module."""

    def __init__(self, data: bytes, threads: int | None = None) -> None:
        super().__init__()
        from .export import onnx_session

        self.sess = onnx_session(data, threads)
        self.name = self.sess.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.sess.run(None, {self.name: x.detach().float().cpu().contiguous().numpy()})
        return torch.from_numpy(out[0])


# ----------------------------------------------------------------- cross-layer equalisation

def _pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.Conv2d]]:
    """(depthwise, pointwise) convs where the pointwise takes the depthwise's output with
    nothing between them: dsconv's converted pairs (``DepthwiseSeparableConv``) and any
    ``nn.Sequential`` holding the two next to each other."""
    out = []
    for m in model.modules():
        kids = list(m.children())
        for a, b in zip(kids, kids[1:], strict=False):
            if (isinstance(a, nn.Conv2d) and isinstance(b, nn.Conv2d)
                    and a.groups == a.in_channels and a.groups > 1
                    and b.kernel_size == (1, 1) and b.groups == 1
                    and b.in_channels == a.out_channels):
                out.append((a, b))
    return out


def equalise(model: nn.Module) -> int:
    """Cross-layer equalisation, in place, of every depthwise conv followed directly by a
    pointwise one: output channel i of the depthwise is divided by s_i and input channel i
    of the pointwise multiplied by it, s_i = sqrt(r1_i / r2_i) (r: the channel's max
    |weight|), so both ranges become sqrt(r1_i * r2_i). With nothing between the two convs
    the fp32 model computes the same function. Returns the pairs equalised."""
    pairs = _pairs(model)
    with torch.no_grad():
        for dw, pw in pairs:
            r1 = dw.weight.abs().flatten(1).amax(1).double()
            r2 = pw.weight.abs().transpose(0, 1).flatten(1).amax(1).double()
            ok = (r1 > 0) & (r2 > 0)
            s = torch.where(ok, (r1 / r2.clamp_min(1e-30)).sqrt(), torch.ones_like(r1))
            dw.weight.div_(s.to(dw.weight.dtype).view(-1, 1, 1, 1))
            if dw.bias is not None:
                dw.bias.div_(s.to(dw.bias.dtype))
            pw.weight.mul_(s.to(pw.weight.dtype).view(1, -1, 1, 1))
    return len(pairs)


# ----------------------------------------------------------------- fp32 fallback

#: node types whose int8 error a sensitivity scan measures (the ones with weights)
WEIGHTED = ("Conv", "Gemm", "MatMul")


def sensitivity(data: bytes, inputs: torch.Tensor, scheme: str = "per-channel",
                n: int = 64) -> list[tuple[str, float]]:
    """Each weighted node's int8 error alone: the graph quantized with only that node
    (every other left fp32), its relative output error against the fp32 graph on the
    first ``n`` inputs. Largest first: the node whose int8 error dominates leads."""
    import onnx

    model = onnx.load_from_string(data)
    nodes = [nd.name for nd in model.graph.node if nd.op_type in WEIGHTED]
    x = inputs[:n].detach().float().cpu()
    ref = OrtModule(data)
    dynamic = _input_batch(model) is None
    want = _run_all(ref, x, dynamic)
    out = []
    for name in nodes:
        q = quantize(data, x, scheme, keep_fp32=[m for m in nodes if m != name])
        out.append((name, rel_error(_run_all(OrtModule(q.data), x, dynamic), want)))
    return sorted(out, key=lambda t: -t[1])


def _run_all(m: OrtModule, x: torch.Tensor, dynamic: bool) -> torch.Tensor:
    if dynamic:
        return m(x)
    return torch.cat([m(x[i:i + 1]) for i in range(len(x))])
