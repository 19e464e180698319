"""Runtimes a module can be timed in, behind one small protocol.

A runtime takes a module already in eval mode on its device, dtype and layout, and an
input in the same layout, and returns the call to time plus what it learnt preparing it
(compilation time, the exporter used); it also says what it adds to the environment
record. Adding a runtime is one module in this package and one entry in :data:`RUNTIMES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from ...errors import BackendError, InputError

__all__ = ["RUNTIMES", "Prepared", "Runtime", "RuntimeFailure", "get_runtime"]


class RuntimeFailure(BackendError):
    """The runtime could not take this module (a compile or export failure): reported for
    that runtime, the others still run, exit 1 at the end."""


@dataclass
class Prepared:
    """The call to time (one forward, nothing else) and what preparing it cost or chose."""

    fn: Callable[[], Any]
    info: dict[str, Any] = field(default_factory=dict)
    #: the bytes it runs, where it runs an artifact (ONNX): what ORT's profile reads
    artifact: bytes | None = None


class Runtime(Protocol):
    name: str
    #: memory layouts it can be fed in (ONNX graphs are NCHW whatever torch's layout)
    layouts: tuple[str, ...] | None

    def prepare(self, module: nn.Module, x: torch.Tensor) -> Prepared: ...

    def record(self) -> dict[str, Any]:
        """What this runtime adds to the report's environment (versions, settings)."""
        ...


def _eager(device: torch.device, threads: int | None) -> Runtime:
    from .eager import EagerRuntime

    return EagerRuntime()


def _compile(device: torch.device, threads: int | None) -> Runtime:
    from .compiled import CompileRuntime

    return CompileRuntime()


def _onnxruntime(device: torch.device, threads: int | None) -> Runtime:
    from .onnx import OnnxRuntime

    return OnnxRuntime(device, threads)


#: name -> factory(device, threads)
RUNTIMES: dict[str, Callable[[torch.device, int | None], Runtime]] = {
    "eager": _eager,
    "compile": _compile,
    "onnxruntime": _onnxruntime,
}


def get_runtime(name: str, device: torch.device | None = None,
                threads: int | None = None) -> Runtime:
    if name not in RUNTIMES:
        raise InputError(f"--runtime {name!r}: unknown; choose from {', '.join(RUNTIMES)}")
    return RUNTIMES[name](device or torch.device("cpu"), threads)
