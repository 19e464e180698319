"""The seams: one renderer per format, one registry per kind and runtime, typed results
serialised in one place with a schema generated from them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsconv_cli.cases import resolve_layer
from dsconv_cli.cli import app
from dsconv_cli.kinds import KINDS
from dsconv_cli.render import RENDERERS, OutputFormat, compare_view
from dsconv_cli.results import ComparedCase, envelope, report_schema, to_json

from .utils import validate_report

ROOT = Path(__file__).parents[1]
runner = CliRunner()


def test_every_format_has_a_renderer() -> None:
    assert set(RENDERERS) == set(OutputFormat)
    env = envelope([resolve_layer({"in": 8, "hw": (4, 4)}).to_result()])
    for fmt, renderer in RENDERERS.items():
        buf = io.StringIO()
        renderer.write(env, compare_view, buf)
        assert "589" not in buf.getvalue()  # a small case, not the seed
        assert buf.getvalue().strip(), fmt


def test_every_format_value_runs_on_the_command_line() -> None:
    for fmt in OutputFormat:
        r = runner.invoke(app, ["compare", "--in", "8", "--hw", "4", "--format", fmt.value])
        assert r.exit_code == 0, (fmt, r.output)


def test_shipped_report_schema_is_generated_from_the_results() -> None:
    shipped = json.loads((ROOT / "dsconv_cli" / "report.schema.json").read_text())
    assert shipped == report_schema()


def test_json_is_the_serialised_result() -> None:
    case = resolve_layer({"in": 256, "out": 256, "kernel": (3, 3), "hw": (14, 14)})
    result = case.to_result()
    assert isinstance(result, ComparedCase)
    d = to_json(result)
    # optional fields that are None are left out; required ones are written, null included
    assert "speedup" not in d and "why" not in d and "theory" in d
    assert d["standard"]["params"] == 589_824 and d["candidate"]["macs"] == 13_296_640
    r = runner.invoke(app, ["compare", "--in", "256", "-k", "3", "--hw", "14", "--json"])
    assert json.loads(r.stdout)["cases"][0] == d
    validate_report(json.loads(r.stdout))


def test_schema_rejects_a_wrong_type() -> None:
    import jsonschema

    d = envelope([resolve_layer({"in": 8, "hw": (4, 4)}).to_result()])
    d["cases"][0]["standard"]["params"] = "many"
    with pytest.raises(jsonschema.ValidationError):
        validate_report(d)


def test_cli_kind_choices_come_from_the_registry() -> None:
    r = runner.invoke(app, ["compare", "--in", "8", "--hw", "4", "--kind", "nope"])
    assert r.exit_code == 2
    for kind in KINDS:
        assert kind in r.output


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_resolves_and_its_options_apply(kind: str) -> None:
    case = resolve_layer({"in": 16, "hw": (8, 8), "kind": kind})
    assert case.kind == kind and case.costs()[1].macs > 0
    for opt in KINDS[kind].options:
        assert any(opt in e.options for e in KINDS.values())
    others = set().union(*(e.options for e in KINDS.values())) - KINDS[kind].options
    for opt in others:
        with pytest.raises(Exception, match="does not apply"):
            resolve_layer({"in": 16, "hw": (8, 8), "kind": kind,
                           opt: (3, 3) if opt in ("kernel", "stride", "dilation") else 1})


def test_runtime_registry_has_eager() -> None:
    pytest.importorskip("torch")
    import torch

    from dsconv_cli.errors import InputError
    from dsconv_cli.torch_backend.runtimes import RUNTIMES, get_runtime

    assert "eager" in RUNTIMES
    rt = get_runtime("eager")
    m = torch.nn.Conv2d(2, 2, 1)
    x = torch.randn(1, 2, 3, 3)
    torch.testing.assert_close(rt.prepare(m, x).fn(), m(x))
    assert rt.record()["runtime"] == "eager"
    with pytest.raises(InputError):
        get_runtime("nope")
