"""The seams: one renderer per format, one registry per kind and runtime, typed results
serialised in one place with a schema generated from them."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

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


# ------------------------------------------- the CLI never loads torch; functions stay short

def test_no_cli_module_imports_torch() -> None:
    """Importing every ``dsconv_cli.cli`` module (and the option records it builds) leaves
    torch out of ``sys.modules``: the option dataclasses live in a torch-free module."""
    import subprocess
    import sys

    code = ("import importlib, pkgutil, sys, dsconv_cli.cli as c, dsconv_cli.options\n"
            "for m in pkgutil.iter_modules(c.__path__): importlib.import_module("
            "'dsconv_cli.cli.' + m.name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or "
            "'torch_backend' in m))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_option_records_build_without_torch() -> None:
    """``compare --measure``'s options are built before any torch import (a bad --runtime
    is refused from the registry of names, not from the backend)."""
    import subprocess
    import sys

    code = ("import sys; from dsconv_cli.cli.options import measure_options, Device, Dtype, "
            "MemoryFormat; o = measure_options(Device.cpu, Dtype.fp32, None, MemoryFormat.both,"
            " 0.1, 1, 10, 'eager,compile'); print(o.memory_formats, o.runtimes, "
            "'torch' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert p.stdout.split() == ["('nchw',", "'channels_last')", "('eager',", "'compile')",
                                "False"], p.stderr


def test_cli_enums_agree_with_the_registries() -> None:
    from dsconv_cli.cli.options import Device, Dtype, MemoryFormat
    from dsconv_cli.cost import DTYPE_BYTES
    from dsconv_cli.options import DEVICE_NAMES, MEMORY_FORMAT_NAMES

    assert tuple(d.value for d in Device) == DEVICE_NAMES
    assert tuple(d.value for d in Dtype) == tuple(DTYPE_BYTES)
    assert tuple(f.value for f in MemoryFormat) == (*MEMORY_FORMAT_NAMES, "both")


def test_backend_tables_are_keyed_by_the_option_names() -> None:
    pytest.importorskip("torch")
    from dsconv_cli.options import MEMORY_FORMAT_NAMES, MeasureOptions
    from dsconv_cli.torch_backend import timing

    assert tuple(timing.MEMORY_FORMATS) == MEMORY_FORMAT_NAMES
    assert timing.MeasureOptions is MeasureOptions


#: a command's options are its signature (one line each): only its body counts
COMMAND_BODY_LINES = 60
FUNCTION_LINES = 80


def _functions() -> list[tuple[str, Any, bool]]:
    import ast

    from dsconv_cli.cli.app import COMMANDS, command_function

    commands = {(command_function(c).__module__, c) for c in COMMANDS}
    out = []
    for path in sorted((ROOT / "dsconv_cli").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", node,
                            (module, node.name) in commands))
    return out


def test_no_function_is_too_long() -> None:
    """No command function over 60 lines (its body; the option signature apart), no other
    function in the package over 80 lines."""
    import ast

    too_long = []
    commands = 0
    for where, node, is_command in _functions():
        if is_command:
            commands += 1
            body = node.body
            if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]  # the docstring is the help text
            lines = body[-1].end_lineno - body[0].lineno + 1
            if lines > COMMAND_BODY_LINES:
                too_long.append(f"{where}: command body {lines} lines")
        elif node.end_lineno - node.lineno + 1 > FUNCTION_LINES:
            too_long.append(f"{where}: {node.end_lineno - node.lineno + 1} lines")
    assert commands == 3
    assert not too_long, too_long


def test_convert_command_and_service_start_without_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, dsconv_cli.cli.convert, dsconv_cli.services.convert; "
            "print(sorted(m for m in sys.modules if m == 'torch' or 'torch_backend' in m))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_convert_and_preset_schemas_are_closed() -> None:
    """The typed convert and preset results admit no key they do not declare."""
    import jsonschema

    from dsconv_cli.presets import get_preset
    from dsconv_cli.services.compare import analyse_preset

    schema = report_schema()
    for name in ("ConvertResult", "ConvertLayer", "Fidelity", "Verification", "PresetResult",
                 "PresetStage", "CostTotals"):
        assert schema["$defs"][name]["additionalProperties"] is False, name
    d = envelope([analyse_preset(get_preset("mobilenet_v1"), 1, "fp32", True, True)])
    validate_report(d)
    d["cases"][0]["stages"][0]["typo"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate_report(d)


def test_preset_json_is_the_serialised_typed_result() -> None:
    from dsconv_cli.presets import get_preset
    from dsconv_cli.results import PresetResult
    from dsconv_cli.services.compare import analyse_preset

    result = analyse_preset(get_preset("mobilenet_v1"), 2, "fp32", True, True)
    assert isinstance(result, PresetResult)
    r = runner.invoke(app, ["compare", "--model", "mobilenet_v1", "--batch", "2",
                            "--per-layer", "--vs", "full-conv", "--json"])
    assert r.exit_code == 0, r.output
    case = json.loads(r.stdout)["cases"][0]
    assert case == to_json(result)
    # MobileNet-V1 at width 1 (the paper: 4.2M params, 569M mult-adds), batch 2
    assert round(case["totals"]["params"], -5) == 4_200_000
    assert round(case["totals"]["macs"] / 2, -6) == 569_000_000
    assert list(case) == ["name", "model", "totals", "stages", "layers", "full_conv"]


def test_convert_command_is_thin() -> None:
    """The convert command only parses options; the work is the service's, in short steps."""
    import ast
    import inspect

    import dsconv_cli.cli.convert as cli_convert
    import dsconv_cli.services.convert as service

    def lengths(module: object) -> dict[str, int]:
        tree = ast.parse(inspect.getsource(module))  # type: ignore[arg-type]
        return {n.name: n.end_lineno - n.lineno + 1 for n in ast.walk(tree)
                if isinstance(n, ast.FunctionDef) and n.end_lineno is not None}

    assert lengths(cli_convert)["convert"] <= 60
    assert max(lengths(service).values()) <= 80
    command = ast.parse(inspect.getsource(cli_convert.convert))
    assert not [n for n in ast.walk(command) if isinstance(n, (ast.Import, ast.ImportFrom))]




def test_cli_code_never_imports_the_torch_backend() -> None:
    """Not at module level and not inside a function either: commands call services, and
    the option records they build are torch-free (``dsconv_cli.options``)."""
    import ast

    found: dict[str, str] = {}
    for path in sorted((ROOT / "dsconv_cli" / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for n in names:
                if n.split(".")[0] == "torch" or "torch_backend" in n:
                    found[path.name] = n.lstrip(".")
    assert found == {}
