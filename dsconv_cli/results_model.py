"""The model analysis (``compare --model``) results (stdlib only): frozen dataclasses serialised by
:func:`dsconv_cli.results.to_json`.

Kept apart from :mod:`dsconv_cli.results` so that a command imports only its own
result classes (each dataclass costs start-up time); ``from dsconv_cli.results import
X`` finds them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from .results import Rendered, optional
from .results_measure import Int8Timing, Measurement, Speedup

__all__ = [
    "DsForm", "ModelAnalysis", "ModuleRow", "ModuleTime", "UncountedOp",
]


@dataclass(frozen=True)
class DsForm:
    """A Conv2d's depthwise separable form, as ``convert`` would build it."""

    depth_multiplier: int
    params: int
    macs: Optional[int]
    #: MACs now / MACs after (params likewise)
    reduction_macs: Optional[float]
    reduction_params: float


@dataclass(frozen=True)
class ModuleTime:
    """A module's share of a measured forward (hooks around its calls)."""

    #: the median of its inclusive times over the hooked forwards (medians do not add:
    #: ``inclusive_ms`` and ``self_ms`` are the figures that do)
    median_ms: float
    #: inclusive_ms over the whole hooked forward (the model row's is 1)
    share_time: float
    roofline_fraction: Optional[float]
    #: means over the same hooked forwards: its calls with (inclusive) and without (self)
    #: the hooked modules they call; every row's self_ms plus "other" make the whole
    inclusive_ms: Optional[float] = optional()
    self_ms: Optional[float] = optional()
    self_share: Optional[float] = optional()


@dataclass(frozen=True)
class ModuleRow:
    """One module of a model, its counts including its children's."""

    name: str
    type: str
    depth: int
    calls: int
    output_shape: Optional[list[int]]
    params: int
    macs: int
    flops: int
    bytes: int
    elementwise_ops: int
    share_macs: float
    flop_per_byte: Optional[float]
    #: the DS form of an eligible Conv2d
    ds: Optional[DsForm] = optional()
    #: why a Conv2d is not eligible
    ds_skipped: Optional[str] = optional()
    #: for a module holding eligible convs: its MACs and params with all of them converted
    macs_if_ds: Optional[int] = optional()
    params_if_ds: Optional[int] = optional()
    measured: Optional[ModuleTime] = optional()
    #: measured speedup of this module against the same module converted (``--vs ds``)
    speedup: Optional[Speedup] = optional()
    #: why this module has no measured time although timed (hooks cannot attribute it)
    unattributed: Optional[str] = optional()


@dataclass(frozen=True)
class UncountedOp:
    op: str
    calls: int
    modules: list[str]


@dataclass(frozen=True)
class ModelAnalysis(Rendered):
    """A whole model counted at the ATen dispatch level (``compare --model FILE``/``--arch``).

    ``macs``, ``params``, ``flops`` and ``bytes`` are the totals' (``FLOPs = 2 x MACs``)."""

    _view = "model_view"

    name: str
    #: source (file or arch), arch, arch_kwargs, input_shape, counted_on
    model: dict[str, Any]
    totals: dict[str, Any]
    layers: list[ModuleRow]
    uncounted: list[UncountedOp]
    #: MACs and params now vs if every eligible conv were converted
    ds_opportunity: dict[str, Any]
    #: whole-model medians (with ``--measure``): best layout and every layout
    measured: Optional[Measurement] = optional()
    measured_by_format: Optional[dict[str, Measurement]] = optional()
    measured_by_runtime: Optional[list[Measurement]] = optional()
    #: how per-module times were taken
    attribution: Optional[str] = optional()
    #: the model converted in memory and measured beside it (``--vs ds``)
    vs: Optional[dict[str, Any]] = optional()
    speedup: Optional[Speedup] = optional()
    #: the same A/B in every runtime asked for (the first is ``speedup``)
    speedup_by_runtime: Optional[list[Speedup]] = optional()
    warnings: Optional[list[str]] = optional()
    #: --dtype int8: the model as int8 against its fp32 self in ONNX Runtime
    int8: Optional[Int8Timing] = optional()
    #: module depth the table shows (``--depth``)
    depth_shown: Optional[int] = optional()

    @property
    def macs(self) -> int:
        return int(self.totals["macs"])

    @property
    def params(self) -> int:
        return int(self.totals["params"])

    @property
    def flops(self) -> int:
        return int(self.totals["flops"])

    @property
    def bytes(self) -> int:
        return int(self.totals["bytes"])
