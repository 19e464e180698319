"""Layer specifications: frozen dataclasses of plain ints (stdlib only).

A spec describes one layer or block the way PyTorch would build it; ``dsconv_cli.cost``
prices it and ``dsconv_cli.torch_backend.build`` builds it. Every 2-D quantity is an
``(h, w)`` pair, so non-square kernels, strides, paddings and dilations work everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Union

__all__ = [
    "ACTIVATIONS",
    "ConvSpec",
    "ECASpec",
    "InvertedResidualSpec",
    "LinearSpec",
    "Padding",
    "Pair",
    "PoolSpec",
    "SeparableSpec",
    "Spec",
    "SqueezeExciteSpec",
    "default_padding",
    "eca_kernel",
    "make_divisible",
]

Pair = tuple[int, int]
Padding = Union[Pair, Literal["same"]]

#: activations a block may use (names as on the command line)
ACTIVATIONS = ("relu", "relu6", "hswish", "silu")


def default_padding(kernel: Pair, dilation: Pair) -> Pair:
    """The usual "keep the size at stride 1" padding: ``d*(K-1)//2`` per dimension."""
    return (dilation[0] * (kernel[0] - 1) // 2, dilation[1] * (kernel[1] - 1) // 2)


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor``, never dropping more than 10%.

    The reference implementations' rule (MobileNetV2/V3, EfficientNet).
    """
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def eca_kernel(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA's adaptive kernel size: ``t = int(|(log2 C + b) / gamma|)``, made odd upwards."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


@dataclass(frozen=True)
class ConvSpec:
    """One ``nn.Conv2d`` (optionally followed by BatchNorm and an activation).

    Depthwise is ``groups == in_channels``; pointwise is a 1x1 kernel.
    """

    in_channels: int
    out_channels: int
    kernel: Pair = (3, 3)
    stride: Pair = (1, 1)
    padding: Padding = (1, 1)
    dilation: Pair = (1, 1)
    groups: int = 1
    bias: bool = False
    bn: bool = False
    activation: str | None = None

    kind = "conv"

    @property
    def role(self) -> str:
        if self.groups == self.in_channels and self.groups > 1:
            return "depthwise"
        if self.kernel == (1, 1):
            return "pointwise"
        return "conv" if self.groups == 1 else "grouped conv"


@dataclass(frozen=True)
class SeparableSpec:
    """Depthwise KxK conv (``in -> in*m``, groups=in) then pointwise 1x1 (``in*m -> out``).

    MobileNetV1's block when BN and ReLU follow each part. Defaults: no bias, no BN, no
    activation, so params/MACs over a plain conv are exactly ``m/Cout + m/(Kh*Kw)``.
    The depthwise conv never has a bias; ``bias`` is the pointwise conv's.
    """

    in_channels: int
    out_channels: int
    kernel: Pair = (3, 3)
    stride: Pair = (1, 1)
    padding: Padding = (1, 1)
    dilation: Pair = (1, 1)
    depth_multiplier: int = 1
    bias: bool = False
    dw_bn: bool = False
    dw_activation: str | None = None
    pw_bn: bool = False
    pw_activation: str | None = None
    #: groups of the pointwise conv: a grouped conv (ResNeXt, RegNet) converted per group
    #: keeps its groups there
    pw_groups: int = 1

    kind = "separable"

    @property
    def parts(self) -> tuple[tuple[str, ConvSpec], ...]:
        mid = self.in_channels * self.depth_multiplier
        dw = ConvSpec(
            self.in_channels, mid, self.kernel, self.stride, self.padding, self.dilation,
            groups=self.in_channels, bias=False, bn=self.dw_bn, activation=self.dw_activation,
        )
        pw = ConvSpec(
            mid, self.out_channels, (1, 1), (1, 1), (0, 0), (1, 1), groups=self.pw_groups,
            bias=self.bias, bn=self.pw_bn, activation=self.pw_activation,
        )
        return (("depthwise", dw), ("pointwise", pw))


@dataclass(frozen=True)
class SqueezeExciteSpec:
    """Squeeze-excitation: global pool, 1x1 conv C->S (bias), act, 1x1 conv S->C (bias),
    gate, channel-wise scale (torchvision's ``SqueezeExcitation`` layout)."""

    channels: int
    squeeze_channels: int
    activation: str = "relu"
    gate: str = "sigmoid"

    kind = "se"


@dataclass(frozen=True)
class ECASpec:
    """Efficient channel attention: global pool, Conv1d(1, 1, k, bias=False) across
    channels, sigmoid, channel-wise scale."""

    channels: int
    kernel_size: int

    kind = "eca"


@dataclass(frozen=True)
class InvertedResidualSpec:
    """MobileNetV2 inverted residual, and with SE / other activations the MBConv / V3 block.

    1x1 expand (omitted when ``expanded_channels == in_channels``) + BN + act, KxK
    depthwise + BN + act, optional squeeze-excitation, 1x1 project + BN (linear), and a
    residual add when stride is 1 and ``in == out``. ``se_channels == 0`` means no SE.
    """

    in_channels: int
    out_channels: int
    expanded_channels: int
    kernel: Pair = (3, 3)
    stride: Pair = (1, 1)
    dilation: Pair = (1, 1)
    activation: str = "relu6"
    se_channels: int = 0
    se_activation: str = "relu"
    se_gate: str = "hsigmoid"

    @property
    def kind(self) -> str:
        plain = self.se_channels == 0 and self.activation == "relu6"
        return "inverted-residual" if plain else "mbconv"

    @property
    def residual(self) -> bool:
        return self.stride == (1, 1) and self.in_channels == self.out_channels

    @property
    def parts(self) -> tuple[tuple[str, ConvSpec | SqueezeExciteSpec], ...]:
        e = self.expanded_channels
        out: list[tuple[str, ConvSpec | SqueezeExciteSpec]] = []
        if e != self.in_channels:
            out.append(("expand", ConvSpec(self.in_channels, e, (1, 1), padding=(0, 0),
                                           bn=True, activation=self.activation)))
        out.append(("depthwise", ConvSpec(
            e, e, self.kernel, self.stride, default_padding(self.kernel, self.dilation),
            self.dilation, groups=e, bn=True, activation=self.activation)))
        if self.se_channels:
            out.append(("se", SqueezeExciteSpec(e, self.se_channels, self.se_activation,
                                                self.se_gate)))
        out.append(("project", ConvSpec(e, self.out_channels, (1, 1), padding=(0, 0),
                                        bn=True)))
        return tuple(out)


@dataclass(frozen=True)
class LinearSpec:
    """``nn.Linear`` on the flattened input (the classifier of a network)."""

    in_features: int
    out_features: int
    bias: bool = True
    activation: str | None = None

    kind = "linear"


@dataclass(frozen=True)
class PoolSpec:
    """Global average pooling to 1x1 (then flatten when ``flatten``)."""

    flatten: bool = False

    kind = "pool"


Spec = Union[
    ConvSpec, SeparableSpec, SqueezeExciteSpec, ECASpec, InvertedResidualSpec, LinearSpec,
    PoolSpec,
]
