"""`--help` a person can scan, and usage errors in dsconv's words (issue 21, items 4 and 5).

Help is rendered through CliRunner at a fixed width (COLUMNS) without colour; messages are
read from the real entry point (``dsconv_cli.__main__.main``), which is what prints them.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from dsconv_cli.__main__ import main
from dsconv_cli.cli import app
from dsconv_cli.cli.compare import (
    MODEL,
    OPTION_USES,
    PANEL_USES,
    USES,
)
from dsconv_cli.names import RUNTIME_NAMES

runner = CliRunner()
COMMANDS = ["compare", "convert", "profile"]


def help_text(monkeypatch: pytest.MonkeyPatch, *args: str, width: int = 100) -> str:
    monkeypatch.setenv("COLUMNS", str(width))
    r = runner.invoke(app, [*args, "--help"])
    assert r.exit_code == 0, r.output
    return r.stdout


def panels(text: str) -> dict[str, list[str]]:
    """Help panel title -> the long option names listed in it."""
    out: dict[str, list[str]] = {}
    title = None
    for line in text.splitlines():
        m = re.match(r"╭─ (.+?) ─", line)
        if m:
            title = m.group(1)
            out[title] = []
        elif title and line.startswith("│"):
            out[title] += re.findall(r"^│ (?:\* +)?(--[a-z][a-z0-9-]*)", line)
    return out


def command(name: str) -> Any:
    return typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]


def errors(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


# ---------------------------------------------------------------------------- 21.4 help

@pytest.mark.parametrize("args", [[], *([c] for c in COMMANDS)])
def test_metavars_read_as_values(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    text = help_text(monkeypatch, *args)
    # Typer's defaults were <bool>, <str>, <list[str]>, <list[Path]>, <path>, {model}
    assert not re.search(r"<[A-Za-z_\[\]|, -]+>", text), text
    assert "{" not in text.split("\n\n")[0] + text.splitlines()[1]


@pytest.mark.parametrize("cmd,flag", [("compare", "--measure"), ("compare", "--bias"),
                                      ("compare", "--strict"), ("convert", "--dry-run"),
                                      ("profile", "--merge"), ("compare", "--json")])
def test_flags_take_no_metavar(monkeypatch: pytest.MonkeyPatch, cmd: str, flag: str) -> None:
    text = help_text(monkeypatch, cmd, width=160)
    line = next(ln for ln in text.splitlines() if re.search(rf"│ {flag}\b", ln))
    after = line.split(flag, 1)[1]
    after = re.sub(r"--no-[a-z-]+", "", after).split()
    assert after[0] not in ("BOOL", "<bool>", "TEXT"), line


@pytest.mark.parametrize("cmd,option,metavar", [
    ("compare", "--in", "INT"), ("compare", "--hw", "SIZE"), ("compare", "--input-shape",
                                                               "SHAPE"),
    ("convert", "--input-shape", "SHAPE"), ("compare", "--depth-multiplier", "INT"),
    ("convert", "--depth-multiplier", "INT"), ("compare", "--report", "PATH"),
    ("compare", "--include", "GLOB"), ("compare", "--width", "FLOAT"),
    ("compare", "--format", "table|json|csv|markdown"), ("profile", "--only", "TEXT"),
])
def test_metavar_of(monkeypatch: pytest.MonkeyPatch, cmd: str, option: str,
                    metavar: str) -> None:
    text = help_text(monkeypatch, cmd, width=160)
    line = next(ln for ln in text.splitlines() if re.search(rf"│ {option}\b", ln))
    tokens = [t for t in line.split(option, 1)[1].split() if not t.startswith("-")]
    assert tokens[0] == metavar, line


def test_arguments_read_as_one_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "Usage: dsconv convert [OPTIONS] MODEL" in help_text(monkeypatch, "convert")
    usage = help_text(monkeypatch, "profile").split("Usage:")[1].splitlines()[0]
    assert "CONFIG" in usage and "]..." not in usage


@pytest.mark.parametrize("option,default", [("--kernel", "3"), ("--stride", "1"),
                                            ("--width", "1.0"), ("--batch", "1"),
                                            ("--resolution", "224"),
                                            ("--depth-multiplier", "1")])
def test_compare_shows_defaults(monkeypatch: pytest.MonkeyPatch, option: str,
                                default: str) -> None:
    text = help_text(monkeypatch, "compare", width=200)
    line = next(ln for ln in text.splitlines() if re.search(rf"│ {option}\b", ln))
    assert f"[default: {default}]" in line, line


def test_compare_needed_options_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    text = help_text(monkeypatch, "compare", width=200)
    for option in ("--in", "--hw"):
        line = next(ln for ln in text.splitlines() if re.search(rf"│ {option}\b", ln))
        assert "needed for a layer" in line


def test_compare_panels_group_layer_and_model(monkeypatch: pytest.MonkeyPatch) -> None:
    got = panels(help_text(monkeypatch, "compare", width=160))
    assert got["Options"] == ["--help"]  # nothing left in the catch-all panel
    assert {"--in", "--hw", "--kernel"} <= set(got["Layer (comma lists sweep)"])
    assert "--dtype" in got["Layer or model"]
    assert "--input-shape" in got["Loading a model (safe by default)"]
    assert {"--width", "--resolution", "--classes", "--per-layer"} == set(
        got["Model: a preset only (--model NAME)"])
    assert {"--model", "--vs"} == set(got[MODEL])
    assert "--measure" in got["Measurement"] and "--json" in got["Output"]


def test_convert_puts_input_shape_in_a_panel(monkeypatch: pytest.MonkeyPatch) -> None:
    got = panels(help_text(monkeypatch, "convert", width=160))
    assert "--input-shape" not in got["Options"]
    assert "--input-shape" in got["Loading a model (safe by default)"]


def test_every_compare_option_has_a_use() -> None:
    """Each option's help panel says which use it belongs to, and the check that refuses an
    option given for another use reads the same panels."""
    for param in command("compare").params:
        if param.name in ("ctx", "help"):
            continue
        assert param.rich_help_panel in PANEL_USES or param.name in OPTION_USES, param.name


@pytest.mark.parametrize("args,option,use", [
    (["--in", "8", "--hw", "8", "--width", "0.5"], "--width", "preset"),
    (["--in", "8", "--hw", "8", "--per-layer"], "--per-layer", "preset"),
    (["--in", "8", "--hw", "8", "--input-shape", "1,3,8,8"], "--input-shape", "network"),
    (["--in", "8", "--hw", "8", "--strict"], "--strict", "network"),
    (["--model", "mobilenet_v1", "--kernel", "5"], "--kernel", "layer"),
    (["--model", "mobilenet_v1", "--depth", "2"], "--depth", "network"),
    (["--model", "mobilenet_v1", "--depth-multiplier", "2"], "--depth-multiplier", "layer"),
    (["--arch", "x:y", "--input-shape", "1,3,8,8", "--classes", "10"], "--classes",
     "preset"),
])
def test_an_option_of_another_use_is_refused(capsys: pytest.CaptureFixture[str],
                                             args: list[str], option: str, use: str) -> None:
    code, err = errors(capsys, "compare", *args)
    assert code == 2
    assert err.startswith(f"Error: Invalid value for '{option}': applies to ")
    assert USES[use] in err and err.count("\n") == 1


def test_measurement_options_need_measure(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = errors(capsys, "compare", "--in", "8", "--hw", "8", "--device", "cpu")
    assert code == 2 and "'--device': applies with --measure" in err


@pytest.mark.parametrize("args", [["compare", "--in", "8", "--hw", "8"],
                                  ["convert", "model.pt", "--dry-run"]])
def test_json_with_format_table_is_a_conflict(capsys: pytest.CaptureFixture[str],
                                              args: list[str]) -> None:
    code, err = errors(capsys, *args, "--json", "--format", "table")
    assert code == 2 and "--json conflicts with --format table" in err
    code, err = errors(capsys, "compare", "--in", "8", "--hw", "8", "--json")
    assert code == 0


def test_help_paragraphs_wrap_at_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The docstring's source line breaks do not reach the help: a paragraph fills the
    width it is given."""
    text = help_text(monkeypatch, "compare", width=400)
    assert any("Params, MACs" in ln and "whole networks" in ln for ln in text.splitlines())


# ------------------------------------------------------------------ 21.5 dsconv's words

@pytest.mark.parametrize("args,option,suggestion", [
    (["--kind", "seperable"], "--kind", "separable"),
    (["--activation", "hswsh"], "--activation", "hswish"),
    (["--dtype", "fp33"], "--dtype", "fp32"),
    (["--format", "jsn"], "--format", "json"),
])
def test_enum_values_get_did_you_mean(capsys: pytest.CaptureFixture[str], args: list[str],
                                      option: str, suggestion: str) -> None:
    code, err = errors(capsys, "compare", "--in", "8", "--hw", "8", *args)
    assert code == 2 and err.count("\n") == 1
    assert re.match(rf"Error: Invalid value for '{option}'( / '-.')?: {args[1]!r} is not one "
                    "of ", err), err
    assert f"did you mean {suggestion!r}?" in err
    assert "Value error" not in err and "Input should" not in err


def test_runtime_names_come_from_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = errors(capsys, "compare", "--in", "8", "--hw", "8", "--measure", "--runtime",
                       "eager,compil")
    assert code == 2 and "did you mean 'compile'?" in err
    assert all(name in err for name in RUNTIME_NAMES)


@pytest.mark.parametrize("args,option,what", [
    (["--max-cases", "many"], "--max-cases", "an integer"),
    (["--width", "wide"], "--width", "a number"),
])
def test_bad_numbers_are_said_plainly(capsys: pytest.CaptureFixture[str], args: list[str],
                                      option: str, what: str) -> None:
    code, err = errors(capsys, "compare", "--in", "8", "--hw", "8", *args)
    assert code == 2
    assert f"Error: Invalid value for '{option}': expected {what}, got {args[1]!r}" in err
    assert "Input should" not in err and "unable to parse" not in err


@pytest.mark.parametrize("args,option", [(["--hw", "14"], "--in"), (["--in", "8"], "--hw"),
                                         (["--arch", "x:y"], "--input-shape")])
def test_missing_options_read_the_same(capsys: pytest.CaptureFixture[str], args: list[str],
                                       option: str) -> None:
    code, err = errors(capsys, "compare", *args)
    assert code == 2
    assert re.fullmatch(rf"Error: Missing option '{option}' \([a-z ,]+\) \(hint: e\.g\. "
                        r"[^)]+\)\n", err), err


def test_report_extension_message_lists_the_registry(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    from dsconv_cli.render import EXTENSIONS, RENDERERS

    code, err = errors(capsys, "compare", "--in", "8", "--hw", "8", "--report", "out.txt")
    assert code == 2
    for ext, fmt in EXTENSIONS.items():
        assert (ext in err) == RENDERERS[fmt].file_ok


def test_a_flag_given_a_value_points_to_its_command(capsys: pytest.CaptureFixture[str]
                                                    ) -> None:
    code, err = errors(capsys, "compare", "--in", "8", "--bias=true")
    assert code == 2 and "(try 'dsconv compare --help')" in err
