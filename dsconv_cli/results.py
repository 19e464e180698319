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
    "DsForm",
    "Measurement",
    "ModelAnalysis",
    "ModuleRow",
    "ModuleTime",
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

    def with_share(self, share: float) -> Measurement:
        return dataclasses.replace(self, share_time=round(share, 4))


@dataclass(frozen=True)
class Side:
    """One side of a comparison (or a part of it): its cost and, when timed, measurements."""

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
    spec: Optional[str] = optional()
    parts: Optional[dict[str, Side]] = optional()
    measured: Optional[Measurement] = optional()
    measured_by_format: Optional[dict[str, Measurement]] = optional()
    #: with several --runtime: each runtime's best layout, and the fastest of them
    measured_by_runtime: Optional[list[Measurement]] = optional()
    fastest: Optional[dict[str, Any]] = optional()

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

    def with_ab(self, ab: Any) -> Speedup:
        """This speedup with an :class:`dsconv_cli.stats.ABResult` (A = the faster-hoped
        side, so above 1 means it is faster)."""
        return dataclasses.replace(
            self, estimate=round(ab.estimate, 4), ci95=[round(ab.ci95[0], 4),
                                                        round(ab.ci95[1], 4)],
            p_value=float(f"{ab.p_value:.4g}"), verdict=ab.verdict, mde=round(ab.mde, 4),
            rounds=ab.n[0])


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

    median_ms: float
    share_time: float
    roofline_fraction: Optional[float]


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
    warnings: Optional[list[str]] = optional()


# --------------------------------------------------------------------------- profile

@dataclass(frozen=True)
class BudgetCheck:
    limit: float
    value: Optional[float]
    ok: bool


ProfileVerdict = Literal["pass", "fail", "error", "planned"]


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


# --------------------------------------------------------------------------- schema

#: case shapes not (yet) built from dataclasses: kept as JSON Schema here
_UNTYPED_DEFS: dict[str, Any] = {
    "preset_case": {
        "type": "object",
        "required": ["name", "model", "totals", "stages"],
        "properties": {
            "model": {"type": "object", "required": ["name", "width", "resolution", "classes"]},
            "totals": {"type": "object", "required": ["params", "macs", "flops", "bytes",
                                                      "output_shape"]},
            "stages": {"type": "array", "items": {
                "type": "object", "required": ["stage", "blocks", "params", "macs"]}},
            "layers": {"type": "array"},
            "full_conv": {"type": "object", "required": ["totals"]},
            "measured": {"$ref": "#/$defs/Measurement"},
        },
    },
    "convert_case": {
        "type": "object",
        "required": ["name", "layers", "totals", "verification"],
        "properties": {"layers": {"type": "array"}, "totals": {"type": "object"},
                       "verification": {"type": "object"}},
    },
}


def report_schema() -> dict[str, Any]:
    """The JSON Schema of every report, generated from the result classes (needs pydantic,
    which only this function and the config module import)."""
    from pydantic import TypeAdapter

    typed = Union[ComparedCase, ProfileCaseResult, ModelAnalysis]
    schema = TypeAdapter(list[typed]).json_schema(ref_template="#/$defs/{model}")
    defs = schema.pop("$defs")
    defs.update(_UNTYPED_DEFS)
    defs["environment"] = {
        "type": "object",
        "properties": {
            "device": {"type": "string"}, "device_name": {"type": "string"},
            "torch": {"type": "string"}, "threads": {"type": "integer", "minimum": 1},
            "dtype": {"type": "string"}, "tf32": {"type": "boolean"},
            "calibration": {"type": "object"},
        },
    }
    defs["case"] = {"anyOf": [{"$ref": "#/$defs/ComparedCase"},
                              {"$ref": "#/$defs/ProfileCaseResult"},
                              {"$ref": "#/$defs/ModelAnalysis"},
                              {"$ref": "#/$defs/preset_case"},
                              {"$ref": "#/$defs/convert_case"}]}
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
        },
        "$defs": dict(sorted(defs.items())),
    }
