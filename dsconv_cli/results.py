"""Typed results and their one serialisation (stdlib only).

Services return these frozen dataclasses; :func:`to_json` turns any of them into the JSON
every command writes, and :func:`report_schema` generates ``report.schema.json`` from the
same classes (as ``profile.schema.json`` is generated from the config models). The split is
torchinfo's: LayerInfo / ModelStatistics (data) apart from formatting (:mod:`.render`).

A field marked :func:`optional` is left out of the JSON when it is ``None``; every other
field is always written (``null`` included).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

from . import __version__
from .cost import Cost

__all__ = [
    "SCHEMA_VERSION",
    "BlockStats",
    "BudgetCheck",
    "ComparedCase",
    "ConvertInt8",
    "DsForm",
    "Int8Timing",
    "Measurement",
    "ModelAnalysis",
    "ModuleRow",
    "ModuleTime",
    "OpTime",
    "ProfileCaseResult",
    "Reduction",
    "Side",
    "Speedup",
    "Theory",
    "UncountedOp",
    "envelope",
    "optional",
    "report_schema",
    "to_json",
]

SCHEMA_VERSION = 1


def optional(default: Any = None) -> Any:
    """A dataclass field left out of the JSON when it is ``None``."""
    return field(default=default, metadata={"omit_none": True})


def to_json(obj: Any) -> Any:
    """Plain JSON data (dicts, lists, numbers, strings) from results, recursively."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if v is None and f.metadata.get("omit_none"):
                continue
            out[f.name] = to_json(v)
        return out
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    return obj


def envelope(cases: list[Any], environment: dict[str, Any] | None = None,
             **extra: Any) -> dict[str, Any]:
    """The one JSON shape every command emits; ``cases`` may be results or dicts."""
    env: dict[str, Any] = {"schema_version": SCHEMA_VERSION,
                           "tool": {"name": "dsconv", "version": __version__}}
    if environment:
        env["environment"] = environment
    env["cases"] = to_json(cases)
    env.update(to_json(extra))
    return env


# --------------------------------------------------------------------------- measurement

@dataclass(frozen=True)
class BlockStats:
    """Statistics of the per-call time over the timer's blocks (each block = ``calls/runs``
    back-to-back calls)."""

    median_ms: float
    iqr_ms: float
    q1_ms: float
    q3_ms: float
    min_ms: float
    max_ms: float
    runs: int
    calls: int
    memory_format: str

    def rounded(self) -> dict[str, Any]:
        """The fields, floats rounded to nanoseconds (the raw samples go with the
        measurement separately)."""
        return {f.name: round(v, 6) if isinstance(v, float) else v
                for f in dataclasses.fields(BlockStats) for v in [getattr(self, f.name)]
                if f.name != "samples_ms"}

    #: every block's per-call time, for A/B tests against a stored baseline
    samples_ms: Optional[list[float]] = optional()


@dataclass(frozen=True, kw_only=True)
class Measurement(BlockStats):
    """One timed module in one layout: block statistics and its roofline context."""

    gflops: float
    gbps: float
    bound_ms: float
    bound: Literal["memory", "compute"]
    roofline_fraction: float
    #: why this measurement cannot be taken at face value (None: nothing seen)
    flag: Optional[str]
    #: this part's share of the summed part times (preset stages)
    share_time: Optional[float] = optional()
    #: the runtime it was timed in (eager, compile, onnxruntime), and what preparing it
    #: took or chose: compilation seconds (never in the timed region), the ONNX exporter
    runtime: Optional[str] = optional()
    compile_s: Optional[float] = optional()
    exporter: Optional[str] = optional()
    max_abs_diff: Optional[float] = optional()
    #: int8 (ONNX Runtime's static quantization): the element type, the weights' scheme
    #: and the relative output error against the fp32 module on the check input
    dtype: Optional[str] = optional()
    scheme: Optional[str] = optional()
    rel_error: Optional[float] = optional()

    def with_share(self, share: float) -> Measurement:
        return dataclasses.replace(self, share_time=round(share, 4))


@dataclass(frozen=True)
class CostTotals:
    """A whole network's analytic cost (a preset's totals)."""

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

    @classmethod
    def of(cls, c: Cost) -> CostTotals:
        d = c.to_dict()
        d.pop("parts", None)
        return cls(**d)


@dataclass(frozen=True)
class Side(CostTotals):
    """One side of a comparison (or a part of it): its cost and, when timed, measurements."""

    spec: Optional[str] = optional()
    parts: Optional[dict[str, Side]] = optional()
    measured: Optional[Measurement] = optional()
    measured_by_format: Optional[dict[str, Measurement]] = optional()
    #: with several --runtime: each runtime's best layout, and the fastest of them
    measured_by_runtime: Optional[list[Measurement]] = optional()
    fastest: Optional[dict[str, Any]] = optional()
    #: --dtype int8: this side as int8 against its fp32 self in ONNX Runtime
    int8: Optional[Int8Timing] = optional()

    @classmethod
    def of(cls, c: Cost, spec: str | None = None) -> Side:
        d = c.to_dict()
        parts = {name: cls.of(p) for name, p in c.parts} if c.parts else None
        d.pop("parts", None)
        return cls(**d, spec=spec, parts=parts)

    def timed(self, best: Measurement, by_format: dict[str, Measurement] | None,
              by_runtime: list[Measurement] | None = None) -> Side:
        fastest = None
        if by_runtime:
            f = min(by_runtime, key=lambda m: m.median_ms)
            fastest = {"runtime": f.runtime, "memory_format": f.memory_format,
                       "median_ms": f.median_ms}
        return dataclasses.replace(self, measured=best, measured_by_format=by_format,
                                   measured_by_runtime=by_runtime, fastest=fastest)


@dataclass(frozen=True)
class Reduction:
    """standard / candidate."""

    params: Optional[float]
    macs: Optional[float]


@dataclass(frozen=True)
class Theory:
    ratio: float
    reduction: float
    formula: str


@dataclass(frozen=True)
class Speedup:
    """Measured standard time / candidate time, beside the MAC reduction."""

    measured: Optional[float]
    theoretical: Optional[float]
    memory_format: Optional[str] = optional()
    #: why the measured figure cannot be taken at face value (above theory beyond noise)
    flag: Optional[str] = optional()
    #: from the interleaved A/B (see dsconv_cli.stats): Hodges-Lehmann ratio, its 95%
    #: interval, the two-sided Mann-Whitney p, the verdict and the minimum detectable effect
    estimate: Optional[float] = optional()
    ci95: Optional[list[float]] = optional()
    p_value: Optional[float] = optional()
    verdict: Optional[Literal["faster", "slower", "no difference detected"]] = optional()
    mde: Optional[float] = optional()
    rounds: Optional[int] = optional()
    #: the runtime it was measured in, where several were
    runtime: Optional[str] = optional()

    def with_ab(self, ab: Any) -> Speedup:
        """This speedup with an :class:`dsconv_cli.stats.ABResult` (A = the faster-hoped
        side, so above 1 means it is faster)."""
        return dataclasses.replace(
            self, estimate=round(ab.estimate, 4), ci95=[round(ab.ci95[0], 4),
                                                        round(ab.ci95[1], 4)],
            p_value=float(f"{ab.p_value:.4g}"), verdict=ab.verdict, mde=round(ab.mde, 4),
            rounds=ab.n[0])


@dataclass(frozen=True)
class OpTime:
    """One node type ONNX Runtime ran (its profile), per forward."""

    op: str
    calls: int
    ms: float
    #: of the summed node times
    share: float


@dataclass(frozen=True)
class Int8Timing:
    """A module in ONNX Runtime as int8 (static QDQ quantization) beside its fp32 self,
    timed interleaved in the same process."""

    scheme: str
    fp32_ms: float
    int8_ms: float
    #: fp32 time / int8 time, with its interval: above 1, int8 is faster
    speedup: Speedup
    #: ||int8 - fp32|| / ||fp32|| on the check input (the fp32 module in torch)
    rel_error: float
    #: the node types ORT ran for the int8 graph, slowest first (its profiling JSON)
    ops: list[OpTime]
    #: where int8 is not faster: what ran instead of int8 kernels
    why: Optional[str] = optional()


@dataclass(frozen=True)
class ComparedCase:
    """A layer comparison: the standard side against the candidate block."""

    name: str
    input: dict[str, Any]
    standard: Side
    candidate: Side
    reduction: Reduction
    theory: Optional[Theory]
    speedup: Optional[Speedup] = optional()
    #: one line on why the measured speedup differs from the theoretical one
    why: Optional[str] = optional()
    warnings: Optional[list[str]] = optional()
    #: why this case could not be measured
    skipped: Optional[str] = optional()
    #: with several --runtime: standard / candidate time in each runtime, and between the
    #: fastest runtime of each side
    speedup_by_runtime: Optional[dict[str, float]] = optional()


# --------------------------------------------------------------------------- models

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
class ModelAnalysis:
    """A whole model counted at the ATen dispatch level (``compare --model FILE``/``--arch``)."""

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


# --------------------------------------------------------------------------- profile

@dataclass(frozen=True)
class BudgetCheck:
    limit: float
    value: Optional[float]
    ok: bool
    #: a measured budget's 95% interval for its value (the median's, the A/B ratio's)
    interval: Optional[list[float]] = optional()
    #: the interval straddles the limit even after re-measuring: met or not, noise decides
    marginal: Optional[bool] = optional()


#: ``marginal``: a measured budget whose interval straddles its limit (it does not fail the
#: gate unless ``--strict``)
ProfileVerdict = Literal["pass", "fail", "error", "planned", "marginal"]


@dataclass(frozen=True)
class ProfileCaseResult:
    """One profile case: what ran, against which budget, and its verdict.

    ``verdict`` is the case's outcome and nothing else: ``pass``, ``fail`` (a budget or a
    regression), ``error`` (it could not run) or ``planned`` (``--dry-run``)."""

    name: str
    source: dict[str, Any]
    analytic: dict[str, Any]
    budget: dict[str, BudgetCheck]
    verdict: ProfileVerdict
    budget_pending: Optional[list[str]] = optional()
    measured: Optional[Measurement] = optional()
    standard_measured: Optional[Measurement] = optional()
    speedup: Optional[Speedup] = optional()
    why: Optional[str] = optional()
    timed_s: Optional[float] = optional()
    stages: Optional[list[dict[str, Any]]] = optional()
    original: Optional[dict[str, Any]] = optional()
    conversion: Optional[dict[str, Any]] = optional()
    baseline: Optional[dict[str, Any]] = optional()
    #: a model case timed against its vs: in the same job ({source, speedup})
    vs: Optional[dict[str, Any]] = optional()
    speedup_by_runtime: Optional[dict[str, float]] = optional()
    failures: Optional[list[str]] = optional()
    error: Optional[str] = optional()
    #: noisy or implausible measurements (the flags ``compare`` gives them); ``--strict``
    #: makes them failures
    flags: Optional[list[str]] = optional()


# --------------------------------------------------------------------------- presets

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
class PresetResult:
    """A preset network (``compare --preset``): totals, stages, and when timed, times."""

    name: str
    model: PresetModel
    totals: CostTotals
    stages: list[PresetStage]
    layers: Optional[list[PresetLayer]] = optional()
    full_conv: Optional[PresetFullConv] = optional()
    measured_by_runtime: Optional[list[Measurement]] = optional()
    measured: Optional[Measurement] = optional()


# --------------------------------------------------------------------------- convert

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
class ConvertResult:
    """``dsconv convert``: per-layer rows, totals, the output check, fidelity, timings,
    and what was written."""

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


# --------------------------------------------------------------------------- schema

#: the case types a report may hold
CASE_TYPES = (ComparedCase, ProfileCaseResult, ModelAnalysis, PresetResult, ConvertResult)

#: results whose every key is declared: their schema admits no other
_CLOSED = (CostTotals, PresetModel, PresetStage, PresetLayer, PresetFullConv, PresetResult,
           LayerOutputError, ConvertLayer, ConvertTotals, Verification, Fidelity,
           ConvertTiming, ConvertSource, ConvertChoices, ConvertExport, ConvertResult,
           Distillation, LatencyForm, LatencyLayer, LatencyRound, LatencyReport)


def report_schema() -> dict[str, Any]:
    """The JSON Schema of every report, generated from the result classes (needs pydantic,
    which only this function and the config module import)."""
    from pydantic import TypeAdapter

    typed = Union[CASE_TYPES]  # type: ignore[valid-type]
    schema = TypeAdapter(list[typed]).json_schema(ref_template="#/$defs/{model}")
    defs = schema.pop("$defs")
    for cls in _CLOSED:
        defs[cls.__name__]["additionalProperties"] = False
    defs["environment"] = {
        "type": "object",
        "properties": {
            "device": {"type": "string"}, "device_name": {"type": "string"},
            "torch": {"type": "string"}, "threads": {"type": "integer", "minimum": 1},
            "dtype": {"type": "string"}, "tf32": {"type": "boolean"},
            "calibration": {"type": "object"},
        },
    }
    defs["case"] = {"anyOf": [{"$ref": f"#/$defs/{cls.__name__}"} for cls in CASE_TYPES]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://dsconv.dev/report.schema.json",
        "title": "dsconv report (schema_version 1)",
        "description": "The envelope every dsconv command writes with --json / --format json "
                       "/ --report *.json. Generated from dsconv_cli/results.py.",
        "type": "object",
        "required": ["schema_version", "tool", "cases"],
        "properties": {
            "schema_version": {"const": SCHEMA_VERSION},
            "tool": {"type": "object", "required": ["name", "version"],
                     "properties": {"name": {"const": "dsconv"},
                                    "version": {"type": "string"}}},
            "environment": {"$ref": "#/$defs/environment"},
            "cases": {"type": "array", "items": {"$ref": "#/$defs/case"}},
            # profile: what ``--merge`` checks (dsconv_cli/services/gate.py)
            "config_digest": {"type": "string"},
            "shard": {"type": "object", "required": ["index", "count"],
                      "additionalProperties": False,
                      "properties": {"index": {"type": "integer", "minimum": 1,
                                               "maximum": 1000},
                                     "count": {"type": "integer", "minimum": 1,
                                               "maximum": 1000}}},
            # the cases this run was to run (after --only and --shard), and how it judged
            "expected_cases": {"type": "array", "items": {"type": "string"}},
            "dry_run": {"type": "boolean"},
            "strict": {"type": "boolean"},
            "interrupted": {"type": "boolean"},
            "exit_status": {"type": "integer", "minimum": 0},
            "runtime_errors": {"type": "object", "additionalProperties": {"type": "string"}},
            # what the run warned about beyond its cases' flags (a calibration not cached)
            "warnings": {"type": "array", "items": {"type": "string"}},
        },
        "$defs": dict(sorted(defs.items())),
    }
