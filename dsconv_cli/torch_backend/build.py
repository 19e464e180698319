"""Spec -> ``nn.Module``. No counting here: the engine prices, this only builds."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from ..presets import Preset
from ..specs import (
    ConvSpec,
    ECASpec,
    InvertedResidualSpec,
    LinearSpec,
    PoolSpec,
    SeparableSpec,
    Spec,
    SqueezeExciteSpec,
)
from .modules import (
    DepthwiseSeparableConv,
    EfficientChannelAttention,
    InvertedResidual,
    SqueezeExcitation,
    activation,
)

__all__ = ["build", "build_preset", "build_sequence"]


def _conv(s: ConvSpec) -> nn.Module:
    conv = nn.Conv2d(s.in_channels, s.out_channels, s.kernel, s.stride, s.padding, s.dilation,
                     s.groups, s.bias)
    if not (s.bn or s.activation):
        return conv
    layers: list[nn.Module] = [conv]
    if s.bn:
        layers.append(nn.BatchNorm2d(s.out_channels))
    if s.activation:
        layers.append(activation(s.activation))
    return nn.Sequential(*layers)


def build(spec: Spec) -> nn.Module:
    """A freshly initialised module computing ``spec`` (train mode, fp32, CPU)."""
    if isinstance(spec, ConvSpec):
        return _conv(spec)
    if isinstance(spec, SeparableSpec):
        (_, dw), (_, pw) = spec.parts
        return DepthwiseSeparableConv(_conv(dw), _conv(pw))
    if isinstance(spec, InvertedResidualSpec):
        return InvertedResidual(OrderedDict((n, build(p)) for n, p in spec.parts),
                                spec.residual)
    if isinstance(spec, SqueezeExciteSpec):
        return SqueezeExcitation(spec.channels, spec.squeeze_channels, spec.activation,
                                 spec.gate)
    if isinstance(spec, ECASpec):
        return EfficientChannelAttention(spec.kernel_size)
    if isinstance(spec, LinearSpec):
        lin = nn.Linear(spec.in_features, spec.out_features, spec.bias)
        return nn.Sequential(lin, activation(spec.activation)) if spec.activation else lin
    if isinstance(spec, PoolSpec):
        pool = nn.AdaptiveAvgPool2d(1)
        return nn.Sequential(pool, nn.Flatten(1)) if spec.flatten else pool
    raise TypeError(f"no builder for {type(spec).__name__}")


def build_sequence(layers: Sequence[tuple[str, Spec]]) -> nn.Sequential:
    """Layers one after another; child names are the layer names with '.' -> '_'."""
    return nn.Sequential(OrderedDict((n.replace(".", "_"), build(s)) for n, s in layers))


def build_preset(preset: Preset) -> nn.Sequential:
    """A preset network as ``Sequential(stage -> Sequential(layer -> module))``, random init.

    State-dict keys look like ``stage1.block2.block.depthwise.0.weight``."""
    return nn.Sequential(OrderedDict(
        (st, build_sequence(preset.stage_layers(st))) for st in preset.stages))
