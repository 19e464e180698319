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
    r = run("profile", c, "--baseline", tmp_path / "b.json")
    # checked against report.schema.json: every problem one line, the bad figure first
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and all(ln.startswith("Error: ") for ln in lines), r.stderr
    assert f": {where}: " in lines[0]


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


def test_a_text_file_as_model_says_what_it_is(tmp_path: Path) -> None:
    for i, text in enumerate(("hello world\nthis is text\n", "import torch\n",
                              "# a comment\n", "{\"a\": 1}\n")):
        p = tmp_path / f"notes{i}.pt"
        p.write_text(text)
        for args in (("compare", "--model", p, "--input-shape", "1,3,8,8"),
                     ("convert", p, "-o", tmp_path / "out.pt")):
            err = one_line(run(*args))
            assert f"not a torch file: it starts with {text[:12].encode()!r}" in err, err
            assert "KeyError" not in err and "operand" not in err
    assert not (tmp_path / "out.pt").exists()


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
    base.write_text(json.dumps({"schema_version": 1, "tool": {"name": "dsconv", "version": "0"},
                                "environment": {"device": "tpu"},
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


@pytest.mark.usefixtures("entry_signals")  # handlers as the entry point arms them
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


# ================================================================== round three (issue 22)

class WideDataDependent(nn.Module):
    """Control flow on a value (cannot be counted on meta) after a wide convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 256, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y if float(y.sum()) >= 0 else -y


class RaisesKeyboardInterrupt(nn.Module):
    """User code whose forward raises KeyboardInterrupt itself (no Ctrl-C)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise KeyboardInterrupt


class Boom(BaseException):
    pass


def raises_base_exception() -> nn.Module:
    raise Boom("from the builder")


def raises_generator_exit() -> nn.Module:
    raise GeneratorExit


def deep_sequential() -> nn.Module:
    m: nn.Module = nn.Conv2d(3, 3, 1)
    for _ in range(5000):
        m = nn.Sequential(m)
    return m


def zero_channel_conv() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 0, 1))


def half_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(32, 32, 3)).half()


def double_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(32, 32, 3)).double()


def _sd(tmp_path: Path) -> Path:
    p = tmp_path / "sd.pt"
    torch.save(small_resnet().state_dict(), p)
    return p


# ------------------------------------------------------------------ 1. inputs never outputs

def test_no_output_may_be_an_input(tmp_path: Path) -> None:
    sd = _sd(tmp_path)
    data = tmp_path / "c.json"  # calibration data under a report's name
    torch.save(torch.randn(2, 3, 32, 32), data)
    before = data.read_bytes()
    base = ("convert", sd, "--arch", "tests.models:small_resnet", "--force")  # even so
    for args in (("--dry-run", "--calibration-data", data, "--report", data),
                 ("--dry-run", "--eval-data", data, "--report", data),
                 ("-o", data, "--calibration-data", data)):
        assert "is also the input" in one_line(run(*base, *args)), args
    link = tmp_path / "link.json"  # a hard link is the same file
    os.link(data, link)
    assert "is also the input" in one_line(run(*base, "--dry-run", "--calibration-data", data,
                                               "--report", link))
    model = tmp_path / "m.json"  # compare checks its --report against --model and --vs
    torch.save(nn.Sequential(nn.Conv2d(3, 8, 3)), model)
    mbytes = model.read_bytes()
    err = one_line(run("compare", "--model", model, "--trust-pickle", "--input-shape",
                       "1,3,8,8", "--report", model))
    assert "is also the input --model" in err
    err = one_line(run("compare", "--model", sd, "--arch", "tests.models:small_resnet",
                       "--input-shape", "1,3,32,32", "--vs", model, "--trust-pickle",
                       "--report", model))
    assert "is also the input --vs" in err
    assert data.read_bytes() == before and model.read_bytes() == mbytes


def test_convert_keeps_an_existing_report_without_force(tmp_path: Path) -> None:
    sd = _sd(tmp_path)
    rep = tmp_path / "r.json"
    rep.write_text("mine")
    args = ("convert", sd, "--arch", "tests.models:small_resnet", "--dry-run", "--report", rep)
    assert "--force" in one_line(run(*args)) and rep.read_text() == "mine"
    r = run(*args, "--force")
    assert r.exit_code == 0, r.stderr
    assert json.loads(rep.read_text())["cases"][0]["source"]["format"] == "state_dict"


# ------------------------------------------------------------------ 2. nothing lost

def test_full_disk_report_still_prints_stdout(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from dsconv_cli import atomic

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full)
    rep = tmp_path / "r.json"
    r = run("compare", "--in", "8", "--hw", "4", "--json", "--report", rep)
    err = one_line(r, 1)
    assert str(rep) in err and "No space left" in err
    assert json.loads(r.stdout)["cases"][0]["standard"]["params"] == 8 * 8 * 9  # hand count
    assert list(tmp_path.iterdir()) == []  # no temp file left


# ------------------------------------------------------------------ 3. special files

def _capped() -> None:
    """In a child process: at most 8 GB of address space (a read of /dev/zero that was not
    refused fails fast instead of taking the machine's memory)."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))


def _fifo(tmp_path: Path, name: str = "fifo") -> Path:
    p = tmp_path / name
    os.mkfifo(p)
    return p


def _special_cases(tmp_path: Path) -> list[tuple[list[str], str]]:
    """(arguments, the option the error must name) for a FIFO or device as each input."""
    fifo = str(_fifo(tmp_path))
    conf = cfg(tmp_path, LAYER)
    sd = str(_sd(tmp_path))
    arch = ["--arch", "tests.models:small_resnet"]
    return [
        (["profile", "--merge", fifo, fifo], "--merge"),
        (["profile", "--merge", "/dev/zero"], "--merge"),
        (["profile", str(conf), "--dry-run", "--baseline", fifo], "--baseline"),
        (["profile", str(conf), "--dry-run", "--baseline", "/dev/zero"], "--baseline"),
        (["profile", fifo, "--dry-run"], "CONFIG"),
        (["convert", sd, *arch, "--dry-run", "--calibration-data", fifo],
         "--calibration-data"),
        (["convert", sd, *arch, "--dry-run", "--eval-data", "/dev/zero"], "--eval-data"),
        (["convert", fifo, "--dry-run"], "fifo"),
        (["compare", "--model", fifo, "--input-shape", "1,3,8,8"], "fifo"),
    ]


def test_fifos_and_devices_as_inputs_are_one_line(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "dsconv"
    for args, option in _special_cases(tmp_path):
        t0 = time.perf_counter()
        # its own process, with a timeout (a FIFO must never block) and a memory cap
        r = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60,
                           preexec_fn=_capped)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        err = r.stderr.strip()
        assert err.startswith("Error:") and len(err.splitlines()) == 1, (args, err)
        assert option in err and "no such file" not in err, (args, err)
        assert time.perf_counter() - t0 < 60


_CACHE_TEST = "test_calibration_cache_on_a_device_or_fifo_is_not_read"


def test_calibration_cache_on_a_device_or_fifo_is_not_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.environ.get("DSCONV_CACHE_TEST_CHILD") != "1":  # in a child: capped, timed out
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            f"{__file__}::{_CACHE_TEST}"],
                           capture_output=True, text=True, timeout=120, cwd=ROOT,
                           env={**os.environ, "DSCONV_CACHE_TEST_CHILD": "1"},
                           preexec_fn=_capped)
        assert r.returncode == 0, r.stdout[-3000:]
        return
    from dsconv_cli.torch_backend import timing

    warned: list[str] = []
    fresh = timing.Calibration("k", 1e3, tuple((s, 1e3, 1e3) for s in timing.CAL_SIZES), 0.05)
    monkeypatch.setattr(timing, "calibrate", lambda *a, **k: fresh)
    for target in ("/dev/zero", str(_fifo(tmp_path, "cache-fifo"))):
        cache = tmp_path / "cache"
        cache.mkdir(exist_ok=True)
        link = cache / "calibration.json"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
        monkeypatch.setenv("DSCONV_CACHE_DIR", str(cache))
        t0 = time.perf_counter()
        cal = timing.load_calibration(torch.device("cpu"), "fp32", 1, on_warn=warned.append)
        assert time.perf_counter() - t0 < 10 and cal.peak_gflops == fresh.peak_gflops
        assert "not a regular file" in warned[-1], warned


def test_step_summary_fifo_never_blocks(tmp_path: Path) -> None:
    fifo = _fifo(tmp_path, "summary")
    c = cfg(tmp_path, "cases:\n  - name: a\n    layer: {in: 8, hw: 8}\n    budget: "
                      "{max_params: 1}\n  - name: b\n    nope: 1\n")  # exit 2: a summary line
    exe = Path(sys.executable).parent / "dsconv"
    r = subprocess.run([str(exe), "profile", str(c), "--dry-run"], capture_output=True,
                       text=True, timeout=60,
                       env={**os.environ, "GITHUB_STEP_SUMMARY": str(fifo)})
    assert r.returncode == 2 and "GITHUB_STEP_SUMMARY" in r.stderr, r.stderr


# ------------------------------------------------------------------ 4. memory before forwards

def test_fallback_forward_on_zeros_gets_the_memory_estimate(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dsconv_cli.torch_backend import counting

    monkeypatch.setattr(counting, "free_memory", lambda: 300_000_000)  # 300 MB free
    t0 = time.perf_counter()
    # the input (3 MB) fits a tenth of that; the conv's output (266 MB) does not fit 80%
    err = one_line(run("compare", "--arch", "tests.test_hostile:WideDataDependent",
                       "--input-shape", "1,3,512,512"))
    assert "--input-shape" in err and "GB" in err and time.perf_counter() - t0 < 30


# ------------------------------------------------------------------ 5. signals

@pytest.mark.usefixtures("entry_signals")  # handlers as the entry point arms them
def test_keyboard_interrupt_from_a_forward_is_that_case_s_error(tmp_path: Path) -> None:
    torch.save(RaisesKeyboardInterrupt().state_dict(), tmp_path / "m.pt")
    c = cfg(tmp_path, "timing: {min_time: 0.01, warmup: 1}\ncases:\n  - name: ki\n    "
                      "model: {path: m.pt, input_shape: [1, 3, 8, 8], arch: "
                      "'tests.test_hostile:RaisesKeyboardInterrupt'}\n  - name: later\n"
                      "    layer: {in: 8, hw: 8}\n")
    rep = tmp_path / "r.json"
    r = run("profile", c, "--trust-code", "--report", rep)
    assert r.exit_code == 1, (r.exit_code, r.stderr)
    cases = {c["name"]: c for c in json.loads(rep.read_text())["cases"]}
    assert cases["ki"]["verdict"] == "error" and "KeyboardInterrupt" in cases["ki"]["error"]
    assert cases["later"]["measured"]["median_ms"] > 0  # the suite went on
    err = one_line(run("compare", "--arch", "tests.test_hostile:RaisesKeyboardInterrupt",
                       "--input-shape", "1,3,8,8"))
    assert "KeyboardInterrupt" in err


def _sigterm_second_call(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> None:
    import signal

    real = getattr(owner, name)
    calls = {"n": 0}

    def wrapped(*a: Any, **k: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            signal.raise_signal(signal.SIGTERM)
        return real(*a, **k)

    monkeypatch.setattr(owner, name, wrapped)


@pytest.mark.usefixtures("entry_signals")  # handlers as the entry point arms them
def test_sigterm_during_profile_and_measure_is_143(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from dsconv_cli.services import compare as svc_compare
    from dsconv_cli.services import profile as svc_profile

    _sigterm_second_call(monkeypatch, svc_profile, "_run_case")
    c = cfg(tmp_path, "timing: {min_time: 0.01, warmup: 1}\ncases:\n  - name: a\n    layer: "
                      "{in: 8, hw: 8}\n  - name: b\n    layer: {in: 16, hw: 8}\n")
    r = run("profile", c)
    assert r.exit_code == 143 and "interrupted" in r.stderr, (r.exit_code, r.stderr)
    _sigterm_second_call(monkeypatch, svc_compare, "measure_layer")
    r = run("compare", "--in", "8,16", "--hw", "8", "--measure", *FAST)
    assert r.exit_code == 143 and "interrupted" in r.stderr, (r.exit_code, r.stderr)


# ------------------------------------------------------------------ 6. internal errors

@pytest.mark.parametrize("args", [
    ("compare", "--arch", "tests.test_hostile:deep_sequential", "--input-shape", "1,3,4,4"),
    # a BaseException of user code's own passes through (issue 30: it cannot be told from
    # a test harness's); tests/test_hostile4.py checks that
    ("compare", "--arch", "tests.test_hostile:raises_generator_exit", "--input-shape",
     "1,3,4,4"),
    ("compare", "--arch", "tests.test_hostile:half_net", "--input-shape", "1,32,8,8",
     "--arch-kwargs", '{"a":' * 20000 + "1" + "}" * 20000),
    ("compare", "--arch", "tests.test_hostile:zero_channel_conv", "--input-shape", "1,3,4,4",
     "--measure", *FAST),
])
def test_user_code_and_deep_inputs_are_one_line(args: tuple[str, ...]) -> None:
    err = one_line(run(*args))
    assert "internal error" not in err and len(err) < 400, err


def test_bad_seed_and_long_names_are_one_line(tmp_path: Path) -> None:
    sd = _sd(tmp_path)
    base = ("convert", sd, "--arch", "tests.models:small_resnet")
    assert "--seed" in one_line(run(*base, "--dry-run", "--seed", str(1 << 64)))
    long_name = tmp_path / ("a" * 300 + ".pt")
    assert "too long" in one_line(run(*base, "-o", long_name))
    assert "too long" in one_line(run(*base, "-o", tmp_path / ("b" * 240 + ".pt")))


def _shell(cmd: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "dsconv"
    return subprocess.run(["bash", "-c", cmd.replace("dsconv", str(exe), 1)],
                          capture_output=True, text=True, timeout=120)


def test_closed_full_and_missing_stdout() -> None:
    sweep = ",".join(str(i) for i in range(8, 208))  # 400 cases: more than a pipe holds
    r = _shell(f"dsconv compare --in {sweep} --hw 4,8 --max-cases 1000 --format csv "
               "| head -c 1 >/dev/null; exit ${PIPESTATUS[0]}")
    assert r.returncode in (0, 141) and r.stderr == "", (r.returncode, r.stderr)
    r = _shell("dsconv compare --in 8 --hw 4 >/dev/full")
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "Error: stdout: cannot be written (No space left on device)"], r.stderr
    r = _shell("dsconv compare --in 8 --hw 4 >&-")
    assert r.returncode == 2 and r.stderr.startswith("Error: stdout is closed"), r.stderr


# ------------------------------------------------------------------ 7. fp16 / fp64 models

@pytest.mark.parametrize("builder", ["half_net", "double_net"])
def test_compare_counts_fp16_and_fp64_models(builder: str) -> None:
    r = run("compare", "--arch", f"tests.test_hostile:{builder}", "--input-shape", "1,32,8,8",
            "--json")
    assert r.exit_code == 0, r.stderr
    case = json.loads(r.stdout)["cases"][0]
    assert case["totals"]["macs"] == 32 * 32 * 9 * 6 * 6  # Cin·Cout·K²·Hout·Wout, by hand


# ------------------------------------------------------------------ 8. options that modify

def test_vs_arch_without_vs_is_a_usage_error() -> None:
    for opt, value in (("--vs-arch", "tests.models:small_resnet"),
                       ("--vs-arch-kwargs", '{"classes": 10}')):
        err = one_line(run("compare", "--arch", "tests.models:small_resnet", "--input-shape",
                           "1,3,32,32", opt, value))
        assert opt in err and "--vs" in err


# ------------------------------------------------------------------ 9. true titles, messages

def test_a_real_run_is_never_titled_a_dry_run() -> None:
    from dsconv_cli.render import OutputFormat, profile_view, render_text
    from dsconv_cli.results import envelope

    for extra in ({}, {"interrupted": True}):  # an empty shard; interrupted before a case
        env = envelope([], environment={"device": "cpu"},
                       summary={"cases": 0, "failed": 0, "passed": 0}, **extra)
        assert "dry run" not in render_text(env, OutputFormat.markdown, profile_view)
    dry = envelope([], dry_run=True)
    assert "dry run" in render_text(dry, OutputFormat.markdown, profile_view)


def test_load_errors_never_advise_unsafe_loading(tmp_path: Path) -> None:
    import pickle

    zeros = tmp_path / "zeros.pt"
    with open(zeros, "wb") as f:
        f.truncate(50_000_000)  # a sparse file of zeros
    err = one_line(run("compare", "--model", zeros, "--input-shape", "1,3,8,8"))
    assert "weights_only" not in err and "likely succeed" not in err and "not a torch" in err

    class Evil:
        def __reduce__(self) -> Any:
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(Evil(), protocol=2))
    err = one_line(run("compare", "--model", evil, "--input-shape", "1,3,8,8",
                       "--trust-pickle"))
    assert "blocks as unsafe" in err and "system" in err and "not a torch file" not in err
    assert "likely succeed" not in err and not (tmp_path / "PWNED").exists()


def test_messages_are_whole_and_true(tmp_path: Path) -> None:
    from dsconv_cli.errors import describe

    wrapped = RuntimeError("Exporting the operator 'aten::foo' to ONNX opset 17 is not\n"
                           "supported. Please open an issue.")
    assert describe(wrapped) == ("RuntimeError: Exporting the operator 'aten::foo' to ONNX "
                                 "opset 17 is not supported. Please open an issue.")
    garbage = tmp_path / "c.pt"  # random bytes are not "pickled objects"
    garbage.write_bytes(b"garbage")
    sd = _sd(tmp_path)
    err = one_line(run("convert", sd, "--arch", "tests.models:small_resnet", "--dry-run",
                       "--calibration-data", garbage))
    assert "not a tensor file" in err and "pickled" not in err and "weights_only" not in err


# ------------------------------------------------------------------ 10. what cannot be contained

def test_security_note_and_no_thread_keeps_dsconv_alive() -> None:
    import threading

    text = (ROOT / "README.md").read_text()
    assert "os._exit" in text and "atexit" in text and "container" in text
    r = run("compare", "--in", "8", "--hw", "4", "--measure", *FAST)
    assert r.exit_code in (0, 1), r.stderr
    alive = [t for t in threading.enumerate()
             if t is not threading.main_thread() and not t.daemon]
    assert alive == [], alive


def test_no_output_may_be_the_arch_file(tmp_path: Path) -> None:
    """``--arch file.py:callable`` names an input: ``-o`` on it is refused, even with
    ``--force``, and the file is left as it was (a ``--report`` needs a report suffix)."""
    torch.save(small_resnet().state_dict(), tmp_path / "m.pt")
    arch = tmp_path / "arch.py"
    arch.write_text("from tests.models import small_resnet as build\n")
    before = arch.read_bytes()
    spec = f"{arch}:build"
    r = run("convert", tmp_path / "m.pt", "--arch", spec, "-o", arch, "--force")
    assert r.exit_code == 2 and "is also the input --arch" in r.stderr, r.stderr
    assert arch.read_bytes() == before
