"""How much memory calibration, the fidelity check and distillation will need, known
before their first batched forward, and a run that would not fit refused with the batch
size that does.

A one-input forward of the converted model (:func:`survey`) measures what scales with the
batch: the input, the largest tensor any module outputs, all module outputs together (what
training keeps for the backward pass), the model's output, and per converted layer the
pair's input, the depthwise output, the layer's output and the depthwise patches matrix.
:func:`estimate` turns those sizes into bytes per input and bytes fixed (the normal
equations, cached targets, optimiser state) with the formulas below; :func:`check` compares
what is still to be allocated with the memory free now. The two model copies already exist
when it runs: they are in the reported peak, not in what must still fit. Calibration's
resume cache (:mod:`.resume`) is not in the estimate: it is only an optimisation, and its
budget is a share of what stays free after the estimate, so it never causes a refusal.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from ..errors import InputError

__all__ = ["MemoryEstimate", "Survey", "check", "estimate", "survey"]

#: a forward keeps a few tensors of the largest size alive at once (its input, its output,
#: a residual branch, a temporary): this many, counted generously
FORWARD_LIVE = 4
#: autograd keeps the module outputs and their gradients, plus functional temporaries
TRAIN_FACTOR = 3
#: the depthwise refit solves at most this many unknowns (see calibrate.py)
MAX_DEPTHWISE_UNKNOWNS = 4096

Kind = Literal["calibration", "fidelity", "distillation"]


@dataclass(frozen=True)
class LayerSizes:
    """Elements per input around one converted layer."""

    pair_in: int
    mid: int
    out: int
    #: the depthwise patches matrix (Cin·Kh·Kw x output pixels)
    patches: int
    #: unknowns of the pointwise and of the depthwise refit
    pointwise_unknowns: int
    depthwise_unknowns: int
    #: rows of the depthwise Gram matrix (Cin·Kh·Kw)
    gram: int
    #: output channels (columns of the pointwise solve)
    cout: int


@dataclass(frozen=True)
class Survey:
    """What one input costs, measured by a real forward of the converted model."""

    #: the converted layers in the order the forward calls them
    order: list[str]
    layers: dict[str, LayerSizes]
    input: int
    largest: int
    total: int
    output: int
    #: bytes per element of the model's dtype
    elem: int
    #: bytes of the two models' parameters and buffers (already in memory)
    models: int
    #: bytes of the converted layers' parameters (what an optimiser keeps state for)
    trained: int


def _numel(out: Any) -> int:
    if isinstance(out, torch.Tensor):
        return out.numel()
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return sum(_numel(o) for o in out)
    return 0


def _bytes(tensors: Iterable[torch.Tensor]) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        seen.setdefault(id(t), t.numel() * t.element_size())
    return sum(seen.values())


def survey(original: nn.Module, converted: nn.Module, names: list[str],
           x1: torch.Tensor, forward: Callable[[torch.Tensor], Any]) -> Survey:
    """Run ``forward`` (the converted model's, with its error handling) on one input
    (``x1``, already of the model's dtype) with hooks that measure every module's output
    and, for each layer of ``names`` (a depthwise + pointwise ``Sequential``), its sizes."""
    order: list[str] = []
    layers: dict[str, LayerSizes] = {}
    outs: list[int] = []
    leaves = [m for m in converted.modules() if not list(m.children())]

    def pair_hook(name: str) -> Any:
        def hook(m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            if name not in layers:
                order.append(name)
                layers[name] = _layer_sizes(m, args[0], out)
        return hook

    hooks = [m.register_forward_hook(lambda m, a, o: outs.append(_numel(o))) for m in leaves]
    hooks += [converted.get_submodule(n).register_forward_hook(pair_hook(n)) for n in names]
    try:
        with torch.inference_mode():
            y = forward(x1)
    finally:
        for h in hooks:
            h.remove()
    trained = _bytes(p for n in names for p in converted.get_submodule(n).parameters())
    models = sum(_bytes([*m.parameters(), *m.buffers()]) for m in (original, converted))
    return Survey(order + [n for n in names if n not in layers], layers, x1.numel(),
                  max(outs + [x1.numel()]), sum(outs), _numel(y), x1.element_size(),
                  models, trained)


def _layer_sizes(pair: nn.Module, x: torch.Tensor, out: torch.Tensor) -> LayerSizes:
    dw, pw = pair[0], pair[1]  # type: ignore[index]
    assert isinstance(dw, nn.Conv2d) and isinstance(pw, nn.Conv2d)
    taps = dw.kernel_size[0] * dw.kernel_size[1]
    pixels = out.shape[-2] * out.shape[-1]
    mid = dw.out_channels
    return LayerSizes(x.numel(), mid * pixels, out.numel(), dw.in_channels * taps * pixels,
                      mid + int(pw.bias is not None), mid * taps, dw.in_channels * taps,
                      pw.out_channels)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run will allocate: ``fixed`` plus ``per_input`` times the batch, on top of
    the ``models`` already loaded."""

    kind: Kind
    per_input: int
    fixed: int
    models: int
    parts: dict[str, int] = field(default_factory=dict)

    def needed(self, batch: int) -> int:
        return self.fixed + batch * self.per_input

    def peak(self, batch: int) -> int:
        return self.models + self.needed(batch)

    def batch_that_fits(self, free: int) -> int:
        """The largest batch whose allocations fit in ``free`` bytes (0: none does)."""
        return max(0, (free - self.fixed) // self.per_input) if self.per_input else 1 << 16


def estimate(s: Survey, kind: Kind, n: int, refine_steps: int = 0,
             cached_targets: bool = False, cached_teacher: bool = False) -> MemoryEstimate:
    """The memory ``kind`` needs over ``n`` inputs.

    Every kind copies a batch of inputs twice (the cast, the channels_last layout) and runs
    forwards whose live tensors are at most ``FORWARD_LIVE`` times the largest output.
    Calibration also keeps, per layer, the original's output and the depthwise output,
    their float64 flattened copies (the pointwise solve), and with ``refine_steps`` the
    float64 input, its patches matrix twice (unfold, then the transposed copy); fixed: the
    normal equations (two copies) and, for the depthwise refit, the Gram matrix and the
    system solved (three n x n). Cached targets are every layer's output for all inputs.
    Distillation keeps ``TRAIN_FACTOR`` times all module outputs, copies of the converted
    layers' outputs in both models (the loss holds each layer to its original), the
    teacher's outputs
    (cached: for all inputs), and Adam's two moments and the gradients of the trained
    weights (float32)."""
    e = s.elem
    base = 2 * s.input * e + FORWARD_LIVE * s.largest * e
    parts = {"inputs and forward": base}
    fixed = 0
    if kind == "calibration":
        per_layer = [la.out * e + la.mid * e + 8 * (2 * la.out + 2 * la.mid)
                     + (8 * (la.pair_in + 2 * la.patches + la.out + la.mid)
                        if refine_steps else 0) for la in s.layers.values()]
        parts["layer solve"] = max(per_layer, default=0)
        fixed = max((8 * (2 * la.pointwise_unknowns ** 2 + 2 * la.pointwise_unknowns * la.cout)
                     + (8 * (la.gram ** 2 + 3 * la.depthwise_unknowns ** 2)
                        if refine_steps and la.depthwise_unknowns <= MAX_DEPTHWISE_UNKNOWNS
                        else 0)
                     for la in s.layers.values()), default=0)
        if cached_targets:
            fixed += n * sum(la.out for la in s.layers.values()) * e
    elif kind == "fidelity":
        parts["outputs"] = 2 * 8 * s.output
    else:
        parts["backward"] = TRAIN_FACTOR * s.total * max(e, 4)
        parts["layer outputs"] = 2 * sum(la.out for la in s.layers.values()) * max(e, 4)
        fixed = 4 * s.trained * max(1, 4 // e) + (n * s.output * e if cached_teacher else 0)
    return MemoryEstimate(kind, sum(parts.values()), fixed, s.models, parts)


def targets_bytes(s: Survey, n: int) -> int:
    """Every converted layer's original output for all ``n`` inputs (the calibration
    cache that saves one original forward per layer)."""
    return n * sum(la.out for la in s.layers.values()) * s.elem


def _gb(b: int) -> str:
    return f"{b / 1e9:.2f} GB" if b >= 1e8 else f"{math.ceil(b / 1e6)} MB"


def check(est: MemoryEstimate, batch: int, free: int | None, option: str) -> None:
    """Refuse (exit 2) a run whose allocations would pass ``free`` bytes, saying the
    estimate and the batch size that fits; ``free`` None (unknown) lets it run."""
    if free is None or est.needed(batch) <= free:
        return
    fits = min(est.batch_that_fits(free), batch - 1)
    advice = (f"{option} {fits} fits" if fits >= 1 else
              f"not even {option} 1 fits: free some memory, or give fewer or smaller "
              "inputs")
    raise InputError(f"{option} {batch}: {est.kind} would need about {_gb(est.peak(batch))} "
                     f"at its peak ({_gb(est.per_input)} per input, {_gb(est.fixed)} fixed, "
                     f"{_gb(est.models)} in the two model copies) and "
                     f"{_gb(free)} is free; {advice}")
