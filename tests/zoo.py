"""Patterns of torchvision and timm models, written in plain torch (torchvision cannot be
installed beside the CPU torch CI uses): each is the normal case for whole-model analysis."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .models import ResNet


def resnet_bottleneck() -> nn.Module:
    return ResNet((1, 1), 16, 10)


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, r: int = 4) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, c // r, 1), nn.Conv2d(c // r, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class InvertedResidualSE(nn.Module):
    """MobileNetV3 bneck: expand 1x1, depthwise 3x3, SE, project 1x1, residual."""

    def __init__(self, c: int = 16, t: int = 4) -> None:
        super().__init__()
        h = c * t
        self.expand = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h),
                                    nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False),
                                nn.BatchNorm2d(h), nn.Hardswish())
        self.se = SqueezeExcite(h)
        self.project = nn.Sequential(nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(self.se(self.dw(self.expand(x))))


def mobilenet_v3_like() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), InvertedResidualSE(), InvertedResidualSE(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


class ConvNeXtBlock(nn.Module):
    """7x7 depthwise conv, LayerNorm over channels (channels last), MLP, layer scale."""

    def __init__(self, c: int = 32) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.pw1, self.pw2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.full((c,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.gamma * self.pw2(F.gelu(self.pw1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


def convnext_like() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 32, 4, 4), ConvNeXtBlock(), ConvNeXtBlock(),
                         nn.Conv2d(32, 64, 2, 2), ConvNeXtBlock(64))


class Attention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v)
        return self.proj(a.transpose(1, 2).reshape(b, n, d))


class EncoderBlock(nn.Module):
    def __init__(self, d: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, heads)
        self.mlp = nn.Sequential(nn.Linear(d, mlp), nn.GELU(), nn.Linear(mlp, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class ViT(nn.Module):
    """Patch embedding (a strided conv), class token, position embedding, encoder blocks."""

    def __init__(self, image: int = 32, patch: int = 8, d: int = 64, depth: int = 2,
                 heads: int = 4, mlp: int = 128, classes: int = 10) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, d, patch, patch)
        n = (image // patch) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.zeros(1, n + 1, d))
        self.blocks = nn.Sequential(*(EncoderBlock(d, heads, mlp) for _ in range(depth)))
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


def vit_huge_encoder() -> ViT:
    """ViT-Huge-sized (d 1280, 32 blocks, MLP 5120, ~630M params) for the memory benchmark."""
    return ViT(224, 14, 1280, 32, 16, 5120, 1000)


class ResNeXtBlock(nn.Module):
    def __init__(self, c: int = 64, groups: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 1, bias=False)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, groups=groups, bias=False)
        self.conv3 = nn.Conv2d(c, c, 1, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn(self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))))


def resnext_like() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 64, 3, 2, 1), ResNeXtBlock(), ResNeXtBlock())


def conv1d_net() -> nn.Module:
    return nn.Sequential(nn.Conv1d(8, 32, 5, padding=2), nn.ReLU(), nn.Conv1d(32, 32, 3,
                         groups=4), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(32, 4))


def conv3d_net() -> nn.Module:
    return nn.Sequential(nn.Conv3d(3, 16, 3, padding=1), nn.BatchNorm3d(16), nn.ReLU(),
                         nn.Conv3d(16, 16, 3, stride=2, groups=16), nn.Conv3d(16, 32, 1))


def conv_transpose_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), nn.ConvTranspose2d(32, 16, 4, 2, 1),
                         nn.ConvTranspose2d(16, 8, 3, 2, 1, output_padding=1, groups=2))


class FunctionalConvNet(nn.Module):
    """Weights held as Parameters and applied with F.conv2d / F.linear (timm-style)."""

    def __init__(self) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(32, 3, 3, 3) * 0.1)
        self.w2 = nn.Parameter(torch.randn(32, 1, 3, 3) * 0.1)
        self.fc = nn.Parameter(torch.randn(10, 32) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.conv2d(x, self.w1, stride=2, padding=1))
        x = F.conv2d(x, self.w2, padding=1, groups=32)
        return F.linear(x.mean((2, 3)), self.fc)


class MHANet(nn.Module):
    """nn.MultiheadAttention, whose fused fast path runs only on real tensors under no_grad."""

    def __init__(self, d: int = 32) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, 4, batch_first=True)
        self.out = nn.Linear(d, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.attn(x, x, x, need_weights=False)[0])


#: name -> (factory, input shape)
ZOO = {
    "resnet_bottleneck": (resnet_bottleneck, (2, 3, 32, 32)),
    "inverted_residual_se": (mobilenet_v3_like, (1, 3, 32, 32)),
    "convnext_block": (convnext_like, (1, 3, 32, 32)),
    "vit_sdpa": (ViT, (2, 3, 32, 32)),
    "resnext_grouped": (resnext_like, (1, 3, 32, 32)),
    "conv1d": (conv1d_net, (2, 8, 40)),
    "conv3d": (conv3d_net, (1, 3, 8, 8, 8)),
    "conv_transpose2d": (conv_transpose_net, (1, 3, 16, 16)),
    "functional_conv": (FunctionalConvNet, (1, 3, 16, 16)),
    "multihead_attention": (MHANet, (2, 10, 32)),
}


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.fc(image) * mask


class DataDependent(nn.Module):
    """Control flow on a value: cannot run on meta, counted on real zeros instead."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y if float(y.sum()) >= 0 else -y


class Spectral(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft2(self.conv(x)).abs()


def broken(classes: int = 10) -> nn.Module:
    raise ValueError(f"cannot build with {classes} classes")


class SmallCNN(nn.Module):
    """A small classifier for the calibration tests (trained in the test)."""

    def __init__(self, classes: int = 4, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def patterns(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A synthetic task with structure: four kinds of oriented gratings in noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    waves = [torch.sin(xx * 0.8), torch.sin(yy * 0.8), torch.sin((xx + yy) * 0.6),
             torch.sin((xx - yy) * 0.6)]
    x = torch.randn(n, 3, 16, 16, generator=g) * 0.6
    for i in range(n):
        x[i] += waves[int(labels[i])] * (0.8 + 0.4 * torch.rand(3, 1, 1, generator=g))
    return x, labels


class ResidualCNN(nn.Module):
    """A small network with residual connections for the same task."""

    def __init__(self, width: int = 32, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU())
        self.b1 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                nn.Conv2d(width, width, 3, padding=1))
        self.b2 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                nn.Conv2d(width, width, 3, padding=1))
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.b1(x))
        x = nn.functional.max_pool2d(x, 2)
        x = torch.relu(x + self.b2(x))
        return self.head(x.mean((2, 3)))


def train_on_patterns(model: nn.Module, steps: int, n: int) -> float:
    """Train ``model`` on ``n`` pattern images for ``steps`` Adam steps; return its held-out
    accuracy (512 images). Used by the calibration tests and benchmarks/fidelity.py."""
    x, y = patterns(n, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        idx = torch.randint(0, n, (64,))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    xt, yt = patterns(512, seed=2)
    with torch.no_grad():
        return float((model(xt).argmax(1) == yt).float().mean())
