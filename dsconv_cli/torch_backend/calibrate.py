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

import collections
import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..errors import InputError
from ..inputs import check_input
from ..results import Fidelity
from . import footprint, free_memory, resume
from .loading import torch_detail

__all__ = ["distill", "fidelity", "load_inputs", "model_dtype", "refit"]

#: ridge strength relative to the mean diagonal of the normal equations
RIDGE = 1e-6


def load_inputs(path: Path | torch.Tensor, what: str) -> torch.Tensor:
    """N unlabelled inputs, memory-mapped, never read whole: a torch.save'd tensor (loaded
    ``weights_only``, ``mmap``) or a .npy array (``allow_pickle=False``, ``mmap_mode='c'``:
    a write stays private to the process), or a tensor given as is (the Python API).
    :func:`_batches` copies one batch at a time out of it. Meta, sparse, quantized,
    non-float, empty or non-finite data is an input error."""
    if isinstance(path, torch.Tensor):
        _check_inputs(path, what)
        return path
    check_input(path, what, "data")  # a FIFO or a device: one line naming the option
    try:
        if path.suffix.lower() == ".npy":
            import numpy as np

            arr = np.load(path, mmap_mode="c", allow_pickle=False)
            if not arr.dtype.isnative:
                raise InputError(f"{what} {path}: holds {arr.dtype.str} values, not in this "
                                 "machine's byte order; save them with "
                                 "arr.astype(arr.dtype.newbyteorder('='))")
            data = torch.from_numpy(arr)
        else:
            obj = _load_mapped(path)
            if not isinstance(obj, torch.Tensor):
                raise InputError(f"{what} {path}: holds {type(obj).__name__}, not one tensor "
                                 "of inputs (N, C, H, W)")
            data = obj
    except InputError:
        raise
    except Exception as e:  # a pickle, a truncated file, a non-array .npy
        msg = str(e)  # never torch's advice to load unsafely; garbage is not "pickled"
        first = next((ln.strip() for ln in msg.splitlines() if "Unsupported" in ln),
                     None) or torch_detail(msg) or type(e).__name__
        if "Unsupported global" in msg or "allow_pickle" in msg or "is blocked" in msg:
            raise InputError(f"{what} {path}: holds pickled objects, not a plain tensor; "
                             "dsconv does not unpickle data") from None
        raise InputError(f"{what} {path}: not a tensor file ({first})") from None
    _check_inputs(data, f"{what} {path}")
    return data


def _load_mapped(path: Path) -> Any:
    """``torch.load`` memory-mapped (the zip format), else read (the legacy format)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as e:
        if "mmap" not in str(e):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)


def _check_inputs(data: torch.Tensor, where: str) -> None:
    """Plain dense finite floats, N >= 1 of them: anything else is one line, exit 2."""
    if data.is_meta:
        raise InputError(f"{where}: holds a meta tensor (a shape without values); save the "
                         "inputs themselves")
    if data.layout != torch.strided or data.is_nested:
        raise InputError(f"{where}: holds a {str(data.layout).removeprefix('torch.')} "
                         "tensor; give a dense one (x.to_dense())")
    if data.is_quantized or not data.is_floating_point():
        raise InputError(f"{where}: expected floating-point inputs, got {data.dtype}")
    if data.ndim < 2 or data.numel() == 0:
        raise InputError(f"{where}: expected N inputs as (N, C, ...), got shape "
                         f"{tuple(data.shape)}")
    step = max(1, (1 << 24) // max(1, data[0].numel()))  # finite, checked a chunk at a time
    for i in range(0, data.shape[0], step):
        if not bool(torch.isfinite(data[i:i + step]).all()):
            raise InputError(f"{where}: holds NaN or infinite values")


def model_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where and in which dtype inputs must be for ``model``: its first floating-point
    parameter's (or buffer's); float32 on the CPU for a model with none."""
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.float32


def _batches(data: torch.Tensor, size: int, like: nn.Module) -> Iterator[torch.Tensor]:
    """Batches copied out of the (memory-mapped) inputs in the model's device and dtype:
    a model that writes to its input never writes to the data."""
    dev, dt = model_dtype(like)
    for i in range(0, data.shape[0], size):
        yield data[i:i + size].to(dev, dt, copy=True)


def _run(model: nn.Module, x: torch.Tensor, what: str) -> Any:
    try:
        return model(x)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{what}: inputs of shape {tuple(x.shape[1:])} do not fit the model: "
                         f"{type(e).__name__}: {first}") from e


def _survey(original: nn.Module, converted: nn.Module, names: list[str], data: torch.Tensor,
            what: str) -> footprint.Survey:
    """One input through the converted model: the layers' order and what a batch costs."""
    dev, dt = model_dtype(converted)
    return footprint.survey(original, converted, names, data[:1].to(dev, dt, copy=True),
                            lambda x: _run(converted, x, what))


def _check_memory(s: footprint.Survey, kind: footprint.Kind, n: int, batch: int,
                  **how: Any) -> int | None:
    """Refuse (exit 2) a run that would not fit in the free memory; return what is free."""
    free = free_memory()
    footprint.check(footprint.estimate(s, kind, n, **how), batch, free, "--calibration-batch")
    return free


def _flat(t: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N*H*W, C) in float64."""
    return t.double().movedim(1, -1).reshape(-1, t.shape[1])


def refit(original: nn.Module, converted: nn.Module, names: list[str], data: torch.Tensor,
          batch: int = 32, advance: Callable[[str], None] | None = None,
          refine_steps: int = 0, resume_budget: int | None = None
          ) -> dict[str, dict[str, Any]]:
    """Refit each converted layer in forward order: its pointwise conv (and bias), then
    ``refine_steps`` times the depthwise conv and the pointwise again. Returns, per layer,
    the relative output error on the calibration inputs before (``svd``) and after
    (``calibrated``), and the refine steps taken. The passes resume the converted model's
    Sequentials where the previous pass left them (:mod:`.resume`), in at most
    ``resume_budget`` bytes (None: a share of the memory left free)."""
    original.eval()
    converted.eval()
    out: dict[str, dict[str, Any]] = {}
    with _channels_last(original, data), _channels_last(converted, data):
        s = _survey(original, converted, names, data, "--calibration-data")
        n = int(data.shape[0])
        free = _check_memory(s, "calibration", n, batch, refine_steps=refine_steps)
        job = _Job(original, converted, data, batch)
        cached = footprint.estimate(s, "calibration", n, refine_steps, cached_targets=True)
        if cached.needed(batch) <= (free or 2 * footprint.targets_bytes(s, n)) * CACHE_SHARE:
            job.targets = _targets(original, s.order, data, batch)
        dev = model_dtype(converted)[0]
        if resume_budget is None:  # what is left free after the estimate, in part
            needed = footprint.estimate(s, "calibration", n, refine_steps,
                                        cached_targets=job.targets is not None).needed(batch)
            resume_budget = resume.budget(free, needed, dev)
        with resume.sequential_cache(converted, resume_budget, dev) as job.cache:
            for name in s.order:
                _refit_layer(job, name, refine_steps, out)
                if advance:
                    advance(name)
    return out


#: inputs a layer's refit error is estimated on, for choosing its multiplier
CHOICE_INPUTS = 32


def refit_errors(original: nn.Module, layers: dict[str, list[int]], data: torch.Tensor,
                 batch: int = 32) -> dict[tuple[str, int], float]:
    """For choosing multipliers (``--target-latency`` with ``--calibration-data``): each
    layer's relative output error at each multiplier in ``layers`` after the pointwise
    refit, on its own input in the original network (the first :data:`CHOICE_INPUTS`
    calibration inputs). The refit is the one :func:`refit` runs (:func:`_refit_pointwise`),
    on the layer alone: what the layer can keep, before errors from earlier layers."""
    from collections import OrderedDict

    from .convert import make_pair

    original.eval()
    sub = data[:CHOICE_INPUTS]
    out: dict[tuple[str, int], float] = {}
    with _channels_last(original, sub):
        for name, ms in layers.items():
            conv = original.get_submodule(name)
            assert isinstance(conv, nn.Conv2d)
            xs: list[torch.Tensor] = []
            for xb in _batches(sub, batch, original):
                _until(original, conv, xs, xb, pre=True)
            x = torch.cat(xs).contiguous()
            alone = nn.Sequential(OrderedDict(layer=conv))
            for m in ms:
                pair = make_pair(conv, m, "svd")
                job = _Job(alone, nn.Sequential(OrderedDict(layer=pair)), x, batch)
                out[(name, m)] = _refit_pointwise(job, "layer", pair)[1]
    return out


#: the original layers' outputs are kept for all inputs when that leaves half the free
#: memory: one original forward per batch instead of one per layer and batch
CACHE_SHARE = 0.5


@dataclass
class _Job:
    """One calibration run: the models, the inputs, the batch size and, when they fit in
    memory, every layer's output in the original network (by layer, then batch index)."""

    original: nn.Module
    converted: nn.Module
    data: torch.Tensor
    batch: int
    targets: dict[str, dict[int, torch.Tensor]] | None = None
    #: the converted model's Sequentials resumed where the previous pass left them
    cache: resume.SequentialCache | None = None


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


def _refit_layer(job: _Job, name: str, refine_steps: int,
                 out: dict[str, dict[str, Any]]) -> None:
    pair = job.converted.get_submodule(name)
    assert isinstance(pair, nn.Sequential)
    first, err = _refit_pointwise(job, name, pair)
    row: dict[str, Any] = {"svd": round(first, 6), "calibrated": round(err, 6)}
    steps = 0
    for _ in range(refine_steps):
        if not _refit_depthwise(job, name, pair):
            row["refine_note"] = ("depthwise refit skipped: too many unknowns, or "
                                  "padding other than zeros")
            break
        _, err = _refit_pointwise(job, name, pair)
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
    _forward_until_stop(model, xb, [h])


def _forward_until_stop(model: nn.Module, xb: torch.Tensor, hooks: list[Any]) -> None:
    """One calibration forward (channels_last for images) that a hook may end early with
    :class:`_Stop`; the hooks are removed after, whatever happened. ``no_grad``, not
    ``inference_mode``: the resume cache reads version counters to see in-place writes."""
    try:
        with torch.no_grad():
            _run(model, xb.contiguous(memory_format=torch.channels_last)
                 if xb.ndim == 4 else xb, "--calibration-data")
    except _Stop:
        pass
    finally:
        for h in hooks:
            h.remove()


def _targets(original: nn.Module, order: list[str], data: torch.Tensor,
             batch: int) -> dict[str, dict[int, torch.Tensor]]:
    """Every layer's output in the original network, for every batch, from one forward per
    batch that stops after the last of them. Kept as copies: an in-place op after a layer
    (``ReLU(inplace=True)``) must not change what was kept."""
    store: dict[str, dict[int, torch.Tensor]] = {n: {} for n in order}
    for bi, xb in enumerate(_batches(data, batch, original)):
        got: set[str] = set()

        def grab(n: str, bi: int = bi, got: set[str] = got) -> Any:
            def hook(m: nn.Module, a: Any, out: torch.Tensor) -> None:
                if n not in got:
                    got.add(n)
                    store[n][bi] = out.detach().clone()
                    if len(got) == len(order):
                        raise _Stop
            return hook

        _forward_until_stop(original, xb, [original.get_submodule(n).register_forward_hook(
            grab(n)) for n in order])
    return store


def _pairs(job: _Job, name: str, inner: nn.Module, pre: bool = False
           ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """For each batch: (the original layer's output, and in the converted network the
    depthwise conv's output, or with ``pre`` its input). Each forward stops at the layer;
    a conv used at two places is refitted on its first call."""
    conv = job.original.get_submodule(name)
    for bi, xb in enumerate(_batches(job.data, job.batch, job.original)):
        ys: list[torch.Tensor] = []
        zs: list[torch.Tensor] = []
        if job.targets is None:
            _until(job.original, conv, ys, xb)
        elif bi in job.targets[name]:
            ys.append(job.targets[name][bi])
        with job.cache.batch(bi) if job.cache else contextlib.nullcontext():
            _until(job.converted, inner, zs, xb, pre)
        yield from zip(ys, zs, strict=True)


def _refit_pointwise(job: _Job, name: str, pair: nn.Sequential) -> tuple[float, float]:
    """Ridge least squares for the pointwise weights (and bias) given the depthwise conv;
    block by block for a grouped pointwise. Returns the relative error before and after."""
    dw, pw = pair[0], pair[1]
    assert isinstance(dw, nn.Conv2d) and isinstance(pw, nn.Conv2d)
    k, cout, bias = dw.out_channels, pw.out_channels, pw.bias is not None
    dim = k + int(bias)
    a = torch.zeros(dim, dim, dtype=torch.float64)
    b = torch.zeros(dim, cout, dtype=torch.float64)
    yy = 0.0
    for y, z in _pairs(job, name, dw):
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
MAX_DEPTHWISE_UNKNOWNS = footprint.MAX_DEPTHWISE_UNKNOWNS


def _refit_depthwise(job: _Job, name: str, pair: nn.Sequential) -> bool:
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
    for y, x in _pairs(job, name, pair, pre=True):
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


def fidelity(original: nn.Module, converted: nn.Module, data: torch.Tensor,
             on: Literal["eval", "calibration"], batch: int = 32) -> Fidelity:
    """Whole-model relative output error and top-1 agreement (for (N, classes) outputs).
    A row with a non-finite output never agrees; the original's most frequent class's
    share says whether agreement means anything (at 90% or more it does not)."""
    original.eval()
    converted.eval()
    _check_memory(_survey(original, converted, [], data, f"--{on}-data"), "fidelity",
                  int(data.shape[0]), batch)
    agree = total = 0
    classes: collections.Counter[int] = collections.Counter()
    diff_sq = ref_sq = 0.0
    for xb in _batches(data, batch, original):
        with torch.inference_mode():
            y0 = _first(_run(original, xb, f"--{on}-data")).double()
            y1 = _first(_run(converted, xb, f"--{on}-data")).double()
        diff_sq += float(((y1 - y0) ** 2).sum())
        ref_sq += float((y0 ** 2).sum())
        if y0.ndim == 2 and y0.shape[1] > 1:
            ok = torch.isfinite(y0).all(1) & torch.isfinite(y1).all(1)
            agree += int(((y0.argmax(1) == y1.argmax(1)) & ok).sum())
            classes.update(y0.argmax(1).tolist())
            total += y0.shape[0]
    share = round(classes.most_common(1)[0][1] / total, 6) if total else None
    return Fidelity(round(agree / total, 6) if total else None,
                    round(math.sqrt(diff_sq / ref_sq), 6) if ref_sq else 0.0, on,
                    int(data.shape[0]), majority_class_share=share,
                    agreement_meaningful=None if share is None else share < 0.9)


def _first(y: Any) -> torch.Tensor:
    if isinstance(y, torch.Tensor):
        return y
    items = y.values() if isinstance(y, dict) else y
    return next(t for t in items if isinstance(t, torch.Tensor))


# ------------------------------------------------------------------------- distillation

#: Adam's learning rate for distillation (warmed up over a tenth of the steps, then
#: cosine-decayed to zero)
DISTILL_LR = 3e-3
#: the teacher's outputs are kept for all inputs up to this many bytes (they give the
#: error before and after; training steps see new, mixed inputs)
TEACHER_CACHE = 256 << 20
#: the weight of the converted layers' mean relative squared error in the loss
FEATURES = 1.0
#: the share of each training batch mixed with other inputs (mixup); the rest as given
MIXED = 0.5
#: a classifier's inputs near a decision boundary weigh up to 1 + this in the output term
BOUNDARY_WEIGHT = 4.0
#: "near": a top-2 logit margin small against this share of the batch's median margin
BOUNDARY_SCALE = 0.2
#: the weight of a classifier's logit KL divergence (at TEMPERATURE, times its square)
#: beside the relative squared output error; 0: off. On real digits (benchmarks/
#: fidelity.py) it took the disagreements of 300 steps from 4 of 594 to 1
LOGIT_KL = 1.0
TEMPERATURE = 4.0


def distill(original: nn.Module, converted: nn.Module, names: list[str], data: torch.Tensor,
            steps: int, batch: int = 32, lr: float = DISTILL_LR, seed: int = 0,
            points: int = 8, advance: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train the converted layers' weights (Adam, ``lr`` cosine-decayed) so the converted
    model matches the original on ``data`` (no labels). Each step draws a random batch and
    mixes half its inputs with others of the batch (mixup: ``l·x + (1-l)·x'``, ``l``
    uniform), so training sees far more points than the N given and does not just learn
    those N; its loss is the relative squared output error ||y' - y||² / ||y||² (for a
    classifier, inputs near a decision boundary weigh more: :func:`_output_loss`, and
    ``LOGIT_KL`` times the logits' KL divergence at ``TEMPERATURE``: :func:`_logit_kl`) plus
    ``FEATURES`` times the mean of the same error at each converted layer's output (every
    layer is held to its original, not only the last one). Everything else stays frozen
    and in eval mode (batch norm keeps its statistics). The relative output error on all
    of ``data`` (unmixed) is measured before and after: when training did not lower it,
    the weights it started from are put back. fp16/bf16 models train in float32. Returns
    the loss curve (``points`` means over equal spans of steps), the errors and the time;
    ``advance`` is called after each step."""
    import time

    t0 = time.perf_counter()
    original.eval()
    converted.eval()
    n = int(data.shape[0])
    with _float32(original), _float32(converted), _trainable(converted, names) as params:
        s = _survey(original, converted, names, data, "--calibration-data")
        cache = n * s.output * s.elem <= TEACHER_CACHE
        _check_memory(s, "distillation", n, batch, cached_teacher=cache)
        teacher = _teacher(original, data, batch) if cache else None
        before = _distill_error(original, converted, data, batch, teacher)
        start = [p.detach().clone() for p in params]
        curve = _train(original, converted, names, params, data,
                       _Schedule(steps, min(batch, n), lr, seed, points), advance)
        after = _distill_error(original, converted, data, batch, teacher)
        kept = after < before
        if not kept:
            with torch.no_grad():
                for p, p0 in zip(params, start, strict=True):
                    p.copy_(p0)
    return {"steps": steps, "batch": min(batch, n), "lr": lr, "loss": curve,
            "rel_output_error_before": round(before, 6),
            "rel_output_error_after": round(after if kept else before, 6),
            "kept": kept, "seconds": round(time.perf_counter() - t0, 4)}


@dataclass(frozen=True)
class _Schedule:
    steps: int
    batch: int
    lr: float
    seed: int
    points: int


def _train(original: nn.Module, converted: nn.Module, names: list[str],
           params: list[nn.Parameter], data: torch.Tensor, sch: _Schedule,
           advance: Callable[[str], None] | None) -> list[list[float]]:
    """The training loop; returns [step, mean loss over the span ending there] pairs."""
    opt = torch.optim.Adam(params, lr=sch.lr)
    warm = max(1, sch.steps // 10)  # a linear warm-up, then a cosine decay to zero
    lr_at = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / warm) * 0.5
                                              * (1 + math.cos(math.pi * i / sch.steps)))
    g = torch.Generator().manual_seed(sch.seed)
    span = max(1, math.ceil(sch.steps / max(1, sch.points)))
    curve: list[list[float]] = []
    acc, k = 0.0, 0
    for step in range(1, sch.steps + 1):
        xb = _mixed_batch(data, sch.batch, g, converted)
        with _layer_outputs(original, names) as f0, torch.no_grad():
            y0 = _first(_run(original, xb, "--calibration-data")).float()
        with _layer_outputs(converted, names) as f1:
            y1 = _first(_run(converted, xb, "--calibration-data")).float()
        loss = _output_loss(y1, y0)
        kl = _logit_kl(y1, y0, TEMPERATURE) if LOGIT_KL else None
        if kl is not None:
            loss = loss + LOGIT_KL * kl
        if FEATURES and f0 and len(f0) == len(f1):  # the same calls in both forwards
            per_layer = [_rel_sq(b, a) for a, b in zip(f0, f1, strict=True)
                         if bool(a.any())]  # a layer whose output is all zeros: no scale
            if per_layer:
                loss = loss + FEATURES * sum(per_layer) / len(per_layer)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lr_at.step()
        acc, k = acc + float(loss.detach()), k + 1
        if advance:
            advance(f"step {step}")
        if step % span == 0 or step == sch.steps:
            curve.append([step, round(acc / k, 6)])
            acc, k = 0.0, 0
    return curve


def _mixed_batch(data: torch.Tensor, size: int, g: torch.Generator,
                 like: nn.Module) -> torch.Tensor:
    """``size`` random inputs of ``data`` (in ``like``'s device and dtype), each one with
    even odds mixed with another of them: ``l·x + (1-l)·x'``, ``l`` uniform in [0, 1)."""
    dev, dt = model_dtype(like)
    idx = torch.randperm(int(data.shape[0]), generator=g)[:size].sort().values
    xb = data[idx].to(dev, torch.float32, copy=True)
    lam = torch.rand(len(xb), generator=g)
    lam = torch.where(torch.rand(len(xb), generator=g) < MIXED, lam, torch.ones_like(lam))
    lam = lam.view(-1, *[1] * (xb.ndim - 1)).to(dev)
    other = torch.randperm(len(xb), generator=g).to(dev)
    return (lam * xb + (1 - lam) * xb[other]).to(dt)


def _output_loss(y: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """The relative squared output error; for a classifier's (N, classes) outputs, each
    input weighted by how close the original puts it to a decision boundary:
    ``1 + BOUNDARY_WEIGHT · exp(-margin / (BOUNDARY_SCALE · median margin))``, the margin
    being its top-1 minus its top-2 logit. There a small error flips the top-1 class;
    far from a boundary it does not."""
    if ref.ndim != 2 or ref.shape[1] < 2:
        return _rel_sq(y, ref)
    y, ref = y.float(), ref.float()
    top = ref.detach().topk(2, 1).values
    margin = top[:, 0] - top[:, 1]
    scale = (BOUNDARY_SCALE * margin.median()).clamp_min(1e-12)
    w = 1 + BOUNDARY_WEIGHT * torch.exp(-margin / scale)
    return (w * ((y - ref) ** 2).sum(1)).sum() / (w * (ref ** 2).sum(1)).sum().clamp_min(1e-30)


def _logit_kl(y: torch.Tensor, ref: torch.Tensor, t: float) -> torch.Tensor | None:
    """For a classifier's (N, classes) outputs, ``t² · KL(softmax(ref/t) ‖ softmax(y/t))``
    averaged over the inputs (Hinton et al.'s distillation term: it weighs what decides the
    top-1 class, the logits' differences, not their common offset); None otherwise."""
    if ref.ndim != 2 or ref.shape[1] < 2:
        return None
    logp = nn.functional.log_softmax(y.float() / t, 1)
    logq = nn.functional.log_softmax(ref.float().detach() / t, 1)
    return t * t * (logq.exp() * (logq - logp)).sum(1).mean()


def _rel_sq(y: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """||y - ref||² / ||ref||² (float32)."""
    y, ref = y.float(), ref.float()
    return ((y - ref) ** 2).sum() / (ref ** 2).sum().clamp_min(1e-30)


@contextlib.contextmanager
def _layer_outputs(model: nn.Module, names: list[str]) -> Iterator[list[torch.Tensor]]:
    """The outputs of ``model``'s layers ``names`` in the order the forward makes them,
    copied (a ``ReLU(inplace=True)`` after a layer must not change what is compared)."""
    got: list[torch.Tensor] = []

    def keep(m: nn.Module, a: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            got.append(out.clone())

    hooks = [model.get_submodule(n).register_forward_hook(keep) for n in names]
    try:
        yield got
    finally:
        for h in hooks:
            h.remove()


def _teacher(original: nn.Module, data: torch.Tensor, batch: int) -> torch.Tensor:
    """The original model's outputs for all of ``data`` (float32)."""
    with torch.no_grad():
        return torch.cat([_first(_run(original, xb, "--calibration-data")).float()
                          for xb in _batches(data, batch, original)])


def _distill_error(original: nn.Module, converted: nn.Module, data: torch.Tensor,
                   batch: int, teacher: torch.Tensor | None) -> float:
    """||y' - y|| / ||y|| over all of ``data``."""
    diff = ref = 0.0
    at = 0
    with torch.no_grad():
        for xb in _batches(data, batch, converted):
            y0 = (teacher[at:at + len(xb)] if teacher is not None
                  else _first(_run(original, xb, "--calibration-data")).float())
            y1 = _first(_run(converted, xb, "--calibration-data")).float()
            at += len(xb)
            diff += float(((y1 - y0) ** 2).sum())
            ref += float((y0 ** 2).sum())
    return math.sqrt(diff / ref) if ref > 0 else 0.0


@contextlib.contextmanager
def _float32(model: nn.Module) -> Iterator[None]:
    """fp16/bf16 weights train badly (an Adam step is below their precision): float32
    while distilling, each tensor's own dtype back afterwards."""
    low = [t for t in (*model.parameters(), *model.buffers())
           if t.dtype in (torch.float16, torch.bfloat16)]
    dtypes = [t.dtype for t in low]
    for t in low:
        t.data = t.data.float()
    try:
        yield
    finally:
        for t, dt in zip(low, dtypes, strict=True):
            t.data = t.data.to(dt)


@contextlib.contextmanager
def _trainable(model: nn.Module, names: list[str]) -> Iterator[list[nn.Parameter]]:
    """Only the converted layers' parameters require gradients (flags restored after)."""
    flags = {p: p.requires_grad for p in model.parameters()}
    chosen: dict[int, nn.Parameter] = {}
    for n in names:
        for p in model.get_submodule(n).parameters():
            chosen.setdefault(id(p), p)
    try:
        for p in flags:
            p.requires_grad_(id(p) in chosen)
        yield list(chosen.values())
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
