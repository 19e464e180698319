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
from typing import TYPE_CHECKING, Any, ClassVar, Optional, Union

from . import __version__
from .cost import Cost

__all__ = [
    "SCHEMA_VERSION",
    "BlockStats",
    "BudgetCheck",
    "ComparedCase",
    "ConvertChoices",
    "ConvertExport",
    "ConvertLayer",
    "ConvertResult",
    "ConvertSource",
    "ConvertTiming",
    "ConvertTotals",
    "Distillation",
    "ConvertInt8",
    "DsForm",
    "Fidelity",
    "Int8Timing",
    "LatencyForm",
    "LatencyLayer",
    "LatencyReport",
    "LatencyRound",
    "LayerComparison",
    "LayerOutputError",
    "Measurement",
    "ModelAnalysis",
    "ModuleRow",
    "ModuleTime",
    "OpTime",
    "PresetFullConv",
    "PresetLayer",
    "PresetModel",
    "PresetResult",
    "PresetStage",
    "ProfileCaseResult",
    "ProfileResult",
    "ProfileVerdict",
    "Reduction",
    "Rendered",
    "Side",
    "Speedup",
    "Theory",
    "UncountedOp",
    "Verification",
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


class Rendered:
    """What a command's result does beside holding its figures (the Python API's face):
    :meth:`to_dict` is its case in the command's JSON report, and it renders itself through
    the command's view (:mod:`dsconv_cli.render.show`): ``print(result)`` is the table at
    the terminal's width, ``__rich__`` for Rich, ``_repr_markdown_``/``_repr_html_`` the
    Markdown format for notebooks."""

    #: the function of :mod:`dsconv_cli.render.views` that draws it
    _view: ClassVar[str] = ""

    def report(self) -> dict[str, Any]:
        """The whole JSON report this result is the case of (the envelope)."""
        return envelope([self])

    def to_dict(self) -> dict[str, Any]:
        """The case as the command's JSON report holds it (NaN and inf as ``None``)."""
        from .render.formats import json_safe

        data: dict[str, Any] = json_safe(to_json(self))
        return data

    def __str__(self) -> str:
        from .render.show import table_text

        return table_text(self.report(), self._view)

    def __rich__(self) -> Any:
        from .render.show import rich_renderable

        return rich_renderable(self.report(), self._view)

    def _repr_markdown_(self) -> str:
        from .render.show import markdown_text

        return markdown_text(self.report(), self._view)

    def _repr_html_(self) -> str:
        from .render.show import html_text

        return html_text(self.report(), self._view)


# --------------------------------------------------------------------------- measurement


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
class ComparedCase(Rendered):
    """A layer comparison: the standard side against the candidate block."""

    _view = "compare_view"

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


#: the Python API's name for a layer comparison (``dsconv_cli.compare_layer``)
LayerComparison = ComparedCase


# --------------------------------------------------------------------------- the rest

#: where each result class of another command lives (imported on first use)
_ELSEWHERE: dict[str, str] = {
    "BlockStats": "results_measure",
    "Measurement": "results_measure",
    "Speedup": "results_measure",
    "OpTime": "results_measure",
    "Int8Timing": "results_measure",
    "ConvertInt8": "results_convert",
    "DsForm": "results_model",
    "ModuleTime": "results_model",
    "ModuleRow": "results_model",
    "UncountedOp": "results_model",
    "ModelAnalysis": "results_model",
    "BudgetCheck": "results_profile",
    "ProfileCaseResult": "results_profile",
    "ProfileResult": "results_profile",
    "ProfileVerdict": "results_profile",
    "PresetModel": "results_presets",
    "PresetStage": "results_presets",
    "PresetLayer": "results_presets",
    "PresetFullConv": "results_presets",
    "PresetResult": "results_presets",
    "LayerOutputError": "results_convert",
    "ConvertLayer": "results_convert",
    "ConvertTotals": "results_convert",
    "Verification": "results_convert",
    "Fidelity": "results_convert",
    "ConvertTiming": "results_convert",
    "Distillation": "results_convert",
    "ConvertSource": "results_convert",
    "ConvertChoices": "results_convert",
    "ConvertExport": "results_convert",
    "LatencyForm": "results_convert",
    "LatencyLayer": "results_convert",
    "LatencyRound": "results_convert",
    "LatencyReport": "results_convert",
    "ConvertResult": "results_convert",
}


def __getattr__(name: str) -> Any:
    """``from dsconv_cli.results import ConvertResult``: the class, from its module."""
    module = _ELSEWHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__package__}.{module}"), name)


if TYPE_CHECKING:  # for mypy; at run time __getattr__ imports them on first use
    from .results_convert import (
        ConvertChoices,
        ConvertExport,
        ConvertInt8,
        ConvertLayer,
        ConvertResult,
        ConvertSource,
        ConvertTiming,
        ConvertTotals,
        Distillation,
        Fidelity,
        LatencyForm,
        LatencyLayer,
        LatencyReport,
        LatencyRound,
        LayerOutputError,
        Verification,
    )
    from .results_measure import BlockStats, Int8Timing, Measurement, OpTime, Speedup
    from .results_model import (
        DsForm,
        ModelAnalysis,
        ModuleRow,
        ModuleTime,
        UncountedOp,
    )
    from .results_presets import (
        PresetFullConv,
        PresetLayer,
        PresetModel,
        PresetResult,
        PresetStage,
    )
    from .results_profile import (
        BudgetCheck,
        ProfileCaseResult,
        ProfileResult,
        ProfileVerdict,
    )

# --------------------------------------------------------------------------- schema

#: the case types a report may hold
CASE_TYPES = ("ComparedCase", "ProfileCaseResult", "ModelAnalysis", "PresetResult",
              "ConvertResult")

#: results whose every key is declared: their schema admits no other
_CLOSED = ("CostTotals", "PresetModel", "PresetStage", "PresetLayer", "PresetFullConv",
           "PresetResult", "LayerOutputError", "ConvertLayer", "ConvertTotals", "Verification",
           "Fidelity", "ConvertTiming", "ConvertSource", "ConvertChoices", "ConvertExport",
           "ConvertResult", "Distillation", "LatencyForm", "LatencyLayer", "LatencyRound",
           "LatencyReport")


def report_schema() -> dict[str, Any]:
    """The JSON Schema of every report, generated from the result classes (needs pydantic,
    which only this function and the config module import)."""
    from pydantic import TypeAdapter

    names = globals()
    for name in _ELSEWHERE:  # every class, so that pydantic resolves the annotations
        names.setdefault(name, __getattr__(name))
    case_types = tuple(names[n] for n in CASE_TYPES)
    typed = Union[case_types]  # type: ignore[valid-type]
    schema = TypeAdapter(list[typed]).json_schema(ref_template="#/$defs/{model}")
    defs = schema.pop("$defs")
    for name in _CLOSED:
        defs[name]["additionalProperties"] = False
    defs["environment"] = {
        "type": "object",
        "properties": {
            "device": {"type": "string"}, "device_name": {"type": "string"},
            "torch": {"type": "string"}, "threads": {"type": "integer", "minimum": 1},
            "dtype": {"type": "string"}, "tf32": {"type": "boolean"},
            "calibration": {"type": "object"},
        },
    }
    defs["case"] = {"anyOf": [{"$ref": f"#/$defs/{name}"} for name in CASE_TYPES]}
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
