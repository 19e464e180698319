"""Hostile input, round four (issue 30, second half): data loss and untrue success, names
on terminals and in spreadsheets, the public API's file checks, exceptions that are not
the user's, and the mutants that survived the earlier tests."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from dsconv_cli.cli import app

runner = CliRunner()

#: a module an ``--arch`` names: a small net with convertible convs, and hostile builders
ARCH = '''
import os, sys, torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(16, 16, 3, padding=1)
        self.b = nn.Conv2d(16, 16, 3, padding=1)

    def forward(self, x):
        print("forward says hello")
        return self.b(torch.relu(self.a(x)))

def plain():
    return Net()

def chdir_away():
    os.chdir(os.environ["AWAY"])
    return Net()

def replaces_save():
    torch.save = lambda obj, f, *a, **k: None
    return Net()

def talks():
    print("constructor says hello")
    sys.stdout.write("more noise\\n")
    return Net()
'''


def run(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def arch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``hostile4_net.py`` in its own folder and a state_dict of its Net; torch.save restored."""
    monkeypatch.setattr(torch, "save", torch.save)
    src = tmp_path / "src"
    src.mkdir()
    (src / "hostile4_net.py").write_text(ARCH)
    monkeypatch.syspath_prepend(str(src))
    torch.manual_seed(0)
    from torch import nn

    class Net(nn.Module):  # the same shapes as hostile4_net.py's
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(16, 16, 3, padding=1)
            self.b = nn.Conv2d(16, 16, 3, padding=1)

    torch.save(Net().state_dict(), src / "q.pt")
    return src


# ------------------------------------------------------------------ data loss, untrue success

def test_the_plan_beside_the_input_is_never_an_output(arch: Path) -> None:
    plan = arch / "q.pt.plan.json"
    plan.write_text('{"mine": true}\n')
    for extra in ([], ["--force"]):
        r = run("convert", arch / "q.pt", "--arch", f"{arch / 'hostile4_net.py'}:plain",
                "--input-shape", "1,16,8,8", "--min-channels", "8", "-o", arch / "out.pt",
                "--report", plan, *extra)
        assert r.exit_code == 2, (r.exit_code, r.stderr)
        assert plan.read_text() == '{"mine": true}\n'
    assert "MODEL's plan" in r.stderr  # --force: still refused, as the input it is
    assert not (arch / "out.pt").exists()


def test_a_constructor_that_changes_folder_moves_no_output(
        arch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    away = tmp_path / "away"
    away.mkdir()
    (away / "u03.pt").write_bytes(b"precious")
    (away / "r.json").write_bytes(b"precious too")
    monkeypatch.setenv("AWAY", str(away))
    monkeypatch.chdir(arch)
    try:
        r = run("convert", "q.pt", "--arch", "hostile4_net.py:chdir_away", "--input-shape",
                "1,16,8,8", "--min-channels", "8", "-o", "u03.pt", "--report", "r.json")
    finally:
        os.chdir(arch)
    assert r.exit_code == 0, r.stderr
    assert (arch / "u03.pt").stat().st_size > 0 and (arch / "r.json").exists()
    assert (away / "u03.pt").read_bytes() == b"precious"
    assert (away / "r.json").read_bytes() == b"precious too"
    assert json.loads((arch / "r.json").read_text())["cases"][0]["written"][0] == "u03.pt"


def test_replaced_torch_save_never_says_wrote(arch: Path) -> None:
    out = arch / "u05.pt"
    r = run("convert", arch / "q.pt", "--arch", f"{arch / 'hostile4_net.py'}:replaces_save",
            "--input-shape", "1,16,8,8", "--min-channels", "8", "-o", out)
    assert r.exit_code == 1, (r.exit_code, r.stdout, r.stderr)
    assert "wrote" not in r.stdout + r.stderr and "torch.save" in r.stderr
    assert not out.exists() and not Path(str(out) + ".plan.json").exists()


def test_the_written_model_is_read_back(arch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that lands other bytes than were checked (here: one byte cut off on
    disk) is an error, never "wrote"."""
    from dsconv_cli import atomic

    real = atomic._write_all

    def short(files: Any, *a: Any, **k: Any) -> None:
        real([(p, d[:-1] if isinstance(d, bytes) else d) for p, d in files], *a, **k)

    monkeypatch.setattr(atomic, "_write_all", short)
    r = run("convert", arch / "q.pt", "--arch", f"{arch / 'hostile4_net.py'}:plain",
            "--input-shape", "1,16,8,8", "--min-channels", "8", "-o", arch / "o.pt")
    assert r.exit_code == 1 and "not what was written" in r.stderr, r.stderr
    assert "wrote" not in r.stdout


def test_user_code_printing_keeps_json_clean(arch: Path) -> None:
    r = run("compare", "--arch", f"{arch / 'hostile4_net.py'}:talks", "--input-shape", "1,16,8,8",
            "--json")
    assert r.exit_code == 0, r.stderr
    json.loads(r.stdout)  # nothing but the report
    assert "constructor says hello" in r.stderr and "more noise" in r.stderr
    r = run("convert", arch / "q.pt", "--arch", f"{arch / 'hostile4_net.py'}:talks",
            "--input-shape", "1,16,8,8", "--min-channels", "8", "-o", arch / "t.pt", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["cases"][0]["written"]
    assert "forward says hello" in r.stderr and "hello" not in r.stdout


def test_user_code_stdout_goes_to_stderr_in_the_library_too(
        capsys: pytest.CaptureFixture[str]) -> None:
    from dsconv_cli.errors import user_code

    with user_code("x"):
        print("from user code")
    out = capsys.readouterr()
    assert out.out == "" and "from user code" in out.err


# ------------------------------------------------------------------ not the user's exceptions

class HarnessTimeout(BaseException):
    """What pytest-timeout raises (``Failed`` derives from ``BaseException`` only)."""


@pytest.mark.parametrize("exc", [HarnessTimeout("Timeout >300.0s"),
                                 pytest.fail.Exception("timed out")])
def test_a_harness_exception_passes_through_user_code(exc: BaseException) -> None:
    from dsconv_cli.errors import UserCodeError, user_code

    with pytest.raises(type(exc)):
        with user_code("the model's forward pass while distilling"):
            raise exc
    for mine in (ValueError("x"), SystemExit(0), GeneratorExit(), KeyboardInterrupt()):
        with pytest.raises((UserCodeError, KeyboardInterrupt)):  # not armed: Ctrl-C is real
            with user_code("forward"):
                raise mine


def test_a_harness_exception_passes_through_the_command(
        arch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest-timeout firing inside a distillation forward ends the test, not as the
    user's bad input (exit 2)."""
    from dsconv_cli.torch_backend import calibrate

    def timeout(*a: Any, **k: Any) -> None:
        raise HarnessTimeout("Timeout")

    monkeypatch.setattr(calibrate, "distill", timeout)
    torch.save(torch.randn(8, 16, 8, 8), arch / "cal.pt")
    with pytest.raises(HarnessTimeout):
        runner.invoke(app, ["convert", str(arch / "q.pt"), "--arch",
                            f"{arch / 'hostile4_net.py'}:plain", "--min-channels", "8", "-o",
                            str(arch / "d.pt"), "--calibration-data", str(arch / "cal.pt"),
                            "--distill-steps", "2"], catch_exceptions=False)


def test_an_in_process_command_installs_no_signal_handler(arch: Path) -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    seen: list[Any] = []
    from dsconv_cli.cli import common

    real = common.report_stream

    def spy() -> Any:
        seen.append((signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)))
        return real()

    common.report_stream = spy  # type: ignore[assignment]
    try:
        assert run("compare", "--in", "8", "--hw", "4").exit_code == 0
    finally:
        common.report_stream = real  # type: ignore[assignment]
    assert seen == [before]  # while the command ran, the harness's handlers were in force
    assert not common.SIGNALS.armed


def test_the_entry_point_installs_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from dsconv_cli import __main__ as entry
    from dsconv_cli.cli import common

    seen: list[bool] = []
    real = common.report_stream
    monkeypatch.setattr(common, "report_stream",
                        lambda: seen.append(signal.getsignal(signal.SIGTERM)
                                            is common._on_signal) or real())
    monkeypatch.setattr(sys, "argv", ["dsconv", "compare", "--in", "8", "--hw", "4"])
    with pytest.raises(SystemExit) as e:
        entry._entry()
    assert e.value.code == 0 and seen == [True]
    assert signal.getsignal(signal.SIGTERM) is not common._on_signal  # restored


def test_a_base_exception_of_user_code_s_own_passes_through() -> None:
    """Neither an ``Exception`` nor user code's to raise: dsconv cannot tell it from a
    harness's (pytest-timeout's ``Failed``), so it is not made the user's bad input."""
    from .test_hostile import Boom

    with pytest.raises(Boom):
        runner.invoke(app, ["compare", "--arch", "tests.test_hostile:raises_base_exception",
                            "--input-shape", "1,3,4,4"])


# ------------------------------------------------------------------ terminals and spreadsheets

HOSTILE_NAME = "caf\u00e9 \x1b[2J\x1b]0;pwn\x07=HYPERLINK(1)\u202e"


def _profile_with(tmp_path: Path, name: str) -> Path:
    c = tmp_path / "c.yaml"
    c.write_text("cases:\n  - name: " + json.dumps(name) + "\n    layer: {in: 8, hw: 8}\n"
                 "  - name: '=1+2'\n    layer: {in: 8, hw: 8}\n")
    return c


def test_a_hostile_case_name_reaches_no_terminal_or_report_raw(tmp_path: Path) -> None:
    c = _profile_with(tmp_path, HOSTILE_NAME)
    csv_p, md_p = tmp_path / "r.csv", tmp_path / "r.md"
    r = run("profile", c, "--dry-run", "--report", csv_p, "--report", md_p)
    assert r.exit_code == 0, r.stderr
    for text in (r.stdout, csv_p.read_text(), md_p.read_text()):
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
        assert "caf\u00e9" in text and "\\u202e" in text  # shown, not obeyed
    rows = csv_p.read_text().splitlines()
    assert any(row.startswith("'=1+2,") for row in rows), rows  # OWASP: text, not formula


def test_csv_cells_are_neutralised_but_numbers_stay_numbers() -> None:
    from dsconv_cli.names import csv_cell

    for formula in ("=1+2", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\x1b[0m=1+2"):
        assert str(csv_cell(formula)).startswith("'"), formula
    for control in ("\tx", "\rx"):  # shown escaped: the cell starts with a backslash
        assert csv_cell(control) == "\\" + {"\t": "t", "\r": "r"}[control[0]] + "x"
    for number in ("-3", "-2.5e-3", "+4", "0.5", -7, 1.5):
        assert csv_cell(number) == number
    assert csv_cell("-") == "-" and csv_cell("plain") == "plain"


def test_the_sanitiser() -> None:
    from dsconv_cli.names import safe_text, short_name

    assert safe_text("a\x1b[31mred\x1b[0m") == "ared"
    assert safe_text("\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\") == "link"
    assert safe_text("t\x1b]0;title\x07x") == "tx"
    assert safe_text("a\nb\tc\x00\x7f\x9bm") == "a\\nb\\tc\\x00\\x7f"
    assert safe_text("x\ud800y") == "x\\ud800y"
    assert safe_text("ok name.with-dots_1") == "ok name.with-dots_1"
    long = short_name("L" * 1_000_000)
    assert len(long) < 120 and "1,000,000 characters" in long


def test_an_ascii_terminal_gets_the_table_not_an_internal_error(tmp_path: Path) -> None:
    import subprocess

    c = _profile_with(tmp_path, HOSTILE_NAME)
    exe = Path(sys.executable).parent / "dsconv"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "dsconv_cli"]
    for fmt in ("table", "csv", "markdown"):
        p = subprocess.run([*cmd, "profile", str(c), "--dry-run", "--format", fmt],
                           capture_output=True, timeout=120,
                           env={**os.environ, "PYTHONIOENCODING": "ascii"})
        assert p.returncode == 0, p.stderr
        out = p.stdout.decode("ascii")  # nothing the stream cannot hold
        assert "caf\\xe9" in out and "internal error" not in p.stderr.decode()


# ------------------------------------------------------------------ the public API

def _net() -> Any:
    from torch import nn

    return nn.Sequential(nn.Conv2d(16, 16, 3))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_apply_plan_refuses_a_fifo_and_an_endless_device(tmp_path: Path) -> None:
    """Both return at once (a blocking open or an endless read would hang the test
    until its timeout)."""
    import dsconv_cli

    fifo = tmp_path / "p.plan.json"
    os.mkfifo(fifo)
    for bad in (fifo, Path("/dev/zero")):
        if not bad.exists():
            continue
        with pytest.raises(ValueError, match="not a regular file") as e:
            dsconv_cli.apply_plan(_net(), bad)
        assert str(bad) in str(e.value)


def test_apply_plan_errors_name_the_file_and_cut_long_names(tmp_path: Path) -> None:
    import dsconv_cli

    deep = tmp_path / "deep.plan.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ValueError, match="deep.plan.json") as e:
        dsconv_cli.apply_plan(_net(), deep)
    assert len(str(e.value)) < 300
    huge = "x" * 1_000_000
    doc = {"plan_version": 1, "layers": [
        {"name": huge, "depth_multiplier": 1, "in_channels": 16, "out_channels": 16,
         "kernel": [3, 3]}]}
    named = tmp_path / "huge.plan.json"
    named.write_text(json.dumps(doc))
    for plan in (doc, named, str(named)):
        with pytest.raises(ValueError) as e:
            dsconv_cli.apply_plan(_net(), plan)
        assert len(str(e.value)) < 300 and "1,000,000 characters" in str(e.value)
    doc["layers"][0]["name"] = "0"
    doc["layers"] = doc["layers"] * 2
    with pytest.raises(ValueError, match="appears twice"):
        dsconv_cli.apply_plan(_net(), doc)


def test_a_deep_plan_beside_a_model_is_one_line_naming_it(arch: Path) -> None:
    (arch / "q.pt.plan.json").write_text("[" * 200_000 + "]" * 200_000)
    r = run("compare", "--model", arch / "q.pt", "--arch", f"{arch / 'hostile4_net.py'}:plain",
            "--input-shape", "1,16,8,8")
    assert r.exit_code == 2 and "q.pt.plan.json" in r.stderr, r.stderr


@pytest.mark.parametrize("target", ["/dev/full", "folder", "missing/dir/s.md"])
def test_a_bad_step_summary_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  target: str) -> None:
    if target == "/dev/full" and not Path(target).exists():
        pytest.skip("no /dev/full")
    path = target if target.startswith("/") else str(tmp_path / target)
    (tmp_path / "folder").mkdir()
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", path)
    r = run("profile", _profile_with(tmp_path, "a"), "--dry-run")
    assert r.exit_code == 0
    assert "Warning: GITHUB_STEP_SUMMARY" in r.stderr, r.stderr
