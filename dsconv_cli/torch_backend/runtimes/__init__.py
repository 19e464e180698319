"""Runtimes a module can be timed in, behind one small protocol.

A runtime takes a module already in eval mode on its device, dtype and layout, and an
input in the same layout, and returns the callable to time; it also says what it adds to
the environment record. Adding a runtime is one module in this package and one entry in
:data:`RUNTIMES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from ...errors import InputError
from .eager import EagerRuntime

__all__ = ["RUNTIMES", "Runtime", "get_runtime"]


class Runtime(Protocol):
    name: str

    def prepare(self, module: nn.Module, x: torch.Tensor) -> Callable[[], Any]:
        """The call to time: one forward of ``module`` on ``x``, nothing else."""
        ...

    def record(self) -> dict[str, Any]:
        """What this runtime adds to the report's environment (versions, settings)."""
        ...


RUNTIMES: dict[str, Callable[[], Runtime]] = {
    "eager": EagerRuntime,
}


def get_runtime(name: str) -> Runtime:
    if name not in RUNTIMES:
        raise InputError(f"--runtime {name!r}: unknown; choose from {', '.join(RUNTIMES)}")
    return RUNTIMES[name]()
