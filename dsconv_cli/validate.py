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

__all__ = ["ANNOTATIONS", "KEYWORDS", "equal", "fmt_path", "report_schema", "text_problems",
           "validate"]

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


def equal(a: Any, b: Any) -> bool:
    """JSON equality as JSON Schema's ``const`` and ``enum`` mean it: ``true`` is not
    ``1`` (Python's ``True == 1`` is), while ``1.0`` is ``1``; arrays and objects
    compare item by item."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, dict)) or isinstance(b, (list, dict)):
        return False
    return bool(a == b)


def text_problems(value: Any, path: Path_ = ()) -> list[Problem]:
    """Every string (key or value) that is not Unicode text: a lone surrogate, which JSON's
    ``\\ud800`` escape can write and no terminal or file encoding can print. JSON Schema
    has no word for it (a lone surrogate is a valid ``string`` to it), so reports read
    back are checked for it beside :func:`validate`."""
    out: list[Problem] = []
    stack: list[tuple[Path_, Any]] = [(path, value)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, str):
            if not _is_text(v):
                out.append((where, f"is not Unicode text (a lone surrogate): {ascii(v)[:60]}"))
        elif isinstance(v, dict):
            for k, item in v.items():
                if isinstance(k, str) and not _is_text(k):
                    out.append((where, f"has a key that is not Unicode text: {ascii(k)[:60]}"))
                    continue
                stack.append(((*where, k), item))
        elif isinstance(v, list):
            stack.extend(((*where, i), item) for i, item in enumerate(v))
    return out


def _is_text(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
    if "const" in schema and not equal(value, schema["const"]):
        return [(path, f"must be {schema['const']!r}, got {value!r}")]
    if "enum" in schema and not any(equal(value, e) for e in schema["enum"]):
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
    # minItems/maxItems bound arrays, minLength/maxLength strings (in code points)
    keys = (("minItems", "maxItems") if isinstance(value, list) else
            ("minLength", "maxLength") if isinstance(value, str) else ())
    for key in keys:
        if key in schema:
            n, b = len(value), schema[key]
            if n < b if key.startswith("min") else n > b:
                out.append((path, f"has {n} {'item' if key.endswith('Items') else 'character'}"
                                  f"(s), breaks {key} {b}"))
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
