"""ONNX Runtime: the module exported with ``torch.onnx.export`` (the TorchScript exporter,
else the ``torch.export``-based one; the result says which), run by an
``InferenceSession`` with ``intra_op_num_threads`` = ``--threads`` and every graph
optimisation on, on the CPU execution provider (CUDA's with ``--device cuda``). The
output is checked against torch's before anything is timed. Needs the ``onnx`` extra."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...errors import InputError
from ..export import check_close, export_onnx, onnx_session
from . import Prepared


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

    def prepare(self, module: nn.Module, x: torch.Tensor) -> Prepared:
        x = x.contiguous()  # ONNX inputs are NCHW
        with torch.inference_mode():
            want = module(x)
        data, exporter = export_onnx(module, x)
        sess = onnx_session(data, self.threads, cuda=self.device.type == "cuda")
        feed = {sess.get_inputs()[0].name: x.detach().cpu().numpy()}
        got = torch.from_numpy(sess.run(None, feed)[0])
        err, _ = check_close(got, want, x.dtype, "ONNX Runtime")

        def run() -> Any:
            return sess.run(None, feed)

        return Prepared(run, {"exporter": exporter, "max_abs_diff": float(f"{err:.3g}")})

    def record(self) -> dict[str, Any]:
        return {"runtime": self.name, "onnxruntime": self.ort.__version__}
