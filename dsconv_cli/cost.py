"""The analytic cost engine (stdlib only).

Counting rules (the MobileNet/EfficientNet papers', fvcore's, thop's, and
``FlopCounterMode``'s, which reports 2 x MACs):

* **MACs** are the multiply-accumulates of convolutions and linear layers. Bias adds are
  not MACs.
* **FLOPs = 2 x MACs** (:func:`flops`, the only place this is defined).
* **Elementwise ops** count the rest, one op per element per step: bias add, activation,
  gate, scale, pooling add, residual add; BatchNorm counts 2 (scale and shift).
* **Params** are every learnable tensor the block owns in PyTorch (weights, biases,
  BatchNorm affine).
* Counts are per forward of the whole batch.
* **Memory traffic** is the inference view: BatchNorm folded into its conv, activations
  fused; each conv reads its input and weights and writes its output once; a DS pair
  writes and reads its intermediate; a residual add reads two operands and writes one;
  SE/ECA read the input to pool, then read it again and write the scaled output.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import FieldError
from .specs import (
    ConvSpec,
    ECASpec,
    InvertedResidualSpec,
    LinearSpec,
    PoolSpec,
    SeparableSpec,
    Spec,
    SqueezeExciteSpec,
)

__all__ = [
    "DTYPE_BYTES",
    "Cost",
    "closed_form_ratio",
    "cost",
    "cost_sequence",
    "flops",
    "out_size",
]

Shape = tuple[int, ...]

DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}

def flops(macs: int) -> int:
    """FLOPs from MACs: one multiply-accumulate is two floating-point operations."""
    return 2 * macs


def out_size(n: int, k: int, s: int, pad_total: int, d: int) -> int:
    """PyTorch's output length: ``floor((n + pad_total - d*(k-1) - 1)/s) + 1``."""
    return (n + pad_total - d * (k - 1) - 1) // s + 1


@dataclass(frozen=True)
class Cost:
    """What one layer or block costs for one forward of the batch."""

    kind: str
    params: int
    macs: int
    input_shape: Shape
    output_shape: Shape
    bytes: int
    elementwise: int
    peak_activation_elems: int
    dtype_bytes: int
    parts: tuple[tuple[str, Cost], ...] = ()

    @property
    def flops(self) -> int:
        return flops(self.macs)

    @property
    def activation_elems(self) -> int:
        return math.prod(self.output_shape)

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOPs per byte moved."""
        return self.flops / self.bytes if self.bytes else 0.0

    @property
    def memory_bytes(self) -> int:
        """Weights plus the largest set of activations alive at once."""
        return (self.params + self.peak_activation_elems) * self.dtype_bytes

    def part(self, name: str) -> Cost:
        return dict(self.parts)[name]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": self.kind,
            "params": self.params,
            "macs": self.macs,
            "flops": self.flops,
            "bytes": self.bytes,
            "elementwise_ops": self.elementwise,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "activation_elems": self.activation_elems,
            "memory_bytes": self.memory_bytes,
            "arithmetic_intensity": round(self.intensity, 4),
        }
        if self.parts:
            d["parts"] = {name: c.to_dict() for name, c in self.parts}
        return d


def _combine(kind: str, parts: Sequence[tuple[str, Cost]], extra_elementwise: int = 0,
             extra_elems_moved: int = 0, keep_input: bool = False) -> Cost:
    first, last = parts[0][1], parts[-1][1]
    e = first.dtype_bytes
    in_elems = math.prod(first.input_shape)
    peak = max(c.peak_activation_elems + (in_elems if keep_input and i else 0)
               for i, (_, c) in enumerate(parts))
    return Cost(
        kind=kind,
        params=sum(c.params for _, c in parts),
        macs=sum(c.macs for _, c in parts),
        input_shape=first.input_shape,
        output_shape=last.output_shape,
        bytes=sum(c.bytes for _, c in parts) + extra_elems_moved * e,
        elementwise=sum(c.elementwise for _, c in parts) + extra_elementwise,
        peak_activation_elems=peak,
        dtype_bytes=e,
        parts=tuple(parts),
    )


def _nchw(shape: Shape, channels: int, what: str) -> tuple[int, int, int, int]:
    if len(shape) != 4:
        raise FieldError("hw", f"{what} needs an NCHW input, got shape {list(shape)}")
    b, c, h, w = shape
    if c != channels:
        raise FieldError("in", f"{what} expects {channels} input channels, got {c}")
    return b, c, h, w


def _conv(spec: ConvSpec, shape: Shape, e: int) -> Cost:
    b, c, h, w = _nchw(shape, spec.in_channels, "conv")
    kh, kw = spec.kernel
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    if spec.padding == "same":
        if (sh, sw) != (1, 1):
            raise FieldError("padding", f"'same' needs stride 1 (as in PyTorch), got stride "
                             f"{sh}x{sw}")
        ph, pw = dh * (kh - 1), dw * (kw - 1)
    else:
        ph, pw = 2 * spec.padding[0], 2 * spec.padding[1]
    oh, ow = out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw)
    if oh <= 0 or ow <= 0:
        raise FieldError(
            "hw", f"output size would be {oh}x{ow}: input {h}x{w} is smaller than the "
            f"dilated kernel {dh * (kh - 1) + 1}x{dw * (kw - 1) + 1} plus padding")
    weight = spec.out_channels * (spec.in_channels // spec.groups) * kh * kw
    out_elems = b * spec.out_channels * oh * ow
    in_elems = b * c * h * w
    params = weight + spec.out_channels * (spec.bias + 2 * spec.bn)
    folded_bias = spec.out_channels if (spec.bias or spec.bn) else 0
    elementwise = out_elems * (spec.bias + 2 * spec.bn + (spec.activation is not None))
    return Cost(
        kind=spec.role, params=params, macs=weight * oh * ow * b,
        input_shape=shape, output_shape=(b, spec.out_channels, oh, ow),
        bytes=(in_elems + weight + folded_bias + out_elems) * e,
        elementwise=elementwise, peak_activation_elems=in_elems + out_elems, dtype_bytes=e,
    )


def _attention(kind: str, shape: Shape, channels: int, params: int, macs: int,
               inner_elementwise: int, e: int) -> Cost:
    b, c, h, w = _nchw(shape, channels, kind)
    elems = b * c * h * w
    return Cost(
        kind=kind, params=params, macs=macs, input_shape=shape, output_shape=shape,
        # pool reads x; scale reads x again and writes y
        bytes=(3 * elems + params) * e,
        # pool adds + gate + scale multiplies, plus what happens on the pooled vector
        elementwise=elems + b * c + elems + inner_elementwise,
        peak_activation_elems=2 * elems, dtype_bytes=e,
    )


def _se(spec: SqueezeExciteSpec, shape: Shape, e: int) -> Cost:
    c, s = spec.channels, spec.squeeze_channels
    b = shape[0]
    return _attention("se", shape, c, params=2 * c * s + s + c, macs=b * 2 * c * s,
                      inner_elementwise=b * (s + c + s), e=e)  # 2 bias adds + inner act


def _eca(spec: ECASpec, shape: Shape, e: int) -> Cost:
    b = shape[0]
    return _attention("eca", shape, spec.channels, params=spec.kernel_size,
                      macs=b * spec.channels * spec.kernel_size, inner_elementwise=0, e=e)


def _separable(spec: SeparableSpec, shape: Shape, e: int) -> Cost:
    parts: list[tuple[str, Cost]] = []
    for name, p in spec.parts:
        parts.append((name, _conv(p, parts[-1][1].output_shape if parts else shape, e)))
    return _combine("separable", parts)


def _inverted_residual(spec: InvertedResidualSpec, shape: Shape, e: int) -> Cost:
    parts: list[tuple[str, Cost]] = []
    for name, p in spec.parts:
        parts.append((name, cost(p, parts[-1][1].output_shape if parts else shape, e)))
    out = math.prod(parts[-1][1].output_shape)
    if spec.residual:
        return _combine(spec.kind, parts, extra_elementwise=out, extra_elems_moved=3 * out,
                        keep_input=True)
    return _combine(spec.kind, parts)


def _linear(spec: LinearSpec, shape: Shape, e: int) -> Cost:
    b, feats = shape[0], math.prod(shape[1:])
    if feats != spec.in_features:
        raise FieldError("in", f"linear expects {spec.in_features} features, got {feats}")
    params = spec.in_features * spec.out_features + spec.bias * spec.out_features
    out = b * spec.out_features
    return Cost(
        kind="linear", params=params, macs=b * spec.in_features * spec.out_features,
        input_shape=shape, output_shape=(b, spec.out_features),
        bytes=(b * feats + params + out) * e,
        elementwise=out * (spec.bias + (spec.activation is not None)),
        peak_activation_elems=b * feats + out, dtype_bytes=e,
    )


def _pool(spec: PoolSpec, shape: Shape, e: int) -> Cost:
    b, c = shape[0], shape[1]
    elems = math.prod(shape)
    out_shape: Shape = (b, c) if spec.flatten else (b, c, 1, 1)
    return Cost(kind="pool", params=0, macs=0, input_shape=shape, output_shape=out_shape,
                bytes=(elems + b * c) * e, elementwise=elems,
                peak_activation_elems=elems + b * c, dtype_bytes=e)


_COST_MODELS: dict[type, Callable[[Any, Shape, int], Cost]] = {
    ConvSpec: _conv,
    SeparableSpec: _separable,
    SqueezeExciteSpec: _se,
    ECASpec: _eca,
    InvertedResidualSpec: _inverted_residual,
    LinearSpec: _linear,
    PoolSpec: _pool,
}


def cost(spec: Spec, input_shape: Shape, dtype_bytes: int = 4) -> Cost:
    """Price ``spec`` on an NCHW ``input_shape`` (batch included)."""
    return _COST_MODELS[type(spec)](spec, tuple(input_shape), dtype_bytes)


def cost_sequence(layers: Sequence[tuple[str, Spec]], input_shape: Shape,
                  dtype_bytes: int = 4, kind: str = "network") -> Cost:
    """Price layers applied one after another (a network or a stage)."""
    parts: list[tuple[str, Cost]] = []
    shape = tuple(input_shape)
    for name, spec in layers:
        c = cost(spec, shape, dtype_bytes)
        parts.append((name, c))
        shape = c.output_shape
    return _combine(kind, parts)


def closed_form_ratio(standard: Spec, candidate: Spec) -> float | None:
    """Candidate/standard for params and MACs where a closed form holds, else ``None``.

    A separable pair against a plain dense conv (groups 1, no bias, no BN) of the same
    kernel is ``m/Cout + m/(Kh*Kw)``, whatever the stride.
    """
    if not (isinstance(candidate, SeparableSpec) and isinstance(standard, ConvSpec)):
        return None
    plain_std = standard.groups == 1 and not (standard.bias or standard.bn)
    plain_ds = not (candidate.bias or candidate.dw_bn or candidate.pw_bn)
    if not (plain_std and plain_ds and standard.kernel == candidate.kernel):
        return None
    m = candidate.depth_multiplier
    kh, kw = candidate.kernel
    return m / candidate.out_channels + m / (kh * kw)
