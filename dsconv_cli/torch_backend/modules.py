"""The blocks, built from torch's own modules (``nn.Conv2d``, ``nn.BatchNorm2d``, ...)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

__all__ = [
    "ACTIVATION_MODULES",
    "DepthwiseSeparableConv",
    "EfficientChannelAttention",
    "InvertedResidual",
    "SqueezeExcitation",
    "activation",
]

ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hswish": nn.Hardswish,
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
    "hsigmoid": nn.Hardsigmoid,
}


def activation(name: str) -> nn.Module:
    return ACTIVATION_MODULES[name]()


class DepthwiseSeparableConv(nn.Sequential):
    """``depthwise`` then ``pointwise``, each an ``nn.Conv2d`` (with optional BN/act)."""

    def __init__(self, depthwise: nn.Module, pointwise: nn.Module) -> None:
        super().__init__(OrderedDict(depthwise=depthwise, pointwise=pointwise))


class InvertedResidual(nn.Module):
    """MobileNetV2 / MBConv block: ``block`` (expand, depthwise, [se], project) + skip."""

    def __init__(self, parts: OrderedDict[str, nn.Module], residual: bool) -> None:
        super().__init__()
        self.block = nn.Sequential(parts)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class SqueezeExcitation(nn.Module):
    """Pool, 1x1 conv C->S, act, 1x1 conv S->C, gate, scale (torchvision's layout)."""

    def __init__(self, channels: int, squeeze: int, act: str = "relu",
                 gate: str = "sigmoid") -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = activation(act)
        self.scale_activation = activation(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return x * s


class EfficientChannelAttention(nn.Module):
    """ECA: pool, Conv1d(1, 1, k, bias=False) across channels, sigmoid, scale."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.avgpool(x).flatten(2).transpose(1, 2)  # B, 1, C
        y = self.gate(self.conv(y)).transpose(1, 2).unsqueeze(-1)  # B, C, 1, 1
        return x * y
