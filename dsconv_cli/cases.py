"""Layer cases: a user's description of one comparison (command line or YAML alike),
validated into a standard spec and a candidate spec, and expanded into sweeps.

Field names here are neutral (``in``, ``kernel``, ``depth_multiplier``); the command line
shows them as ``--in``, ``--kernel``, ``--depth-multiplier`` and a config file as
``cases[0].layer.in``. Stdlib only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .cost import DTYPE_BYTES, Cost, closed_form_ratio, cost
from .errors import FieldError, InputError
from .kinds import KINDS, show_value
from .results import ComparedCase, Reduction, Side, Theory, to_json
from .specs import ACTIVATIONS, Spec

__all__ = [
    "FIELDS",
    "KINDS",
    "LayerCase",
    "LIMITS",
    "MAX_CASES",
    "expand_grid",
    "parse_value",
    "resolve_layer",
]

MAX_CASES = 1000

# field -> value type; order is the sweep order (the command line's option order)
FIELDS: dict[str, str] = {
    "in": "int", "out": "int", "kernel": "pair", "hw": "pair", "stride": "pair",
    "padding": "padding", "dilation": "pair", "groups": "int", "batch": "int",
    "depth_multiplier": "int", "expansion": "float", "expanded_channels": "int",
    "squeeze_channels": "int", "eca_k": "int",
    "bias": "bool", "se": "bool", "activation": "str", "kind": "str",
}
#: fields every kind takes; the rest apply only to the kinds whose entry lists them
_COMMON = frozenset({"in", "hw", "batch", "kind"})


def _int(field: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise FieldError(field, f"expected an integer, got {text!r}") from None


def parse_value(field: str, value: Any) -> Any:
    """Parse one value of ``field`` from text (``3``, ``3x5``, ``same``) or pass a typed
    value (from YAML) through with its type checked."""
    typ = FIELDS[field]
    if typ in ("pair", "padding"):
        if typ == "padding" and value == "same":
            return "same"
        if isinstance(value, bool):
            raise FieldError(field, f"expected an integer or HxW, got {value!r}")
        if isinstance(value, int):
            return (value, value)
        if isinstance(value, str):
            parts = value.lower().split("x")
            if len(parts) == 1:
                n = _int(field, parts[0])
                return (n, n)
            if len(parts) == 2:
                return (_int(field, parts[0]), _int(field, parts[1]))
        extra = ", HxW or 'same'" if typ == "padding" else " or HxW (e.g. 3x5)"
        raise FieldError(field, f"expected an integer{extra}, got {value!r}")
    if typ == "int":
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise FieldError(field, f"expected an integer, got {value!r}")
        return value if isinstance(value, int) else _int(field, value)
    if typ == "float":
        if isinstance(value, bool):
            raise FieldError(field, f"expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise FieldError(field, f"expected a number, got {value!r}") from None
    return value


#: the largest value each size accepts: far beyond any real layer, small enough that every
#: count stays an exact integer and no float noise reaches a table
LIMITS = {"in": 1 << 20, "out": 1 << 20, "expanded_channels": 1 << 20,
          "squeeze_channels": 1 << 20, "groups": 1 << 20, "depth_multiplier": 1 << 10,
          "kernel": 1 << 10, "hw": 1 << 16, "stride": 1 << 10, "dilation": 1 << 10,
          "batch": 1 << 16, "eca_k": 1 << 10, "expansion": 1 << 10}


def _positive(field: str, value: int | float | tuple[int, ...]) -> None:
    values = value if isinstance(value, tuple) else (value,)
    if any(not math.isfinite(v) for v in values):
        raise FieldError(field, f"must be a finite number, got {show_value(value)}")
    if any(v <= 0 for v in values):
        raise FieldError(field, f"must be positive, got {show_value(value)}")
    limit = LIMITS.get(field)
    if limit is not None and any(v > limit for v in values):
        raise FieldError(field, f"must be at most {limit:,}, got {show_value(value)}")


@dataclass(frozen=True)
class LayerCase:
    """One resolved comparison: the layer the user asked about and its baseline."""

    name: str
    request: Mapping[str, Any]
    input_shape: tuple[int, int, int, int]
    standard: Spec
    candidate: Spec
    dtype: str = "fp32"

    @property
    def kind(self) -> str:
        return str(self.request["kind"])

    def costs(self) -> tuple[Cost, Cost]:
        e = DTYPE_BYTES[self.dtype]
        return cost(self.standard, self.input_shape, e), cost(self.candidate, self.input_shape, e)

    def to_result(self) -> ComparedCase:
        """The analytic comparison (no measurement)."""
        std, cand = self.costs()
        ratio = closed_form_ratio(self.standard, self.candidate)
        return ComparedCase(
            name=self.name,
            input={k: (list(v) if isinstance(v, tuple) else v)
                   for k, v in self.request.items()} | {"dtype": self.dtype},
            standard=Side.of(std, spec=self.standard.__class__.__name__),
            candidate=Side.of(cand),
            reduction=Reduction(
                params=round(std.params / cand.params, 4) if cand.params else None,
                macs=round(std.macs / cand.macs, 4) if cand.macs else None),
            theory=None if ratio is None else Theory(
                ratio=round(ratio, 4), reduction=round(1 / ratio, 4),
                formula="m/Cout + m/(Kh*Kw)"),
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(to_json(self.to_result()))


def resolve_layer(values: Mapping[str, Any], name: str = "", dtype: str = "fp32") -> LayerCase:
    """Validate one layer description (parsed values; ``None`` = not given)."""
    given = {k: v for k, v in values.items() if v is not None}
    kind = given.get("kind", "separable")
    if kind not in KINDS:
        raise FieldError("kind", f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    if dtype not in DTYPE_BYTES:
        raise FieldError("dtype", f"unknown dtype {dtype!r}; choose from "
                         f"{', '.join(DTYPE_BYTES)}")
    entry = KINDS[kind]
    for field in given:
        if field not in _COMMON and field not in entry.options:
            takes = [k for k, e in KINDS.items() if field in e.options]
            raise FieldError(field, f"does not apply to kind {kind!r} (it applies to "
                             f"{', '.join(takes)})")
    for req in ("in", "hw"):
        if req not in given:
            raise FieldError(req, "is required")
    cin = given["in"]
    for f in ("in", "out", "kernel", "hw", "stride", "dilation", "groups", "batch",
              "depth_multiplier", "expansion", "expanded_channels", "squeeze_channels",
              "eca_k"):
        if f in given:
            _positive(f, given[f])
    if "activation" in given and given["activation"] not in ACTIVATIONS:
        raise FieldError("activation", f"unknown activation {given['activation']!r}; "
                         f"choose from {', '.join(ACTIVATIONS)}")
    pad = given.get("padding")
    if isinstance(pad, tuple) and min(pad) < 0:
        raise FieldError("padding", f"must be >= 0, got {show_value(pad)}")
    batch = given.get("batch", 1)
    hw = given["hw"]
    shape = (batch, cin, hw[0], hw[1])
    request: dict[str, Any] = {"kind": kind, "in": cin, "hw": hw, "batch": batch}
    extra, standard, candidate = entry.resolve(given)
    request |= extra
    return _checked(LayerCase(name or kind, request, shape, standard, candidate, dtype))


def _checked(case: LayerCase) -> LayerCase:
    case.costs()  # raises FieldError("hw", ...) for an output size <= 0
    return case


def expand_grid(base: str, values: Mapping[str, Sequence[Any] | Any],
                max_cases: int = MAX_CASES) -> list[tuple[str, dict[str, Any]]]:
    """Cartesian product of the list-valued fields, in the order given.

    Names are stable: ``base`` for one case, ``base[in=16,hw=56]`` for grid cases
    (only the swept fields appear).
    """
    fields = list(values)
    lists = [list(v) if isinstance(v, list) else [v] for v in values.values()]
    n = math.prod(len(v) for v in lists)
    if n > max_cases:
        names = [f for f, v in zip(fields, lists, strict=True) if len(v) > 1]
        raise InputError(f"sweep over {', '.join(names)} has {n} cases, more than the cap "
                         f"of {max_cases}", hint="narrow the lists or raise --max-cases")
    swept = [i for i, v in enumerate(lists) if len(v) > 1]
    out: list[tuple[str, dict[str, Any]]] = []
    for combo in itertools.product(*lists):
        label = ",".join(f"{fields[i]}={show_value(combo[i])}" for i in swept)
        out.append((f"{base}[{label}]" if label else base, dict(zip(fields, combo, strict=True))))
    return out
