"""Deployable artifacts: a module exported with ``torch.export`` (``.pt2``) or to ONNX
(``.onnx``), the one home for exporting (the ONNX Runtime timing runs what
:func:`export_onnx` makes). An artifact's output is checked against the module's on the
same input before it is handed back: loaded from its own bytes, as a deployment would."""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..names import EXPORT_FORMATS as FORMATS
from ..names import export_format
from .loading import first_tensor
from .runtimes import RuntimeFailure

__all__ = ["FORMATS", "TOLERANCE", "Artifact", "check_close", "export_format", "export_model",
           "export_onnx", "onnx_session"]

#: tolerance of an output check, by dtype: relative to the output's scale (at least 1)
TOLERANCE = {torch.float32: 1e-3, torch.float16: 2e-2, torch.bfloat16: 5e-2}


@dataclass(frozen=True)
class Artifact:
    """An exported model's bytes and what its check found."""

    data: bytes
    info: dict[str, Any]


def check_close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype,
                what: str) -> tuple[float, float]:
    """``got`` against ``want``: max |diff| within the dtype's tolerance times the output's
    scale. Returns (max |diff|, the allowed diff); a mismatch is a ``RuntimeFailure``."""
    ref, out = want.detach().float().cpu(), got.detach().float().cpu()
    err = float((out - ref).abs().max()) if ref.numel() and out.shape == ref.shape else 0.0
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    allowed = TOLERANCE.get(dtype, 1e-3) * max(scale, 1.0)
    if out.shape != ref.shape or not err <= allowed:
        raise RuntimeFailure(f"{what}'s output differs from torch's (max |diff| {err:.3g}, "
                             f"allowed {allowed:.3g}; shape {tuple(out.shape)} vs "
                             f"{tuple(ref.shape)})")
    return err, allowed


def export_onnx(module: nn.Module, x: torch.Tensor) -> tuple[bytes, str]:
    """The module as ONNX bytes: the TorchScript exporter, else the ``torch.export``-based
    one. Returns the bytes and which exporter made them."""
    errors = []
    for exporter, dynamo in (("torchscript", False), ("dynamo", True)):
        buf = io.BytesIO()
        try:
            with warnings.catch_warnings(), _quiet():
                warnings.simplefilter("ignore")
                torch.onnx.export(module, (x,), buf, dynamo=dynamo,  # type: ignore[arg-type]
                                  **({"verbose": False} if dynamo else {"opset_version": 17}))
            return buf.getvalue(), exporter
        except Exception as e:  # an exporter that cannot take this module
            errors.append(f"{exporter}: {type(e).__name__}: {str(e).splitlines()[0]}"
                          if str(e) else f"{exporter}: {type(e).__name__}")
    raise RuntimeFailure("ONNX export failed (" + "; ".join(errors) + ")")


def onnx_session(data: bytes, threads: int | None = None, cuda: bool = False) -> Any:
    """An ONNX Runtime session on ``data``, every graph optimisation on."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise InputError("ONNX needs ONNX Runtime: pip install 'dsconv[onnx]'") from None
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or torch.get_num_threads()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else [
        "CPUExecutionProvider"]
    try:
        return ort.InferenceSession(data, so, providers=providers)
    except Exception as e:
        raise RuntimeFailure(f"ONNX Runtime cannot load the exported model: {e}") from e


def _run_pt2(data: bytes, x: torch.Tensor) -> torch.Tensor:
    program = torch.export.load(io.BytesIO(data))
    with torch.no_grad():
        y = program.module()(x)
    return _first_tensor(y)


def _run_onnx(data: bytes, x: torch.Tensor) -> torch.Tensor:
    sess = onnx_session(data, cuda=x.device.type == "cuda")
    return torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name:
                                            x.detach().cpu().numpy()})[0])


def export_model(model: nn.Module, x: torch.Tensor, path: Path) -> Artifact:
    """``model`` exported in the format ``path``'s suffix picks, for inputs shaped like
    ``x``, and checked: the artifact, loaded from its bytes, against the model on ``x``.
    Any failure is a ``RuntimeFailure`` (exit 1)."""
    fmt = export_format(path)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            want = _first_tensor(model(x))
        if fmt == "torch.export":
            data, exporter = _export_pt2(model, x), "torch.export"
            got = _run_pt2(data, x)
        else:
            x = x.contiguous()  # ONNX inputs are NCHW
            data, exporter = export_onnx(model, x)
            got = _run_onnx(data, x)
    except RuntimeFailure:
        raise
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise RuntimeFailure(f"--export {path}: {fmt} failed: {type(e).__name__}: "
                             f"{first}") from e
    finally:
        for m, mode in modes.items():
            m.training = mode
    err, allowed = check_close(got, want, x.dtype, f"the exported {path.name}")
    return Artifact(data, {"path": str(path), "format": fmt, "exporter": exporter,
                           "bytes": len(data), "input_shape": list(x.shape),
                           "dtype": str(x.dtype).removeprefix("torch."), "checked": True,
                           "max_abs_diff": float(f"{err:.3g}"),
                           "tolerance": float(f"{allowed:.3g}"),
                           "seconds": round(time.perf_counter() - t0, 3)})


def _export_pt2(model: nn.Module, x: torch.Tensor) -> bytes:
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, (x,))
        buf = io.BytesIO()
        torch.export.save(program, buf)
    return buf.getvalue()


def _first_tensor(y: Any) -> torch.Tensor:
    t = first_tensor(y)
    if t is None:
        raise RuntimeFailure(f"the model returned {type(y).__name__}, not a tensor")
    return t


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
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
