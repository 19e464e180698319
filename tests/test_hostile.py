"""Hostile input: every class of break found by trying dsconv as a hostile user would, one
test per example; the contract itself is fuzzed in tests/test_fuzz.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from dsconv_cli.cli import app

from .models import small_resnet
from .test_measure import FAST
from .utils import interrupt_second_call

ROOT = Path(__file__).parents[1]
runner = CliRunner()
LAYER = "cases:\n  - name: a\n    layer: {in: 8, hw: 8}\n"


def run(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def one_line(r: Any, code: int = 2) -> str:
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("Error:")]
    # one error line, last; before it only warnings (e.g. --trust-pickle's)
    assert len(errors) == 1 and lines[-1] == errors[0], r.stderr
    assert all(ln.startswith(("Error:", "Warning:", "note:")) for ln in lines), r.stderr
    return errors[0]


def cfg(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# ------------------------------------------------------------------ code execution, exit codes

def test_config_arch_cannot_run_os_system(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(1)}, tmp_path / "m.pt")
    c = cfg(tmp_path, "cases:\n  - name: evil\n    model: {path: m.pt, input_shape: [1], "
                      "arch: 'os:system', arch_kwargs: {command: 'touch PWNED'}}\n")
    os.chdir(tmp_path)
    try:
        assert "--trust-code" in one_line(run("profile", c))
        r = run("profile", c, "--trust-code")
        assert r.exit_code == 2 and "not an nn.Module class or a Python function" in r.stderr
        assert not (tmp_path / "PWNED").exists()
    finally:
        os.chdir(ROOT)


def test_sys_exit_in_arch_never_makes_profile_pass(tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text("import sys\ndef build():\n    sys.exit(0)\n")
    torch.save({"w": torch.zeros(1)}, tmp_path / "m.pt")
    c = cfg(tmp_path, "cases:\n  - name: a\n    layer: {in: 8, hw: 8}\n    budget: "
                      "{max_params: 1}\n  - name: b\n    model: {path: m.pt, input_shape: [1], "
                      "arch: 'net.py:build'}\n")
    r = run("profile", c, "--trust-code")
    assert r.exit_code == 2 and "SystemExit" in r.stderr


def test_nan_threshold_and_duplicate_cases(tmp_path: Path) -> None:
    c = cfg(tmp_path, LAYER)
    assert "--regression-threshold" in one_line(run("profile", c, "--dry-run",
                                                    "--regression-threshold", "nan"))
    d = cfg(tmp_path, LAYER + "cases:\n  - name: b\n    layer: {in: 8, hw: 8}\n", "d.yaml")
    err = one_line(run("profile", d, "--dry-run"))
    assert "d.yaml:4" in err and "duplicate key 'cases'" in err and "line 1" in err


# ------------------------------------------------------------------ data loss

def test_save_baseline_cannot_replace_the_config(tmp_path: Path) -> None:
    c = cfg(tmp_path, LAYER)
    assert "is also" in one_line(run("profile", c, "--save-baseline", c))
    assert c.read_text() == LAYER


def test_plan_path_that_is_a_directory_fails_before_work(tmp_path: Path) -> None:
    sd = tmp_path / "sd.pt"
    torch.save(small_resnet().state_dict(), sd)
    (tmp_path / "o.pt.plan.json").mkdir()
    r = run("convert", sd, "-o", tmp_path / "o.pt", "--arch", "tests.models:small_resnet")
    assert "is a folder" in one_line(r) and not (tmp_path / "o.pt").exists()


def test_non_finite_weights_are_named(tmp_path: Path) -> None:
    m = nn.Sequential(nn.Conv2d(32, 32, 3))
    with torch.no_grad():
        m[0].weight[0, 0, 0, 0] = float("inf")
    p = tmp_path / "m.pt"
    torch.save(m, p)
    err = one_line(run("convert", p, "-o", tmp_path / "o.pt", "--trust-pickle", "--json"))
    assert "layer 0" in err and "non-finite" in err and not (tmp_path / "o.pt").exists()


def test_json_never_holds_nan() -> None:
    import io

    from dsconv_cli.render.formats import JsonRenderer
    from dsconv_cli.render.views import compare_view

    buf = io.StringIO()
    JsonRenderer().write({"x": float("nan"), "y": [float("inf"), 1.0]}, compare_view, buf)
    assert json.loads(buf.getvalue()) == {"x": None, "y": [None, 1.0]}


def test_special_outputs_and_existing_plans(tmp_path: Path) -> None:
    sd = tmp_path / "sd.pt"
    torch.save(small_resnet().state_dict(), sd)
    arch = ("--arch", "tests.models:small_resnet")
    assert "not a regular file" in one_line(run("convert", sd, "-o", "/dev/null", "--force",
                                                *arch))
    link = tmp_path / "dangling.pt"
    link.symlink_to(tmp_path / "nowhere")
    assert "symbolic link" in one_line(run("convert", sd, "-o", link, *arch))
    plan = tmp_path / "o.pt.plan.json"
    plan.write_text("mine")
    err = one_line(run("convert", sd, "-o", tmp_path / "o.pt", *arch))
    assert "--force" in err and plan.read_text() == "mine" and not (tmp_path / "o.pt").exists()


def test_interrupted_write_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    from dsconv_cli import atomic
    from dsconv_cli.cli.common import Terminated

    def killed(fd: int) -> None:
        raise Terminated()

    monkeypatch.setattr(atomic.os, "fsync", killed)
    with pytest.raises(Terminated):
        atomic.write_atomic(tmp_path / "big.pt", b"x" * 1000)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ crashes and tracebacks

def test_threads_are_bounded(tmp_path: Path) -> None:
    one_line(run("compare", "--in", "8", "--hw", "4", "--measure", "--threads", "100000"))
    c = cfg(tmp_path, "threads: 100000\n" + LAYER)
    assert "threads" in one_line(run("profile", c))


def test_unwritable_outputs_fail_up_front(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    c = cfg(tmp_path, "timing: {min_time: 0.01, warmup: 1}\n" + LAYER)
    for opt in ("--report", "--save-baseline"):
        t0 = time.perf_counter()
        one_line(run("profile", c, opt, tmp_path / "missing" / "r.json"))
        assert time.perf_counter() - t0 < 5  # before any case ran
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path))  # a directory
    r = run("profile", c)
    assert r.exit_code == 0 and "GITHUB_STEP_SUMMARY" in r.stderr


@pytest.mark.parametrize("bad,where", [
    ('{"schema_version": 1, "cases": [{"name": "a", "measured": {"median_ms": "fast", '
     '"q1_ms": 1, "q3_ms": 1}}]}', "cases[0].measured.median_ms"),
    ('{"schema_version": 1, "cases": [{"name": "a", "measured": {"median_ms": 0, '
     '"q1_ms": 1, "q3_ms": 1}}]}', "cases[0].measured.median_ms"),
    ('{"schema_version": 1, "cases": [7]}', "cases[0]"),
    ('{"schema_version": 1, "cases": [{"name": "a", "measured": {"median_ms": NaN, '
     '"q1_ms": 1, "q3_ms": 1}}]}', "cases[0].measured.median_ms"),
])
def test_baseline_is_validated_when_loaded(tmp_path: Path, bad: str, where: str) -> None:
    (tmp_path / "b.json").write_text(bad)
    c = cfg(tmp_path, LAYER)
    assert where in one_line(run("profile", c, "--baseline", tmp_path / "b.json"))


def test_deep_and_huge_yaml(tmp_path: Path) -> None:
    assert "nested" in one_line(run("profile", cfg(tmp_path, "[" * 100_000), "--dry-run"))
    indented = "".join(" " * i + "a:\n" for i in range(300))
    assert "nested" in one_line(run("profile", cfg(tmp_path, indented, "i.yaml"), "--dry-run"))
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    t0 = time.perf_counter()
    bomb = cfg(tmp_path, "\n".join(lines) + "\ncases: [*a9]\n", "bomb.yaml")
    assert "expands" in one_line(run("profile", bomb, "--dry-run"))
    assert time.perf_counter() - t0 < 5
    big = cfg(tmp_path, "# " + "x" * 2_000_000 + "\n" + LAYER, "big.yaml")
    assert "at most" in one_line(run("profile", big, "--dry-run"))


@pytest.mark.parametrize("args", [
    ("--in", "8", "--hw", "4", "--kind", "mbconv", "--expansion", "nan"),
    ("--in", "8", "--hw", "4", "--kind", "mbconv", "--expansion", "inf"),
    ("--model", "mobilenet_v2", "--width", "inf"),
    ("--model", "mobilenet_v2", "--width", "1e-9"),
    ("--in", "1e30", "--hw", "4"),
    ("--in", "2000000", "--hw", "4"),
    ("--in", "8", "--hw", "4", "--measure", "--min-time", "nan"),
    ("--in", "8", "--hw", "4", "--measure", "--min-time", "inf"),
    ("--in", "8", "--hw", "4", "--max-cases", "0"),
    ("--in", "8", "--hw", "4", "--max-cases", "-1"),
    ("--in", "8", "--hw", "4", "--json", "--format", "csv"),
])
def test_bad_numbers_are_one_line(args: tuple[str, ...]) -> None:
    one_line(run("compare", *args))


def test_huge_input_shape_is_refused_before_allocating(tmp_path: Path) -> None:
    p = tmp_path / "m.pt"
    torch.save(small_resnet(), p)
    t0 = time.perf_counter()
    err = one_line(run("convert", p, "--trust-pickle", "--dry-run", "--input-shape",
                       "100000,3,1000,1000"))
    assert "GB" in err and time.perf_counter() - t0 < 30
    err = one_line(run("convert", p, "--trust-pickle", "--dry-run", "--input-shape",
                       "1,64,9000,9000"))
    assert "stem.0 (Conv2d)" in err


def test_max_error_nan_and_yaml_inf(tmp_path: Path) -> None:
    p = tmp_path / "m.pt"
    torch.save(small_resnet(), p)
    one_line(run("convert", p, "--trust-pickle", "--dry-run", "--max-error", "nan"))
    c = cfg(tmp_path, "timing: {min_time: .inf}\n" + LAYER)
    assert "timing.min_time" in one_line(run("profile", c, "--dry-run"))


class ReturnsNone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(32, 32, 3)

    def forward(self, x: torch.Tensor) -> None:
        self.c(x)


def test_odd_models(tmp_path: Path) -> None:
    p = tmp_path / "none.pt"
    torch.save(ReturnsNone(), p)
    err = one_line(run("convert", p, "--trust-pickle", "--dry-run", "--input-shape",
                       "1,32,8,8"))
    assert "returned NoneType" in err
    meta = tmp_path / "meta.pt"
    torch.save(nn.Conv2d(32, 32, 3).to("meta"), meta)
    assert "meta device" in one_line(run("convert", meta, "--trust-pickle", "--dry-run"))


def test_bad_width_variable_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSCONV_WIDTH", "abc")
    assert run("compare", "--in", "8", "--hw", "4").exit_code == 0


def test_ctrl_c_while_importing(monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    from dsconv_cli import __main__ as entry

    class Interrupting:
        def find_spec(self, name: str, *a: Any) -> None:
            if name == "dsconv_cli.cli":
                raise KeyboardInterrupt

    for mod in [m for m in sys.modules if m.startswith("dsconv_cli.cli")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(sys, "meta_path", [Interrupting(), *sys.meta_path])
    assert entry.main(["compare", "--in", "8", "--hw", "4"]) == 130
    assert capsys.readouterr().err.strip() == "Interrupted."


# ------------------------------------------------------------------ messages

def _dsconv(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "dsconv"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "dsconv_cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NO_COLOR": "1"})


@pytest.mark.parametrize("args", [("--kind", "foo"), ("--format", "xml"),
                                  ("--report", "/tmp")])
def test_usage_errors_are_one_line_from_the_installed_command(args: tuple[str, ...]) -> None:
    p = _dsconv("compare", "--in", "8", "--hw", "4", *args)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and p.stderr.startswith("Error:"), p.stderr
    assert "╭" not in p.stderr


def test_typo_key_says_did_you_mean(tmp_path: Path) -> None:
    err = one_line(run("profile", cfg(tmp_path, "cases:\n  - name: a\n    layer: {inn: 8, "
                                                "hw: 8}\n"), "--dry-run"))
    assert "unknown key 'inn'" in err and "did you mean 'in'" in err


def test_strict_env_fails_before_any_case(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from dsconv_cli.services import profile as svc

    def never(*a: Any, **k: Any) -> Any:
        raise AssertionError("a case ran")

    monkeypatch.setattr(svc, "_run_case", never)
    base = tmp_path / "b.json"
    base.write_text(json.dumps({"schema_version": 1, "environment": {"device": "tpu"},
                                "cases": []}))
    c = cfg(tmp_path, LAYER)
    assert "different environment" in one_line(run("profile", c, "--baseline", base,
                                                   "--strict-env"))


def test_dry_run_finds_what_the_real_run_refuses(tmp_path: Path) -> None:
    torch.save(small_resnet(), tmp_path / "pickled.pt")
    c = cfg(tmp_path, "cases:\n  - name: a\n    model: {path: pickled.pt, "
                      "input_shape: [1, 3, 32, 32]}\n")
    assert "trust_pickle" in one_line(run("profile", c, "--dry-run"))
    torch.save(small_resnet().state_dict(), tmp_path / "sd.pt")
    (tmp_path / "net.py").write_text("def build(:\n")
    c = cfg(tmp_path, "cases:\n  - name: a\n    model: {path: sd.pt, arch: 'net.py:build', "
                      "input_shape: [1, 3, 32, 32]}\n", "d.yaml")
    assert "does not parse" in one_line(run("profile", c, "--dry-run", "--trust-code"))
    c.write_text(c.read_text().replace("net.py:build", "tests.models:nope"))
    assert "no 'nope'" in one_line(run("profile", c, "--dry-run", "--trust-code"))
    c.write_text(c.read_text().replace("tests.models:nope", "tests.models:small_resnet"))
    assert run("profile", c, "--dry-run", "--trust-code").exit_code == 0


def test_ctrl_c_report_is_marked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dsconv_cli.services import compare as svc

    interrupt_second_call(monkeypatch, svc, "measure_layer")
    rep = tmp_path / "r.json"
    r = run("compare", "--in", "8,16", "--hw", "8", "--measure", "--report", rep, *FAST)
    assert r.exit_code == 130 and json.loads(rep.read_text())["interrupted"] is True


def test_foreign_pickle_is_named_and_trust_pickle_loads_it(tmp_path: Path) -> None:
    import collections

    p = tmp_path / "m.pt"
    torch.save({"model": small_resnet(), "meta": collections.Counter(a=1)}, p)
    err = one_line(run("convert", p, "--dry-run"))
    assert "outside torch's weights_only allow-list" in err and "--trust-pickle" in err
    r = run("convert", p, "--dry-run", "--trust-pickle")
    assert r.exit_code == 0, r.stderr
    c = cfg(tmp_path, "timing: {min_time: 0.01, warmup: 1}\ncases:\n  - name: a\n    model: "
                      "{path: m.pt, input_shape: [1, 3, 32, 32], trust_pickle: true}\n")
    assert run("profile", c, "--trust-pickle").exit_code == 0


def test_a_billion_case_sweep_is_refused_at_once(tmp_path: Path) -> None:
    values = ", ".join(str(i) for i in range(1, 1001))
    c = cfg(tmp_path, f"max_cases: 100000\ncases:\n  - name: a\n    layer: {{in: [{values}], "
                      f"hw: [{values}], out: [{values}]}}\n")
    t0 = time.perf_counter()
    err = one_line(run("profile", c, "--dry-run"))
    assert "1,000,000,000 cases" in err and time.perf_counter() - t0 < 5
