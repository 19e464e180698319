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
from collections.abc import Callable, Iterator
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

__all__ = ["FORMATS", "INPUT", "OUTPUT", "TOLERANCE", "Artifact", "check_close", "export_format",
           "export_model", "export_onnx", "onnx_session", "other_batch"]

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


#: the name of an exported graph's input and its first output (dynamic axes refer to them)
INPUT, OUTPUT = "input", "output"


def export_onnx(module: nn.Module, x: torch.Tensor, dynamic: bool = False
                ) -> tuple[bytes, str]:
    """The module as ONNX bytes: the TorchScript exporter, else the ``torch.export``-based
    one. With ``dynamic`` the batch dimension (dim 0 of the input and the first output)
    is symbolic. Returns the bytes and which exporter made them."""
    errors = []
    for exporter, dynamo in (("torchscript", False), ("dynamo", True)):
        buf = io.BytesIO()
        if dynamo:
            kw: dict[str, Any] = {"verbose": False}
            if dynamic:
                kw["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1)},)
            example = _batch_of(x, 2) if dynamic and x.shape[0] < 2 else x
        else:
            kw = {"opset_version": 17, "input_names": [INPUT], "output_names": [OUTPUT]}
            if dynamic:
                kw["dynamic_axes"] = {INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}
            example = x
        try:
            with warnings.catch_warnings(), _quiet():
                warnings.simplefilter("ignore")
                torch.onnx.export(module, (example,), buf, dynamo=dynamo,  # type: ignore[arg-type]
                                  **kw)
            return buf.getvalue(), exporter
        except Exception as e:  # an exporter that cannot take this module
            errors.append(f"{exporter}: {type(e).__name__}: {str(e).splitlines()[0]}"
                          if str(e) else f"{exporter}: {type(e).__name__}")
    raise RuntimeFailure("ONNX export failed (" + "; ".join(errors) + ")")


def _batch_of(x: torch.Tensor, n: int) -> torch.Tensor:
    """``x``'s first input repeated to a batch of ``n`` (an example for tracing)."""
    return x[:1].expand(n, *x.shape[1:]).contiguous()


def other_batch(x: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """A seeded random input of another batch size than ``x``'s (``x``'s + 2), for the
    check that an export with a dynamic batch serves it."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(x.shape[0] + 2, *x.shape[1:], generator=g).to(x.device, x.dtype)


def onnx_session(data: bytes, threads: int | None = None, cuda: bool = False) -> Any:
    """An ONNX Runtime session on ``data``, every graph optimisation on."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise InputError("ONNX needs ONNX Runtime: pip install 'dsconv[onnx]'") from None
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or torch.get_num_threads()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only: its warnings are not dsconv's diagnostics
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


def export_model(model: nn.Module, x: torch.Tensor, path: Path, dynamic: bool = True,
                 int8: Callable[[bytes], Any] | None = None,
                 x2: torch.Tensor | None = None) -> Artifact:
    """``model`` exported in the format ``path``'s suffix picks, for inputs shaped like
    ``x``, and checked: the artifact, loaded from its bytes, against the model on ``x``
    and, with ``dynamic`` (the batch dimension symbolic), on a second batch size too. A
    model that cannot be exported with a dynamic batch is exported static and the info
    says why (``dynamic_dims`` empty, ``note``). ``int8`` (ONNX only): the checked fp32
    graph -> an :class:`.quantize.Int8`, checked against the model within
    :data:`.quantize.INT8_TOLERANCE` at the same batch sizes; it is the artifact. Any
    failure is a ``RuntimeFailure`` (exit 1). ``x2``: the second batch's input (default
    seeded random, of ``x``'s batch + 2); int8 checks want real inputs, inside the
    calibrated ranges."""
    fmt = export_format(path)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    t0 = time.perf_counter()
    note = None
    if fmt == "onnx":
        x = x.contiguous()  # ONNX inputs are NCHW
    try:
        xs = [x]
        with torch.no_grad():
            wants = [_first_tensor(model(x))]
        try:
            if not dynamic:
                raise _Static
            x2 = other_batch(x) if x2 is None else x2.to(x.device, x.dtype).contiguous()
            with torch.no_grad():
                want2 = _first_tensor(model(x2))
            data, exporter, err, allowed = _made(fmt, model, [x, x2], [wants[0], want2],
                                                 True, path)
            xs, wants = [x, x2], [wants[0], want2]
        except Exception as e:
            if dynamic:
                note = ("the batch dimension is static: the model or its export does not "
                        f"take another batch size ({_first_line(e)})")
            dynamic = False
            data, exporter, err, allowed = _made(fmt, model, xs, wants, False, path)
        info: dict[str, Any] = {}
        if int8 is not None:
            from .quantize import check_int8

            q = int8(data)
            errs = [check_int8(_run_onnx(q.data, xi), w, f"the int8 {path.name}")
                    for xi, w in zip(xs, wants, strict=True)]
            data, info = q.data, {"int8": {**q.info, "rel_error": float(f"{max(errs):.3g}")}}
    except RuntimeFailure:
        raise
    except Exception as e:
        raise RuntimeFailure(f"--export {path}: {fmt} failed: {type(e).__name__}: "
                             f"{_first_line(e)}") from e
    finally:
        for m, mode in modes.items():
            m.training = mode
    return Artifact(data, {"path": str(path), "format": fmt, "exporter": exporter,
                           "bytes": len(data), "input_shape": list(x.shape),
                           "dtype": "int8" if int8 is not None else
                           str(x.dtype).removeprefix("torch."), "checked": True,
                           "max_abs_diff": float(f"{err:.3g}"),
                           "tolerance": float(f"{allowed:.3g}"),
                           "dynamic_dims": {"batch": 0} if dynamic else {},
                           "checked_batches": [int(xi.shape[0]) for xi in xs],
                           **({"note": note} if note else {}), **info,
                           "seconds": round(time.perf_counter() - t0, 3)})


class _Static(Exception):
    """--static-shape: the static export asked for."""


def _made(fmt: str, model: nn.Module, xs: list[torch.Tensor], wants: list[torch.Tensor],
          dynamic: bool, path: Path) -> tuple[bytes, str, float, float]:
    """One export, run from its bytes on every input of ``xs`` and checked against
    ``wants``: the bytes, the exporter, the largest |diff| and its tolerance."""
    if fmt == "torch.export":
        data, exporter = _export_pt2(model, xs[0], dynamic), "torch.export"
        run = _run_pt2
    else:
        data, exporter = export_onnx(model, xs[0], dynamic)
        run = _run_onnx
    checks = [check_close(run(data, xi), w, xi.dtype, f"the exported {path.name}"
                          + (f" at batch {xi.shape[0]}" if len(xs) > 1 else ""))
              for xi, w in zip(xs, wants, strict=True)]
    return data, exporter, max(c[0] for c in checks), max(c[1] for c in checks)


def _first_line(e: BaseException) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _export_pt2(model: nn.Module, x: torch.Tensor, dynamic: bool = False) -> bytes:
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        if dynamic:
            example = _batch_of(x, 2) if x.shape[0] < 2 else x
            program = torch.export.export(
                model, (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
        else:
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
