"""`dsconv compare` run as a user runs it: CliRunner, and a few real subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dsconv_cli.cli import app

from .utils import validate_report

runner = CliRunner()
SEED = ["compare", "--in", "256", "--out", "256", "-k", "3", "--hw", "14"]


def run(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_seed_table() -> None:
    code, out, err = run(*SEED)
    assert code == 0, err
    for s in ("589,824", "67,840", "115,605,504", "13,296,640", "8.69x", "0.115",
              "depthwise", "pointwise", "Counting: MACs"):
        assert s in out
    assert err == ""


@pytest.mark.parametrize("name,args", [
    ("compare_seed", SEED),
    ("compare_mbconv", ["compare", "--kind", "mbconv", "--in", "40", "--out", "80", "-k", "5",
                        "--hw", "28", "--stride", "2", "--dtype", "fp16"]),
    ("compare_sweep_markdown", ["compare", "--in", "32,64", "--hw", "56", "-k", "3,5",
                                "--format", "markdown"]),
    ("compare_preset", ["compare", "--model", "mobilenet_v3_small", "--vs", "full-conv"]),
])
def test_golden_output(golden: Any, name: str, args: list[str]) -> None:
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.stderr
    golden(name, r.stdout)


@pytest.mark.parametrize("n,text", [(0, "0 B"), (999, "999 B"), (1000, "1.00 kB"),
                                    (999_999, "1000.00 kB"), (10**6, "1.00 MB"),
                                    (10**9, "1.00 GB")])
def test_fmt_bytes_boundaries(n: int, text: str) -> None:
    from dsconv_cli.render import fmt_bytes

    assert fmt_bytes(n) == text


def test_table_rows_sum_to_total() -> None:
    code, out, _ = run(*SEED, "--format", "csv")
    assert code == 0
    rows = {r.split(",")[0]: r for r in out.splitlines()[1:]}  # layer,depth,params,MACs,...
    dw = next(v for k, v in rows.items() if k == "depthwise")
    pw = next(v for k, v in rows.items() if k == "pointwise")
    tot = next(v for k, v in rows.items() if k.endswith("total"))

    def macs(row: str) -> int:
        import csv
        return int(next(csv.reader([row]))[3].replace(",", ""))

    assert macs(dw) + macs(pw) == macs(tot) == 13_296_640


def test_json_envelope_and_schema() -> None:
    code, out, _ = run(*SEED, "--json")
    assert code == 0
    data = json.loads(out)
    validate_report(data)
    (case,) = data["cases"]
    assert case["standard"]["params"] == 589_824
    assert case["candidate"]["parts"]["depthwise"]["macs"] == 451_584
    assert case["reduction"]["macs"] == 8.6943
    assert case["theory"]["ratio"] == 0.115
    assert data["tool"]["name"] == "dsconv"


def test_sweep_cartesian_order_and_names() -> None:
    code, out, _ = run("compare", "--in", "16,32", "--out", "32", "--hw", "56,28", "--kind",
                       "inverted-residual", "--json")
    assert code == 0
    data = json.loads(out)
    validate_report(data)
    names = [c["name"] for c in data["cases"]]
    assert names == ["inverted-residual[in=16,hw=56]", "inverted-residual[in=16,hw=28]",
                     "inverted-residual[in=32,hw=56]", "inverted-residual[in=32,hw=28]"]
    code, out, _ = run("compare", "--in", "16,32", "--out", "32", "--hw", "56,28")
    assert code == 0 and "separable[in=32,hw=28]" in out


@pytest.mark.parametrize("fmt", ["csv", "markdown", "json", "table"])
def test_every_format(fmt: str) -> None:
    code, out, _ = run(*SEED, "--format", fmt)
    # the DS params of the seed case, with separators for people, raw for machines
    assert code == 0 and ("67,840" if fmt in ("markdown", "table") else "67840") in out
    if fmt == "csv":
        assert "67,840" not in out and ",67840," in out


def test_reports_written(tmp_path: Path) -> None:
    paths = [tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.csv"]
    args = [a for p in paths for a in ("--report", str(p))]
    code, _, _ = run(*SEED, *args)
    assert code == 0
    validate_report(json.loads(paths[0].read_text()))
    assert "| &emsp;depthwise |" in paths[1].read_text()  # a part, one level down
    assert "pointwise" in paths[2].read_text()


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--in", "0", "--hw", "14"], "--in"),
        (["--in", "8", "--out", "-4", "--hw", "14"], "--out"),
        (["--in", "8", "--hw", "14", "-k", "0"], "--kernel"),
        (["--in", "8", "--hw", "14", "--stride", "0"], "--stride"),
        (["--in", "8", "--hw", "14", "--dilation", "0"], "--dilation"),
        (["--in", "8", "--out", "12", "--hw", "14", "--groups", "5"], "--groups"),
        (["--in", "8", "--hw", "2", "-k", "5", "--padding", "0"], "--hw"),
        (["--in", "8", "--hw", "14", "--padding", "same", "--stride", "2"], "--padding"),
        (["--in", "8", "--hw", "14", "-k", "3xx"], "--kernel"),
        (["--in", "8", "--hw", "14", "--dtype", "fp64"], "--dtype"),
        (["--in", "8", "--hw", "14", "--kind", "conv3d"], "--kind"),
        (["--in", "1,2,3,4,5,6,7,8,9,10", "--out", "1,2,3,4,5,6,7,8,9,10", "--hw",
          "1,2,3,4,5,6,7,8,9,10,11"], "cap"),
        (["--in", "8", "--hw", "0"], "--hw"),
        (["--in", "8", "--hw", "14", "--batch", "0"], "--batch"),
        (["--in", "8", "--hw", "14", "--expansion", "6"], "--expansion"),
        (["--in", "8", "--hw", "14", "--kind", "eca", "--eca-k", "4"], "--eca-k"),
        (["--in", "8", "--hw", "14", "--kind", "mbconv", "-k", "4"], "--kernel"),
        (["--in", "8", "--hw", "14", "--padding", "-1"], "--padding"),
        (["--in", "eight", "--hw", "14"], "--in"),
        (["--hw", "14"], "--in"),
        (["--in", "8"], "--hw"),
    ],
)
def test_bad_input_one_line_exit_2(args: list[str], option: str) -> None:
    r = runner.invoke(app, ["compare", *args])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert option in r.stderr
    assert r.stdout == ""


def test_one_line_error_for_own_errors() -> None:
    r = runner.invoke(app, ["compare", "--in", "0", "--hw", "14"])
    assert r.stderr.strip().count("\n") == 0
    assert r.stderr.startswith("Error: Invalid value for '--in'")


def test_max_cases_raises_cap() -> None:
    args = ["compare", "--in", "1,2,3,4,5,6,7,8,9,10", "--out", "1,2,3,4,5,6,7,8,9,10",
            "--hw", "1,2,3,4,5,6,7,8,9,10,11", "--json", "--max-cases", "1100", "-k", "1"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.stderr
    assert len(json.loads(r.stdout)["cases"]) == 1100


def test_version_and_help() -> None:
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.startswith("dsconv ")
    for cmd in ([], ["compare"]):
        r = runner.invoke(app, [*cmd, "--help"])
        assert r.exit_code == 0 and "Usage" in r.stdout


# ------------------------------------------------------------ real subprocesses

def _dsconv() -> list[str]:
    exe = shutil.which("dsconv", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "dsconv_cli"]


def _env() -> dict[str, str]:
    return {**os.environ, "DSCONV_WIDTH": "160", "NO_COLOR": "1"}


def test_installed_script_runs_seed_case() -> None:
    p = subprocess.run([*_dsconv(), *SEED], capture_output=True, text=True, env=_env(),
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert "589,824" in p.stdout and "13,296,640" in p.stdout


def test_python_dash_m() -> None:
    p = subprocess.run([sys.executable, "-m", "dsconv_cli", "--version"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and "dsconv" in p.stdout


def test_subprocess_bad_input_exit_2_no_traceback() -> None:
    p = subprocess.run([*_dsconv(), "compare", "--in", "8", "--hw", "14", "-k", "3xx"],
                       capture_output=True, text=True, env=_env(), timeout=60)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and "--kernel" in p.stderr


LOADED = ("import sys, json; from typer.testing import CliRunner; from dsconv_cli.cli import app;"
          "r = CliRunner().invoke(app, {args!r});"
          "print(json.dumps([r.exit_code, sorted(m for m in sys.modules "
          "if m.split('.')[0] in ('torch', 'rich'))]))")


@pytest.mark.parametrize("args,rich_allowed", [
    (SEED, True), ([*SEED, "--json"], False), ([*SEED, "--format", "csv"], False),
    (["compare", "--model", "mobilenet_v2", "--vs", "full-conv", "--json"], False),
    (["compare", "--model", "efficientnet_b0", "--per-layer"], True)])
def test_compare_never_imports_torch(args: list[str], rich_allowed: bool) -> None:
    code = LOADED.format(args=args)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=_env(), timeout=60)
    exit_code, mods = json.loads(p.stdout.strip().splitlines()[-1])
    assert exit_code == 0
    assert not [m for m in mods if m.startswith("torch")]
    if not rich_allowed:
        assert not [m for m in mods if m.startswith("rich")], mods
