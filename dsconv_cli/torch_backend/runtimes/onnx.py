"""ONNX Runtime: the module exported with ``torch.onnx.export`` (the TorchScript exporter,
else the ``torch.export``-based one; the result says which), run by an
``InferenceSession`` with ``intra_op_num_threads`` = ``--threads`` and every graph
optimisation on, on the CPU execution provider (CUDA's with ``--device cuda``). The
output is checked against torch's before anything is timed. Needs the ``onnx`` extra."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Any

import torch
from torch import nn

from ...errors import InputError
from . import Prepared, RuntimeFailure

#: tolerance of the output check, by dtype: (relative to the output's scale, absolute)
TOLERANCE = {torch.float32: 1e-3, torch.float16: 2e-2, torch.bfloat16: 5e-2}


class OnnxRuntime:
    name = "onnxruntime"
    #: an ONNX graph is NCHW; ORT picks its own internal layout
    layouts: tuple[str, ...] | None = ("nchw",)

    def __init__(self, device: torch.device, threads: int | None) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise InputError("--runtime onnxruntime needs ONNX Runtime: pip install "
                             "'dsconv[onnx]'") from None
        self.ort = onnxruntime
        self.device = device
        self.threads = threads

    def _export(self, module: nn.Module, x: torch.Tensor) -> tuple[bytes, str]:
        errors = []
        for exporter, dynamo in (("torchscript", False), ("dynamo", True)):
            buf = io.BytesIO()
            try:
                with warnings.catch_warnings(), _quiet():
                    warnings.simplefilter("ignore")
                    torch.onnx.export(module, (x,), buf, dynamo=dynamo,  # type: ignore[arg-type]
                                      **({"verbose": False} if dynamo else
                                         {"opset_version": 17}))
                return buf.getvalue(), exporter
            except Exception as e:  # an exporter that cannot take this module
                errors.append(f"{exporter}: {type(e).__name__}: {str(e).splitlines()[0]}"
                              if str(e) else f"{exporter}: {type(e).__name__}")
        raise RuntimeFailure("ONNX export failed (" + "; ".join(errors) + ")")

    def prepare(self, module: nn.Module, x: torch.Tensor) -> Prepared:
        x = x.contiguous()  # ONNX inputs are NCHW
        with torch.inference_mode():
            want = module(x)
        data, exporter = self._export(module, x)
        so = self.ort.SessionOptions()
        so.intra_op_num_threads = self.threads or torch.get_num_threads()
        so.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = (["CUDAExecutionProvider", "CPUExecutionProvider"]
                     if self.device.type == "cuda" else ["CPUExecutionProvider"])
        try:
            sess = self.ort.InferenceSession(data, so, providers=providers)
        except Exception as e:
            raise RuntimeFailure(f"ONNX Runtime cannot load the exported model: {e}") from e
        name = sess.get_inputs()[0].name
        feed = {name: x.detach().cpu().numpy()}
        got = torch.from_numpy(sess.run(None, feed)[0])
        ref = want.detach().float().cpu()
        tol = TOLERANCE.get(x.dtype, 1e-3)
        err = float((got.float() - ref).abs().max()) if ref.numel() else 0.0
        scale = float(ref.abs().max()) if ref.numel() else 0.0
        if got.shape != ref.shape or err > tol * max(scale, 1.0):
            raise RuntimeFailure(f"ONNX Runtime's output differs from torch's (max |diff| "
                                 f"{err:.3g}, shape {tuple(got.shape)} vs {tuple(ref.shape)})")

        def run() -> Any:
            return sess.run(None, feed)

        return Prepared(run, {"exporter": exporter, "max_abs_diff": float(f"{err:.3g}")})

    def record(self) -> dict[str, Any]:
        return {"runtime": self.name, "onnxruntime": self.ort.__version__}


@contextlib.contextmanager
def _quiet() -> Any:
    """The exporters log progress and notes; dsconv's stderr stays dsconv's."""
    names = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")
    old = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            yield
        finally:
            for n, lvl in old.items():
                logging.getLogger(n).setLevel(lvl)
