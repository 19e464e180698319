"""The ``convert`` results (stdlib only): frozen dataclasses serialised by
:func:`dsconv_cli.results.to_json`.

Kept apart from :mod:`dsconv_cli.results` so that a command imports only its own
result classes (each dataclass costs start-up time); ``from dsconv_cli.results import
X`` finds them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from .results import Rendered, optional
from .results_measure import OpTime, Speedup

__all__ = [
    "ConvertChoices", "ConvertExport", "ConvertInt8", "ConvertLayer", "ConvertResult",
    "ConvertSource",
    "ConvertTiming", "ConvertTotals", "Distillation", "Fidelity", "LatencyForm",
    "LatencyLayer", "LatencyReport", "LatencyRound", "LayerOutputError", "Verification",
]


@dataclass(frozen=True)
class LayerOutputError:
    """A calibrated layer's relative output error on the calibration inputs."""

    #: null in JSON when not finite (JSON has no NaN)
    svd: Optional[float]
    calibrated: Optional[float]
    refine_note: Optional[str] = optional()
    refine_steps: Optional[int] = optional()


@dataclass(frozen=True)
class ConvertLayer:
    """One Conv2d of a converted model: what it was, what it became, or why it stayed."""

    name: str
    aliases: list[str]
    input_shape: Optional[list[int]]
    in_channels: int
    out_channels: int
    kernel: list[int]
    stride: list[int]
    dilation: list[int]
    groups: int
    params_before: int
    params_after: Optional[int]
    macs_before: Optional[int]
    macs_after: Optional[int]
    rank: Optional[int]
    max_rank: int
    energy: Optional[float]
    weight_error: Optional[float]
    status: Literal["converted", "skipped"]
    reason: Optional[str]
    note: Optional[str]
    output_error: Optional[LayerOutputError] = optional()


@dataclass(frozen=True)
class ConvertTotals:
    layers: int
    converted: int
    skipped: int
    model_params_before: int
    model_params_after: int
    conv_params_before: int
    conv_params_after: int
    conv_macs_before: Optional[int]
    conv_macs_after: Optional[int]
    #: the whole model counted like ``compare --model`` (with an input shape)
    model_macs_before: Optional[int] = optional()
    model_macs_after: Optional[int] = optional()


@dataclass(frozen=True)
class Verification:
    """The converted model's output against the original's on one seeded input."""

    verified: bool
    #: why there is no check (no input shape)
    note: Optional[str] = optional()
    input_shape: Optional[list[int]] = optional()
    seed: Optional[int] = optional()
    mode: Optional[Literal["eval"]] = optional()
    max_abs_diff: Optional[float] = optional()
    rel_diff: Optional[float] = optional()


@dataclass(frozen=True)
class Fidelity:
    """The converted model against the original on real inputs."""

    #: top-1 agreement (rows with a non-finite output never agree); None: not logits
    agreement: Optional[float]
    #: null in JSON when not finite (JSON has no NaN): such a figure never passes a gate
    rel_output_error: Optional[float]
    on: Literal["eval", "calibration"]
    n: int
    #: the share of the inputs the original puts in its most frequent class; at 0.9 or
    #: more, agreement says little (a model predicting one class agrees with itself)
    majority_class_share: Optional[float] = optional()
    agreement_meaningful: Optional[bool] = optional()


@dataclass(frozen=True)
class ConvertTiming:
    convert: float
    verify: float
    load: float
    calibrate: Optional[float] = optional()
    write: Optional[float] = optional()
    #: --distill-steps (part of ``calibrate``)
    distill: Optional[float] = optional()


@dataclass(frozen=True)
class Distillation:
    """``--distill-steps``: after the layer-wise refit, the converted layers' weights
    trained end to end (Adam) to match the original model's outputs on the calibration
    inputs (no labels)."""

    steps: int
    batch: int
    lr: float
    #: [step, mean relative squared output error of the steps since the previous point]
    loss: list[list[float]]
    #: ||y' - y|| / ||y|| on all calibration inputs before and after training
    rel_output_error_before: float
    rel_output_error_after: float
    #: False: training did not lower the error; the calibrated weights were kept
    kept: bool
    seconds: float


@dataclass(frozen=True)
class ConvertSource:
    path: str
    format: str


@dataclass(frozen=True)
class ConvertChoices:
    """The options that decided the conversion."""

    init: str
    depth_multiplier: int
    energy: Optional[float]
    max_error: Optional[float]
    min_channels: int
    allow_larger: bool
    target_macs: Optional[float]
    target_latency: Optional[float] = optional()


@dataclass(frozen=True)
class ConvertExport:
    """``--export``: the deployable artifact, and its output checked against the converted
    model's on the verification input before it was written."""

    path: str
    #: torch.export (.pt2) or onnx (.onnx)
    format: str
    exporter: str
    bytes: int
    input_shape: list[int]
    dtype: str
    checked: bool
    max_abs_diff: float
    #: the largest |diff| allowed: the dtype's tolerance times the output's scale
    tolerance: float
    seconds: float
    #: dimension name -> index, of the input (and first output) left symbolic: {"batch":
    #: 0} by default, {} with --static-shape (or when the model cannot take a dynamic batch:
    #: ``note`` says why)
    dynamic_dims: dict[str, int] = field(default_factory=dict)
    #: the batch sizes the artifact was run at and checked against the model
    checked_batches: list[int] = field(default_factory=list)
    note: Optional[str] = optional()
    #: --quantize int8: how it was quantized (scheme, format, calibration inputs, the
    #: nodes kept in fp32) and its relative output error against the converted fp32 model
    #: on the check inputs
    int8: Optional[dict[str, Any]] = optional()


@dataclass(frozen=True)
class LatencyForm:
    """One form of a layer in the latency table: the conv (``multiplier`` null) or its DS
    form, the median of its block times and the 95% interval of that median."""

    multiplier: Optional[int]
    median_ms: float
    ci95: list[float]
    #: DS forms: measurably faster than the conv (A/B test on the block times, p < 0.05)
    faster: Optional[bool] = optional()
    #: DS forms: the error the chooser weighs (the report's ``error`` says which)
    error: Optional[float] = optional()


@dataclass(frozen=True)
class LatencyLayer:
    """One eligible layer's row of the latency table, and what the chooser did with it."""

    name: str
    input_shape: list[int]
    calls: int
    conv: LatencyForm
    ds: list[LatencyForm]
    #: the multiplier chosen, or null: the conv is kept (``reason`` says why)
    chosen: Optional[int]
    reason: str
    #: read from the latency cache (else measured in this run)
    cached: bool
    #: why its times are not to be trusted (still noisy after every attempt)
    flag: Optional[str] = optional()


@dataclass(frozen=True)
class LatencyRound:
    """One round of choose -> convert -> measure end to end."""

    #: the budget given to the chooser (a fraction of the original's latency)
    budget: float
    predicted: float
    #: measured latency ratio (converted / original; Hodges-Lehmann) and its 95% interval
    measured: Optional[float] = optional()
    ci95: Optional[list[float]] = optional()
    p_value: Optional[float] = optional()
    original_ms: Optional[float] = optional()
    converted_ms: Optional[float] = optional()
    converted_layers: Optional[int] = optional()
    macs: Optional[int] = optional()


@dataclass(frozen=True)
class LatencyReport:
    """``--target-latency``: the per-layer table, the rounds, and whether the converted
    model's measured latency ratio met the target within its interval."""

    target: float
    runtime: str
    device: str
    threads: int
    memory_format: str
    dtype: str
    #: the original model alone, median ms (what the first round's budget is a share of)
    model_ms: float
    #: met: the interval is at or under the target; met within its interval: it holds
    #: the target; missed: the whole interval is above it; too noisy: the interval is too
    #: wide to verify anything (missed and too noisy: exit 1, nothing written)
    verdict: Literal["met", "met within its interval", "missed", "too noisy"]
    rounds: list[LatencyRound]
    layers: list[LatencyLayer]
    #: the round whose conversion is the result (the best reached, when missed)
    chosen_round: Optional[int]
    cache: dict[str, Any]
    seconds: float
    notes: list[str] = field(default_factory=list)
    #: what the chooser weighed: each layer's weight error (best rank-m factorisation), or
    #: with --calibration-data its output error after the pointwise refit on its inputs
    error: Literal["weight", "refit"] = "weight"


@dataclass(frozen=True)
class ConvertInt8:
    """``--quantize int8``: the exported model quantized statically after conversion, its
    fidelity against the original fp32 model beside the converted fp32 model's, and the
    three graphs' sizes and ONNX Runtime latencies."""

    scheme: str
    format: str
    calibration_inputs: int
    #: depthwise/pointwise pairs cross-layer equalised before the export (--equalise)
    equalised_pairs: int
    #: nodes left in fp32 (--keep-fp32), with their int8 error when quantized alone
    fp32_nodes: list[dict[str, Any]]
    #: ||int8 - converted fp32|| / ||converted fp32|| on the export's check inputs
    rel_error_vs_converted: float
    #: the int8 model against the original fp32 model
    fidelity: Fidelity
    #: the converted fp32 model against the original (the conversion's own fidelity)
    fidelity_fp32: Optional[Fidelity]
    #: ONNX graph bytes: original_fp32, converted_fp32, converted_int8
    bytes: dict[str, int]
    #: ONNX Runtime, per graph: median_ms, iqr_ms
    latency_ms: dict[str, dict[str, float]]
    #: "A_vs_B" = time(B) / time(A), interleaved A/B with its interval
    speedups: dict[str, Speedup]
    #: the node types ORT ran for the int8 graph (its profile), slowest first
    ops: list[OpTime]
    #: where int8 is not faster than the converted fp32 graph: what ran instead
    why: Optional[str] = optional()


@dataclass(frozen=True)
class ConvertResult(Rendered):
    """``dsconv convert``: per-layer rows, totals, the output check, fidelity, timings,
    and what was written."""

    _view = "convert_view"

    name: str
    source: ConvertSource
    options: ConvertChoices
    layers: list[ConvertLayer]
    totals: ConvertTotals
    verification: Verification
    timing_s: ConvertTiming
    fidelity: Optional[Fidelity] = optional()
    fidelity_on_calibration: Optional[Fidelity] = optional()
    #: what may make the converted model differ from the original (also on stderr)
    warnings: Optional[list[str]] = optional()
    output_note: str = ""
    written: list[str] = field(default_factory=list)
    #: why nothing was written although it was asked for (--min-agreement...): exit 1
    refusal: Optional[str] = optional()
    #: --export: the artifact written (or, on a dry run, checked) beside the model
    export: Optional[ConvertExport] = optional()
    distillation: Optional[Distillation] = optional()
    latency: Optional[LatencyReport] = optional()
    #: --quantize int8: the int8 artifact's fidelity, sizes and latencies
    int8: Optional[ConvertInt8] = optional()
