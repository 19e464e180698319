"""ONNX Runtime: the module exported with ``torch.onnx.export`` (the TorchScript exporter,
else the ``torch.export``-based one; the result says which), run by an
``InferenceSession`` with ``intra_op_num_threads`` = ``--threads`` and every graph
optimisation on, on the CPU execution provider (CUDA's with ``--device cuda``). The
output is checked against torch's before anything is timed. Needs the ``onnx`` extra.

Its int8 variant (``--dtype int8``, :class:`Int8Options`) quantizes the exported graph
(:mod:`..quantize`) and checks it against torch's fp32 output within the int8 tolerance:
the same preparation and the same timed call, one more step."""

from __future__ import annotations

from dataclasses import dataclass
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

    def __init__(self, device: torch.device, threads: int | None,
                 int8: Int8Options | None = None) -> None:
        try:
            import onnxruntime
        except ImportError:
            what = "--dtype int8" if int8 is not None else "--runtime onnxruntime"
            raise InputError(f"{what} needs ONNX Runtime: pip install 'dsconv[onnx]'"
                             ) from None
        self.ort = onnxruntime
        self.device = device
        self.threads = threads
        self.int8 = int8

    def prepare(self, module: nn.Module, x: torch.Tensor) -> Prepared:
        x = x.contiguous()  # ONNX inputs are NCHW
        with torch.inference_mode():
            want = module(x)
        data, exporter = export_onnx(module, x)
        info: dict[str, Any] = {"exporter": exporter}
        if self.int8 is not None:
            from ..quantize import check_int8, quantize, random_calibration

            cal = (self.int8.calibration if self.int8.calibration is not None
                   else random_calibration(tuple(x.shape)))
            data = quantize(data, cal, self.int8.scheme).data
        sess = onnx_session(data, self.threads, cuda=self.device.type == "cuda")
        feed = {sess.get_inputs()[0].name: x.detach().cpu().numpy()}
        got = torch.from_numpy(sess.run(None, feed)[0])
        if self.int8 is not None:
            info.update(dtype="int8", scheme=self.int8.scheme,
                        rel_error=float(f"{check_int8(got, want, 'ONNX Runtime int8'):.3g}"))
        else:
            err, _ = check_close(got, want, x.dtype, "ONNX Runtime")
            info["max_abs_diff"] = float(f"{err:.3g}")

        def run() -> Any:
            return sess.run(None, feed)

        return Prepared(run, info, artifact=data)

    def record(self) -> dict[str, Any]:
        out = {"runtime": self.name, "onnxruntime": self.ort.__version__}
        if self.int8 is not None:
            out["int8"] = {"format": "QDQ", "scheme": self.int8.scheme, "weights": "int8",
                           "activations": "uint8",
                           "calibration": "random" if self.int8.calibration is None
                           else f"{len(self.int8.calibration)} inputs"}
        return out


@dataclass(frozen=True)
class Int8Options:
    """The int8 variant: the exported graph quantized statically before it is timed,
    calibrated on ``calibration`` (N inputs) or, without it, on seeded random inputs of
    the module's input shape."""

    scheme: str = "per-channel"
    calibration: torch.Tensor | None = None
