"""A small JSON Schema validator over the subset dsconv's own schemas use (stdlib only).

Reports read back (``profile --merge``, ``--baseline``) are checked against the shipped
``report.schema.json`` with it, so a runtime install needs no ``jsonschema``. It knows the
keywords in :data:`KEYWORDS` (a test checks the shipped schema uses no other) and returns
every problem as ``(key path, message)``; numbers must be finite (JSON has no NaN).
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["ANNOTATIONS", "KEYWORDS", "fmt_path", "report_schema", "validate"]

#: keywords that constrain a value
KEYWORDS = frozenset({
    "type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "properties", "required",
    "additionalProperties", "items", "prefixItems", "minItems", "maxItems", "minimum",
    "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength"})
#: keywords that only describe
ANNOTATIONS = frozenset({"title", "description", "default", "$schema", "$id", "$defs",
                         "examples"})

Path_ = tuple[Any, ...]
Problem = tuple[Path_, str]

_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (
        isinstance(v, float) and v.is_integer()),
}


@cache
def report_schema() -> dict[str, Any]:
    """The shipped ``report.schema.json``."""
    return json.loads((Path(__file__).parent / "report.schema.json").read_text())


def fmt_path(path: Path_) -> str:
    """``cases[0].measured.median_ms``; the top level is ``(top level)``."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(v), type(v).__name__)


def validate(value: Any, schema: dict[str, Any], root: dict[str, Any] | None = None,
             path: Path_ = ()) -> list[Problem]:
    """Every problem of ``value`` against ``schema`` (``root`` resolves ``$ref``)."""
    root = schema if root is None else root
    if "$ref" in schema:
        ref = schema["$ref"]
        target: Any = root
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        return validate(value, target, root, path)
    if isinstance(value, float) and not math.isfinite(value):
        return [(path, f"is not a finite number ({value})")]
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            return [(path, f"must be {' or '.join(types)}, got {_kind(value)}")]
    if "const" in schema and value != schema["const"]:
        return [(path, f"must be {schema['const']!r}, got {value!r}")]
    if "enum" in schema and value not in schema["enum"]:
        return [(path, f"must be one of {', '.join(map(repr, schema['enum']))}, got {value!r}")]
    out = _alternatives(value, schema, root, path)
    out += _bounds(value, schema, path)
    if isinstance(value, dict):
        out += _object(value, schema, root, path)
    if isinstance(value, list):
        out += _array(value, schema, root, path)
    return out


def _alternatives(value: Any, schema: dict[str, Any], root: dict[str, Any],
                  path: Path_) -> list[Problem]:
    out = [p for sub in schema.get("allOf", ()) for p in validate(value, sub, root, path)]
    for key in ("anyOf", "oneOf"):
        if key not in schema:
            continue
        tried: list[list[Problem]] = [validate(value, sub, root, path) for sub in schema[key]]
        if any(not t for t in tried):
            if key == "oneOf" and sum(not t for t in tried) > 1:
                out.append((path, "matches more than one of its allowed shapes"))
            continue
        if all(len(t) == 1 and t[0][0] == path for t in tried):  # all fail right here
            out.append((path, "; or ".join(dict.fromkeys(t[0][1] for t in tried))))
            continue
        # the shape it came closest to: one its type matched (a wrong value inside an
        # object beats "must be null"), then the fewest problems, then the deepest
        inside = [t for t in tried if not (len(t) == 1 and t[0][0] == path)]
        closest: list[Problem] = min(inside or tried, key=_closeness)
        out += closest
    return out


def _closeness(problems: list[Problem]) -> tuple[int, int]:
    """Sorts the failed alternatives of an anyOf: the fewest problems, then the deepest."""
    return len(problems), -max(len(p) for p, _ in problems)


def _bounds(value: Any, schema: dict[str, Any], path: Path_) -> list[Problem]:
    out = []
    if _TYPES["number"](value):
        for key, bad in (("minimum", lambda v, b: v < b), ("maximum", lambda v, b: v > b),
                         ("exclusiveMinimum", lambda v, b: v <= b),
                         ("exclusiveMaximum", lambda v, b: v >= b)):
            if key in schema and bad(value, schema[key]):
                out.append((path, f"{value!r} breaks {key} {schema[key]}"))
    sized = len(value) if isinstance(value, (str, list)) else None
    if sized is not None:
        for key, bad in (("minItems", lambda n, b: n < b), ("maxItems", lambda n, b: n > b),
                         ("minLength", lambda n, b: n < b), ("maxLength", lambda n, b: n > b)):
            if key in schema and bad(sized, schema[key]):
                out.append((path, f"has {sized} item(s), breaks {key} {schema[key]}"))
    return out


def _object(value: dict[str, Any], schema: dict[str, Any], root: dict[str, Any],
            path: Path_) -> list[Problem]:
    out = [((*path, k), "required key is missing") for k in schema.get("required", ())
           if k not in value]
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for k, v in value.items():
        if k in props:
            out += validate(v, props[k], root, (*path, k))
        elif extra is False:
            out.append(((*path, k), f"unknown key; allowed: {', '.join(props)}"))
        elif isinstance(extra, dict):
            out += validate(v, extra, root, (*path, k))
    return out


def _array(value: list[Any], schema: dict[str, Any], root: dict[str, Any],
           path: Path_) -> list[Problem]:
    prefix = schema.get("prefixItems", [])
    out = [p for i, (v, sub) in enumerate(zip(value, prefix, strict=False)) for p in
           validate(v, sub, root, (*path, i))]
    items = schema.get("items")
    if isinstance(items, dict):
        for i in range(len(prefix), len(value)):
            out += validate(value[i], items, root, (*path, i))
    return out
