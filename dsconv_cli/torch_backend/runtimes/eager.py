"""Eager PyTorch: the module called directly (under the timer's inference mode)."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn

from . import Prepared


class EagerRuntime:
    name = "eager"
    layouts: tuple[str, ...] | None = None  # every layout

    def prepare(self, module: nn.Module, x: torch.Tensor) -> Prepared:
        return Prepared(partial(module, x))

    def record(self) -> dict[str, Any]:
        return {"runtime": self.name}
