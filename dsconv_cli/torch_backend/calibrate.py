"""Data-aware conversion: refit converted layers on unlabelled inputs, and measure fidelity.

After the SVD start, each converted layer is refitted in forward order so that its output
on the *converted* network's own activations matches the original layer's output on the
*original* network's activations: the pointwise weights (and bias, where the layer has
one) by ridge least squares in float64, in closed form. The normal equations are
accumulated batch by batch (``--calibration-batch``), so memory is bounded by one batch of
activations and a (Cin·m+1)² matrix per layer, never all layers at once. Errors do not
accumulate: each layer corrects what the converted layers before it changed.

Fidelity is measured, not assumed: each layer's relative output error before (SVD) and
after the refit, and the whole model's relative output error and top-1 agreement with the
original, on the calibration inputs or on held-out ``--eval-data``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError

__all__ = ["fidelity", "load_inputs", "refit"]

#: ridge strength relative to the mean diagonal of the normal equations
RIDGE = 1e-6


def load_inputs(path: Path, what: str) -> torch.Tensor:
    """N unlabelled inputs: a torch.save'd tensor (loaded ``weights_only``) or a .npy
    array (``allow_pickle=False``). Empty, non-float or non-finite data is an input error."""
    if not path.is_file():
        raise InputError(f"{what} {path}: no such file")
    try:
        if path.suffix.lower() == ".npy":
            import numpy as np

            data = torch.from_numpy(np.load(path, allow_pickle=False))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(obj, torch.Tensor):
                raise InputError(f"{what} {path}: holds {type(obj).__name__}, not one tensor "
                                 "of inputs (N, C, H, W)")
            data = obj
    except InputError:
        raise
    except Exception as e:  # a pickle, a truncated file, a non-array .npy
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "Unsupported global" in str(e) or "allow_pickle" in str(e) or "Weights only" in str(e):
            raise InputError(f"{what} {path}: holds pickled objects, not a plain tensor; "
                             "dsconv does not unpickle data") from None
        raise InputError(f"{what} {path}: not a tensor file ({first})") from None
    if data.ndim < 2 or data.shape[0] == 0:
        raise InputError(f"{what} {path}: expected N inputs as (N, C, ...), got shape "
                         f"{tuple(data.shape)}")
    if not data.is_floating_point():
        raise InputError(f"{what} {path}: expected floating-point inputs, got {data.dtype}")
    if not bool(torch.isfinite(data).all()):
        raise InputError(f"{what} {path}: holds NaN or infinite values")
    return data


def _batches(data: torch.Tensor, size: int, like: nn.Module) -> Iterator[torch.Tensor]:
    p = next(iter(like.parameters()), None)
    dev = p.device if p is not None else torch.device("cpu")
    dt = p.dtype if p is not None and p.dtype.is_floating_point else torch.float32
    for i in range(0, data.shape[0], size):
        yield data[i:i + size].to(dev, dt)


def _run(model: nn.Module, x: torch.Tensor, what: str) -> Any:
    try:
        return model(x)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{what}: inputs of shape {tuple(x.shape[1:])} do not fit the model: "
                         f"{type(e).__name__}: {first}") from e


def _order(model: nn.Module, names: list[str], x: torch.Tensor) -> list[str]:
    """The converted layers in the order the forward calls them."""
    seen: list[str] = []
    hooks = [model.get_submodule(n).register_forward_pre_hook(
        lambda m, a, n=n: seen.append(n) if n not in seen else None) for n in names]
    try:
        with torch.no_grad():
            _run(model, x[:1], "--calibration-data")
    finally:
        for h in hooks:
            h.remove()
    return seen + [n for n in names if n not in seen]


def _flat(t: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N*H*W, C) in float64."""
    return t.double().movedim(1, -1).reshape(-1, t.shape[1])


def refit(original: nn.Module, converted: nn.Module, names: list[str], data: torch.Tensor,
          batch: int = 32, advance: Callable[[str], None] | None = None,
          refine_steps: int = 0) -> dict[str, dict[str, Any]]:
    """Refit each converted layer in forward order: its pointwise conv (and bias), then
    ``refine_steps`` times the depthwise conv and the pointwise again. Returns, per layer,
    the relative output error on the calibration inputs before (``svd``) and after
    (``calibrated``), and the refine steps taken."""
    original.eval()
    converted.eval()
    out: dict[str, dict[str, Any]] = {}
    with _channels_last(original, data), _channels_last(converted, data):
        for name in _order(original, names, data):
            _refit_layer(original, converted, name, data, batch, refine_steps, out)
            if advance:
                advance(name)
    return out


@contextlib.contextmanager
def _channels_last(model: nn.Module, data: torch.Tensor) -> Iterator[None]:
    """CPU convolutions run faster channels_last: the calibration forwards use it, and
    the model's tensors get their layout back afterwards."""
    if data.ndim != 4:
        yield
        return
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    try:
        yield
    finally:
        model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]


def _refit_layer(original: nn.Module, converted: nn.Module, name: str, data: torch.Tensor,
                 batch: int, refine_steps: int, out: dict[str, dict[str, Any]]) -> None:
    conv = original.get_submodule(name)
    pair = converted.get_submodule(name)
    assert isinstance(pair, nn.Sequential)
    first, err = _refit_pointwise(original, converted, conv, pair, data, batch)
    row: dict[str, Any] = {"svd": round(first, 6), "calibrated": round(err, 6)}
    steps = 0
    for _ in range(refine_steps):
        if not _refit_depthwise(original, converted, conv, pair, data, batch):
            row["refine_note"] = ("depthwise refit skipped: too many unknowns, or "
                                  "padding other than zeros")
            break
        _, err = _refit_pointwise(original, converted, conv, pair, data, batch)
        steps += 1
    row["calibrated"] = round(err, 6)
    if refine_steps:
        row["refine_steps"] = steps
    out[name] = row


class _Stop(BaseException):
    """Ends a forward pass once the layer being refitted has given what is needed: the
    rest of the network would only cost time (half of it, on average)."""


def _until(model: nn.Module, module: nn.Module, store: list[torch.Tensor], xb: torch.Tensor,
           pre: bool = False) -> None:
    """Run ``model`` on ``xb`` until ``module`` runs; keep its output (or input)."""
    def grab(t: torch.Tensor) -> None:
        store.append(t.detach())
        raise _Stop

    h = (module.register_forward_pre_hook(lambda m, a: grab(a[0])) if pre
         else module.register_forward_hook(lambda m, a, out: grab(out)))
    try:
        with torch.inference_mode():
            _run(model, xb.contiguous(memory_format=torch.channels_last)
                 if xb.ndim == 4 else xb, "--calibration-data")
    except _Stop:
        pass
    finally:
        h.remove()


def _pairs(original: nn.Module, converted: nn.Module, conv: nn.Module, inner: nn.Module,
           data: torch.Tensor, batch: int, pre: bool = False
           ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """For each batch: (the original layer's output, and in the converted network the
    depthwise conv's output, or with ``pre`` its input). Each forward stops at the layer;
    a conv used at two places is refitted on its first call."""
    for xb in _batches(data, batch, original):
        ys: list[torch.Tensor] = []
        zs: list[torch.Tensor] = []
        _until(original, conv, ys, xb)
        _until(converted, inner, zs, xb, pre)
        yield from zip(ys, zs, strict=True)


def _refit_pointwise(original: nn.Module, converted: nn.Module, conv: nn.Module,
                     pair: nn.Sequential, data: torch.Tensor, batch: int
                     ) -> tuple[float, float]:
    """Ridge least squares for the pointwise weights (and bias) given the depthwise conv;
    block by block for a grouped pointwise. Returns the relative error before and after."""
    dw, pw = pair[0], pair[1]
    assert isinstance(dw, nn.Conv2d) and isinstance(pw, nn.Conv2d)
    k, cout, bias = dw.out_channels, pw.out_channels, pw.bias is not None
    dim = k + int(bias)
    a = torch.zeros(dim, dim, dtype=torch.float64)
    b = torch.zeros(dim, cout, dtype=torch.float64)
    yy = 0.0
    for y, z in _pairs(original, converted, conv, dw, data, batch):
        zf, yf = _flat(z), _flat(y)
        if bias:
            zf = torch.cat([zf, torch.ones(zf.shape[0], 1, dtype=zf.dtype)], 1)
        a += zf.T @ zf
        b += zf.T @ yf
        yy += float((yf * yf).sum())
    # the pointwise conv as a (features [+ 1], outputs) matrix; a grouped one (a grouped
    # conv converted per group) is block diagonal: each group solved on its own
    g = pw.groups
    kg, og = k // g, cout // g
    m_old = _pointwise_matrix(pw, dim)
    m_new = torch.zeros_like(m_old)
    for gi in range(g):
        rows = list(range(gi * kg, (gi + 1) * kg)) + ([k] if bias else [])
        cols = slice(gi * og, (gi + 1) * og)
        ag = a[rows][:, rows]
        lam = RIDGE * float(ag.diagonal().mean()) if rows else 0.0
        m_new[rows, cols] = torch.linalg.solve(
            ag + lam * torch.eye(len(rows), dtype=a.dtype), b[rows, cols])
    with torch.no_grad():
        pw.weight.copy_(torch.stack([m_new[gi * kg:(gi + 1) * kg, gi * og:(gi + 1) * og].T
                                     for gi in range(g)]).reshape(cout, kg, 1, 1))
        if bias:
            assert pw.bias is not None
            pw.bias.copy_(m_new[k])
    return _rel(m_old, a, b, yy), _rel(m_new, a, b, yy)


def _pointwise_matrix(pw: nn.Conv2d, dim: int) -> torch.Tensor:
    """The pointwise conv as a dense (features [+ bias row], outputs) matrix."""
    k, cout, g = pw.in_channels, pw.out_channels, pw.groups
    kg, og = k // g, cout // g
    w = pw.weight.detach().double().reshape(g, og, kg)
    m = torch.zeros(dim, cout, dtype=torch.float64)
    for gi in range(g):
        m[gi * kg:(gi + 1) * kg, gi * og:(gi + 1) * og] = w[gi].T
    if pw.bias is not None:
        m[k] = pw.bias.detach().double()
    return m


#: the depthwise refit solves for every depthwise weight at once: at most this many
MAX_DEPTHWISE_UNKNOWNS = 4096


def _refit_depthwise(original: nn.Module, converted: nn.Module, conv: nn.Module,
                     pair: nn.Sequential, data: torch.Tensor, batch: int) -> bool:
    """Ridge least squares for the depthwise weights given the pointwise conv P:
    y = P · (D * patches) + b is linear in D, with normal equations
    A = (Σ patch patchᵀ) ∘ (PᵀP) over matching channels. False when skipped."""
    dw, pw = pair[0], pair[1]
    assert isinstance(dw, nn.Conv2d) and isinstance(pw, nn.Conv2d)
    cin, mid = dw.in_channels, dw.out_channels
    m = mid // cin
    kh, kw = dw.kernel_size
    taps = kh * kw
    n = mid * taps
    if (n > MAX_DEPTHWISE_UNKNOWNS or dw.padding_mode != "zeros"
            or isinstance(dw.padding, str)):
        return False
    p = _pointwise_matrix(pw, mid + int(pw.bias is not None))  # (mid [+1], cout)
    pm, bias = p[:mid], (p[mid] if pw.bias is not None else None)
    q = pm @ pm.T  # (mid, mid): PᵀP over depthwise output channels
    # depthwise output channel i = c*m + j reads input channel c
    chan = torch.arange(mid) // m
    g = torch.zeros(cin * taps, cin * taps, dtype=torch.float64)
    h = torch.zeros(cin * taps, mid, dtype=torch.float64)
    for y, x in _pairs(original, converted, conv, pair, data, batch, pre=True):
        cols = torch.nn.functional.unfold(x.double(), (kh, kw), dilation=dw.dilation,
                                          padding=dw.padding, stride=dw.stride)
        pt = cols.transpose(1, 2).reshape(-1, cin * taps)  # (pixels, cin*taps)
        yt = _flat(y)
        if bias is not None:
            yt = yt - bias
        g += pt.T @ pt
        h += pt.T @ (yt @ pm.T)  # (cin*taps, mid)
    # unknown (i, t): depthwise channel i, tap t; patch index (chan[i], t)
    idx = (chan[:, None] * taps + torch.arange(taps)[None, :]).reshape(-1)  # (n,)
    a = g[idx][:, idx] * q.repeat_interleave(taps, 0).repeat_interleave(taps, 1)
    b = h[idx, torch.arange(mid).repeat_interleave(taps)]
    lam = RIDGE * float(a.diagonal().mean())
    sol = torch.linalg.solve(a + lam * torch.eye(n, dtype=a.dtype), b)
    with torch.no_grad():
        dw.weight.copy_(sol.reshape(mid, 1, kh, kw))
    return True


def _rel(m: torch.Tensor, a: torch.Tensor, b: torch.Tensor, yy: float) -> float:
    """||Z m - Y|| / ||Y|| from the normal equations (A = ZᵀZ, B = ZᵀY, yy = ||Y||²)."""
    sq = float((m * (a @ m)).sum() - 2 * (m * b).sum()) + yy
    return math.sqrt(max(sq, 0.0) / yy) if yy > 0 else 0.0


def fidelity(original: nn.Module, converted: nn.Module, data: torch.Tensor, on: str,
             batch: int = 32) -> dict[str, Any]:
    """Whole-model relative output error and top-1 agreement (for (N, classes) outputs)."""
    original.eval()
    converted.eval()
    agree = total = 0
    diff_sq = ref_sq = 0.0
    for xb in _batches(data, batch, original):
        with torch.no_grad():
            y0 = _first(_run(original, xb, f"--{on}-data")).double()
            y1 = _first(_run(converted, xb, f"--{on}-data")).double()
        diff_sq += float(((y1 - y0) ** 2).sum())
        ref_sq += float((y0 ** 2).sum())
        if y0.ndim == 2 and y0.shape[1] > 1:
            agree += int((y0.argmax(1) == y1.argmax(1)).sum())
            total += y0.shape[0]
    return {"agreement": round(agree / total, 6) if total else None,
            "rel_output_error": round(math.sqrt(diff_sq / ref_sq), 6) if ref_sq else 0.0,
            "on": on, "n": int(data.shape[0])}


def _first(y: Any) -> torch.Tensor:
    if isinstance(y, torch.Tensor):
        return y
    items = y.values() if isinstance(y, dict) else y
    return next(t for t in items if isinstance(t, torch.Tensor))
