"""validate.py against the jsonschema package (issue 30): the tests of the shipped schemas
used jsonschema and never validate.py, so a validator that read ``exclusiveMinimum`` as
``minimum``, ignored ``additionalProperties: false`` or took a ``oneOf`` matching two shapes
passed. Here both validators judge the same values: small schemas built from every keyword
validate.py knows, and hand-edited instances of both shipped schemas (booleans, floats
for integers and lone surrogates included)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dsconv_cli.validate import KEYWORDS, equal, report_schema, validate
from tests.test_fuzz import _paths

ROOT = Path(__file__).parents[1]
PROFILE_SCHEMA = json.loads((ROOT / "dsconv_cli" / "profile.schema.json").read_text())


def theirs(value: Any, schema: dict[str, Any]) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(value)


def ours(value: Any, schema: dict[str, Any]) -> bool:
    return not validate(value, schema)


# ------------------------------------------------------------------ the audit's survivors

@pytest.mark.parametrize("schema,value", [
    ({"type": "number", "exclusiveMinimum": 0}, 0),
    ({"type": "number", "exclusiveMinimum": 0}, 0.0),
    ({"type": "number", "exclusiveMaximum": 1}, 1),
    ({"type": "object", "properties": {"a": {}}, "additionalProperties": False},
     {"a": 1, "b": 2}),
    ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, 3),
    ({"oneOf": [{"minimum": 0}, {"maximum": 10}]}, 5),
    ({"const": 1}, True),
    ({"enum": [0, 1]}, False),
    ({"type": "integer"}, True),
    ({"type": "number"}, False),
    ({"type": "string", "minItems": 1}, ""),  # minItems is for arrays: this one is valid
    ({"type": "array", "minLength": 1}, []),  # and minLength for strings
])
def test_the_validator_agrees_on_each_keyword(schema: dict[str, Any], value: Any) -> None:
    assert ours(value, schema) == theirs(value, schema), (schema, value, validate(value, schema))


def test_json_equality_is_json_schemas() -> None:
    assert not equal(True, 1) and not equal(0, False) and equal(1.0, 1)
    assert equal([1, {"a": True}], [1.0, {"a": True}]) and not equal([1], [True])
    assert not equal({"a": 1}, {"a": 1, "b": 2}) and not equal([1], {"0": 1})


# ------------------------------------------------------------------ generated schemas

SCALARS = st.one_of(st.booleans(), st.none(), st.integers(-3, 3),
                    st.sampled_from([0.0, 1.0, 2.0, -1.0, 0.5, 2.5, 1e300]),
                    st.sampled_from(["", "a", "ab", "abc", "\ud800", "x\udfff", "é"]))
VALUES = st.recursive(SCALARS, lambda kids: st.one_of(
    st.lists(kids, max_size=3), st.dictionaries(st.sampled_from(["a", "b", "c"]), kids,
                                                max_size=3)), max_leaves=8)
TYPES = ["object", "array", "string", "boolean", "null", "number", "integer"]
NUM = st.sampled_from([-1, 0, 0.5, 1, 2, 2.0, 3])
COUNT = st.integers(0, 3)


def _schemas(kids: Any) -> Any:
    return st.fixed_dictionaries({}, optional={
        "type": st.one_of(st.sampled_from(TYPES), st.lists(st.sampled_from(TYPES),
                                                           min_size=1, max_size=3,
                                                           unique=True)),
        "enum": st.lists(SCALARS, min_size=1, max_size=3),
        "const": VALUES,
        "anyOf": st.lists(kids, min_size=1, max_size=3),
        "oneOf": st.lists(kids, min_size=1, max_size=3),
        "allOf": st.lists(kids, min_size=1, max_size=2),
        "properties": st.dictionaries(st.sampled_from(["a", "b", "c"]), kids, max_size=2),
        "required": st.lists(st.sampled_from(["a", "b", "c"]), max_size=2, unique=True),
        "additionalProperties": st.one_of(st.booleans(), kids),
        "items": kids,
        "prefixItems": st.lists(kids, min_size=1, max_size=2),
        "minItems": COUNT, "maxItems": COUNT, "minLength": COUNT, "maxLength": COUNT,
        "minimum": NUM, "maximum": NUM, "exclusiveMinimum": NUM, "exclusiveMaximum": NUM,
    })


SCHEMAS = st.recursive(st.just({}), _schemas, max_leaves=6)


#: cheap (a few ms each) and the only place a keyword's corner is met by chance: many
GENERATED = settings(max_examples=max(2000, settings().max_examples), deadline=None,
                     derandomize=True)


@GENERATED
@given(schema=SCHEMAS, value=VALUES)
def test_the_validator_agrees_with_jsonschema_on_generated_schemas(schema: dict[str, Any],
                                                                   value: Any) -> None:
    """Every keyword validate.py knows (but ``$ref``, which the shipped schemas cover),
    nested, against values with booleans, floats for integers and lone surrogates."""
    assert set(schema) <= KEYWORDS
    assert ours(value, schema) == theirs(value, schema), (schema, value,
                                                         validate(value, schema))


# ------------------------------------------------------------------ the shipped schemas

def _dry_report() -> dict[str, Any]:
    from typer.testing import CliRunner

    from dsconv_cli.cli import app

    cfg = ROOT / "configs" / "smoke.yaml"
    r = CliRunner().invoke(app, ["profile", str(cfg), "--dry-run", "--json", "--shard", "1/2"])
    assert r.exit_code in (0, 1), r.output
    return json.loads(r.stdout)


def _instances() -> list[tuple[dict[str, Any], Any]]:
    """(schema, a valid instance) of both shipped schemas: a dry-run shard report, a
    measured shard report, and every example config."""
    from tests.test_merge_judge import measured_case

    measured = {"schema_version": 1, "tool": {"name": "dsconv", "version": "0"},
                "environment": {"device": "cpu", "threads": 2}, "cases": [
                    measured_case("a"), measured_case("b", ci=(1.4, 1.6), min_speedup=1.45)],
                "config_digest": "x", "shard": {"index": 1, "count": 2},
                "expected_cases": ["a", "b"], "exit_status": 0}
    out: list[tuple[dict[str, Any], Any]] = [(report_schema(), _dry_report()),
                                             (report_schema(), measured)]
    for p in sorted((ROOT / "configs").glob("*.yaml")):
        out.append((PROFILE_SCHEMA, yaml.safe_load(p.read_text())))
    return out


INSTANCES = _instances()


EDITS = st.one_of(VALUES, st.sampled_from([1.0, 2.0, 0, -1, 1.5, True, False, None, "\ud800",
                                           {"extra": 1}, [], 10**6]))


def test_the_shipped_instances_are_valid() -> None:
    for schema, doc in INSTANCES:
        assert theirs(doc, schema) and ours(doc, schema), validate(doc, schema)[:3]


@GENERATED
@given(data=st.data(), value=EDITS, how=st.sampled_from(["set", "delete", "add"]))
def test_the_validator_agrees_with_jsonschema_on_the_shipped_schemas(data: Any, value: Any,
                                                                    how: str) -> None:
    """One value of a valid instance replaced, deleted or given an unknown sibling key:
    both validators say the same."""
    schema, doc = data.draw(st.sampled_from(INSTANCES))
    doc = copy.deepcopy(doc)
    path = data.draw(st.sampled_from(_paths(doc)))
    if not path:
        doc = value
    else:
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        if how == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif how == "add" and isinstance(parent, dict):
            parent[data.draw(st.sampled_from(["zz", "extra", "in", "name"]))] = value
        else:
            parent[path[-1]] = value
    assert ours(doc, schema) == theirs(doc, schema), (path, value, validate(doc, schema)[:3])
