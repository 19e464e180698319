"""Small real models for conversion tests (and a ResNet-50-sized one for the benchmark)."""

from __future__ import annotations

import torch
from torch import nn


class MobileNetLike(nn.Module):
    """Nested containers with non-square, strided, dilated, biased, grouped, 1x1, string
    padding, reflect padding and one conv object used at two places."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU())
        shared = nn.Conv2d(48, 48, 3, padding=1, bias=False)
        self.blocks = nn.ModuleList([
            nn.Sequential(nn.Conv2d(32, 48, (3, 5), stride=(2, 1), padding=(1, 2)), nn.ReLU()),
            nn.Sequential(shared, nn.ReLU(), shared),
            nn.ModuleDict({
                "dil": nn.Conv2d(48, 64, 3, dilation=2, padding=2, bias=True),
                "grp": nn.Conv2d(64, 64, 3, padding=1, groups=4),
                "dw": nn.Conv2d(64, 64, 3, padding=1, groups=64),
                "pw": nn.Conv2d(64, 64, 1),
                "same": nn.Conv2d(64, 64, (5, 3), padding="same", padding_mode="reflect"),
            }),
        ])
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.blocks[0](x)
        x = self.blocks[1](x)
        d = self.blocks[2]
        for k in ("dil", "grp", "dw", "pw", "same"):
            x = torch.relu(d[k](x))
        return self.head(x.mean((2, 3)))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNet(nn.Module):
    """ResNet with bottlenecks; ``layers=(3, 4, 6, 3)`` and width 64 is ResNet-50 (25.6M)."""

    def __init__(self, layers: tuple[int, ...] = (1, 1), width: int = 32,
                 classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        stages = []
        cin = width
        for i, n in enumerate(layers):
            mid = width * 2**i
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(cin, mid, mid * 4, 2 if j == 0 and i > 0 else 1))
                cin = mid * 4
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.stages(self.stem(x)).mean((2, 3)))


class BasicBlock(nn.Module):
    """torchvision's ResNet-18/34 block: two 3x3 convs with BatchNorm, a 1x1 projection
    where the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    """torchvision's ResNet-18 layout (11.7M params at 1000 classes), in plain torch."""

    def __init__(self, classes: int = 1000, width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        stages, cin = [], width
        for i in range(4):
            cout = width * 2**i
            stages.append(nn.Sequential(BasicBlock(cin, cout, 1 if i == 0 else 2),
                                        BasicBlock(cout, cout)))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.stages(self.stem(x)).mean((2, 3)))


def resnet18(classes: int = 1000) -> ResNet18:
    return ResNet18(classes)


def resnet50() -> ResNet:
    return ResNet((3, 4, 6, 3), 64, 1000)


def small_resnet(classes: int = 10) -> ResNet:
    return ResNet((1, 1), 32, classes)
