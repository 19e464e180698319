"""The preset (``compare MODEL``) results (stdlib only): frozen dataclasses serialised by
:func:`dsconv_cli.results.to_json`.

Kept apart from :mod:`dsconv_cli.results` so that a command imports only its own
result classes (each dataclass costs start-up time); ``from dsconv_cli.results import
X`` finds them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .results import CostTotals, Rendered, optional
from .results_measure import Measurement

__all__ = [
    "PresetFullConv", "PresetLayer", "PresetModel", "PresetResult", "PresetStage",
]


@dataclass(frozen=True)
class PresetModel:
    name: str
    width: float
    resolution: int
    classes: int
    batch: int
    dtype: str


@dataclass(frozen=True)
class PresetStage:
    """One stage of a preset: its blocks' counts and, when timed on its own, its time."""

    stage: str
    blocks: int
    output_shape: list[int]
    params: int
    macs: int
    flops: int
    bytes: int
    share_macs: float
    share_params: float
    measured: Optional[Measurement] = optional()
    measured_by_format: Optional[dict[str, Measurement]] = optional()


@dataclass(frozen=True)
class PresetLayer:
    """One layer of a preset (``--per-layer``)."""

    stage: str
    name: str
    kind: str
    params: int
    macs: int
    flops: int
    bytes: int
    elementwise_ops: int
    input_shape: list[int]
    output_shape: list[int]
    activation_elems: int
    memory_bytes: int
    arithmetic_intensity: float


@dataclass(frozen=True)
class PresetFullConv:
    """The same network with every depthwise + pointwise pair as one dense conv."""

    totals: CostTotals
    stages: list[PresetStage]


@dataclass(frozen=True)
class PresetResult(Rendered):
    """A preset network (``compare --preset``): totals, stages, and when timed, times."""

    _view = "preset_view"

    name: str
    model: PresetModel
    totals: CostTotals
    stages: list[PresetStage]
    layers: Optional[list[PresetLayer]] = optional()
    full_conv: Optional[PresetFullConv] = optional()
    measured_by_runtime: Optional[list[Measurement]] = optional()
    measured: Optional[Measurement] = optional()
