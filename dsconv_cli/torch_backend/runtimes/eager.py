"""Eager PyTorch: the module called directly (under the timer's inference mode)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn


class EagerRuntime:
    name = "eager"

    def prepare(self, module: nn.Module, x: torch.Tensor) -> Callable[[], Any]:
        return partial(module, x)

    def record(self) -> dict[str, Any]:
        return {"runtime": self.name}
