"""Trust and truth: the writer, the error classes, trust from the command line, flagged
measurements, and output that says only what it knows."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from dsconv_cli.atomic import check_writable, write_all_atomic
from dsconv_cli.cases import resolve_layer
from dsconv_cli.cli import app
from dsconv_cli.cost import cost
from dsconv_cli.errors import BackendError, FieldError, InputError
from dsconv_cli.results import ComparedCase, Measurement, Speedup
from dsconv_cli.services.compare import explain, implausible_speedup
from dsconv_cli.specs import ConvSpec
from dsconv_cli.torch_backend.timing import Calibration, roofline, time_call

from .models import small_resnet
from .test_measure import FAST, _timing
from .utils import interrupt_second_call

runner = CliRunner()


def invoke(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


# ------------------------------------------------------------------ 1. one atomic writer

def test_outputs_get_the_permissions_a_plain_write_gives(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_all_atomic([(tmp_path / "a.json", "{}")])
        assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
        (tmp_path / "b.txt").write_text("x")
        os.chmod(tmp_path / "b.txt", 0o640)
        write_all_atomic([(tmp_path / "b.txt", "y")])  # an existing file keeps its mode
        assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_no_clobber_and_take_back_on_failure(tmp_path: Path) -> None:
    model, plan = tmp_path / "m.pt", tmp_path / "m.pt.plan.json"
    plan.write_text("someone else's")
    with pytest.raises(InputError, match="exists"):
        write_all_atomic([(model, b"model"), (plan, "plan")], overwrite=False)
    # the model this call created was taken back; the plan is untouched; no temp left
    assert not model.exists() and plan.read_text() == "someone else's"
    assert [p.name for p in tmp_path.iterdir()] == [plan.name]


def test_stale_temp_of_a_dead_process_is_removed(tmp_path: Path) -> None:
    stale = tmp_path / ".o.pt.dsconv-999999999-abc.tmp"  # no such pid
    live = tmp_path / f".o.pt.dsconv-{os.getpid()}-abc.tmp"
    stale.write_bytes(b"x" * 100)
    live.write_bytes(b"x")
    write_all_atomic([(tmp_path / "o.pt", b"new")])
    assert not stale.exists() and live.exists()


def test_special_files_and_symlinks_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere")
    for p in (fifo, link, Path("/dev/null")):
        with pytest.raises(InputError):
            check_writable(p, "-o", overwrite=True)
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(InputError, match="not a folder"):
        check_writable(afile / "r.json", "--report", overwrite=True)


def test_report_under_a_file_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    r = invoke("compare", "--in", "8", "--hw", "4", "--report", tmp_path / "afile" / "r.json")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "not a folder" in r.stderr


def test_report_on_the_model_output_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "m.pt"
    torch.save(small_resnet(), src)
    for out, clash in ((tmp_path / "o.json", tmp_path / "o.json"),
                       (tmp_path / "o.pt", tmp_path / "o.pt.plan.json")):
        r = invoke("convert", src, "-o", out, "--trust-pickle", "--report", clash)
        assert r.exit_code == 2 and "is also" in r.stderr and not out.exists()


def test_sigterm_is_handled_like_ctrl_c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    from dsconv_cli.cli import common

    def boom(*a: Any, **k: Any) -> None:
        raise common.Terminated()

    monkeypatch.setattr("dsconv_cli.cli.compare.build_cases", boom)
    r = invoke("compare", "--in", "8", "--hw", "4")
    assert r.exit_code == 143 and "Terminated" in r.stderr


# ------------------------------------------------------------------ 2. errors say what happened

def test_truncated_file_says_so(tmp_path: Path) -> None:
    good = tmp_path / "m.pt"
    torch.save(small_resnet().state_dict(), good)
    bad = tmp_path / "cut.pt"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    r = invoke("convert", bad, "--dry-run", "--arch", "tests.models:small_resnet")
    assert r.exit_code == 2 and "truncated or corrupt" in r.stderr


def test_out_of_memory_while_loading_is_the_environment(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "m.pt"
    torch.save(small_resnet().state_dict(), p)

    def oom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 9 GB")

    monkeypatch.setattr(torch, "load", oom)
    r = invoke("convert", p, "--dry-run", "--arch", "tests.models:small_resnet")
    assert r.exit_code == 1 and "out of memory" in r.stderr and "corrupt" not in r.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_map_location_cuda_without_cuda(tmp_path: Path) -> None:
    p = tmp_path / "m.pt"
    torch.save(small_resnet().state_dict(), p)
    for loc in ("cuda", "meta"):
        r = invoke("convert", p, "--dry-run", "--arch", "tests.models:small_resnet",
                   "--map-location", loc)
        assert r.exit_code == 2 and f"--map-location '{loc}'" in r.stderr, r.stderr


def test_forward_failure_names_the_layer(tmp_path: Path) -> None:
    p = tmp_path / "m.pt"
    torch.save(small_resnet(), p)
    r = invoke("convert", p, "--dry-run", "--trust-pickle", "--input-shape", "1,5,32,32")
    assert r.exit_code == 2 and "in stem.0 (Conv2d)" in r.stderr, r.stderr


def test_debug_keeps_the_users_own_traceback(tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text("def build():\n    return helper_that_fails()\n\n"
                                     "def helper_that_fails():\n    raise ValueError('mine')\n")
    sd = tmp_path / "sd.pt"
    torch.save({"w": torch.zeros(1)}, sd)
    r = invoke("--debug", "convert", sd, "--dry-run", "--arch", f"{tmp_path}/net.py:build")
    assert r.exit_code != 0 and r.exception is not None
    import traceback

    text = "".join(traceback.format_exception(r.exception))
    assert "helper_that_fails" in text and "mine" in text


def test_a_bug_in_dsconv_says_please_report(monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(*a: Any, **k: Any) -> None:
        raise TypeError("unexpected thing")

    monkeypatch.setattr("dsconv_cli.cli.compare.build_cases", bug)
    r = invoke("compare", "--in", "8", "--hw", "4")
    assert r.exit_code == 1 and "internal error" in r.stderr and "report" in r.stderr
    assert "Traceback" not in r.stderr


def test_unwritable_cache_is_said_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("DSCONV_CACHE_DIR", str(blocker / "sub"))
    from dsconv_cli.torch_backend import timing

    # a plausible calibration (a loaded machine's implausible one is never written at all)
    monkeypatch.setattr(timing, "_calibrate_once", lambda d, dt, th: timing.Calibration(
        timing.calibration_key(d, dt, th), 80.0, tuple((s, 20.0, 20.0) for s in
                                                       timing.CAL_SIZES)))
    r = invoke("compare", "--in", "8", "--hw", "4", "--measure", *FAST)
    assert r.exit_code == 0
    assert r.stderr.count("cannot be written") == 1


# ------------------------------------------------------------------ 3. trust from the command line

def _config(tmp_path: Path, model: str) -> Path:
    torch.save(small_resnet().state_dict(), tmp_path / "sd.pt")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"cases:\n  - name: m\n    model: {{path: sd.pt, input_shape: [1, 3, 32, 32]"
                   f"{model}}}\n")
    return cfg


def test_a_config_cannot_grant_itself_trust(tmp_path: Path) -> None:
    cfg = _config(tmp_path, ", trust_pickle: true, arch: 'tests.models:small_resnet'")
    r = invoke("profile", cfg, "--dry-run", "--trust-code")
    assert r.exit_code == 2 and "cases[0].model.trust_pickle" in r.stderr
    r = invoke("profile", cfg, "--dry-run", "--trust-pickle")
    assert r.exit_code == 2 and "cases[0].model.arch" in r.stderr and "--trust-code" in r.stderr
    r = invoke("profile", cfg, "--dry-run", "--trust-pickle", "--trust-code")
    assert r.exit_code == 0, r.stderr


def test_arch_resolution_refuses_non_callables_and_restores_sys_path(tmp_path: Path) -> None:
    before = list(sys.path)
    sd = tmp_path / "sd.pt"
    torch.save({"w": torch.zeros(1)}, sd)
    r = invoke("convert", sd, "--dry-run", "--arch", "os:system", "--arch-kwargs",
               '{"command": "touch PWNED"}')
    assert r.exit_code == 2 and "not an nn.Module class or a Python function" in r.stderr
    assert not Path("PWNED").exists()
    r = invoke("convert", sd, "--dry-run", "--arch", "tests.models:small_resnet")
    assert r.exit_code == 2  # the state_dict does not match, but the import happened
    assert sys.path == before


def test_sys_exit_in_user_code_is_an_error_of_the_input(tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text("import sys\ndef build():\n    sys.exit(0)\n")
    sd = tmp_path / "sd.pt"
    torch.save({"w": torch.zeros(1)}, sd)
    r = invoke("convert", sd, "--dry-run", "--arch", f"{tmp_path}/net.py:build")
    assert r.exit_code == 2 and "SystemExit" in r.stderr


# ------------------------------------------------------------------ 4/5. measurements

def _m(median: float, iqr: float = 0.0, lo: float | None = None, hi: float | None = None,
       gflops: float = 10.0, bound: str = "memory") -> Measurement:
    lo = median if lo is None else lo
    hi = median if hi is None else hi
    return Measurement(median_ms=median, iqr_ms=iqr, q1_ms=median, q3_ms=median, min_ms=lo,
                       max_ms=hi, runs=5, calls=50, memory_format="nchw", gflops=gflops,
                       gbps=1.0, bound_ms=median / 2, bound=bound,  # type: ignore[arg-type]
                       roofline_fraction=0.5, flag=None)


def test_roofline_flags_outliers_and_noise() -> None:
    cal = Calibration("k", 100.0, ((1 << 30, 10.0, 10.0),))
    r = roofline(10**6, 10**3, _timing(1000.0), cal)  # bound 0.01 ms vs 1000 ms
    assert r.flag and "under 1%" in r.flag
    t = _timing(1.0)
    noisy = type(t)(1.0, 0.1, 0.95, 1.05, 0.9, 33.0, 5, 5, "nchw")
    r = roofline(10**9, 10**6, noisy, cal)
    assert r.flag and "noisy" in r.flag


def _case(std_ms: float, parts: dict[str, Measurement], theory: float = 8.69
          ) -> ComparedCase:
    import dataclasses

    base = resolve_layer({"in": 256, "out": 256, "kernel": (3, 3), "hw": (14, 14)}).to_result()
    cand_ms = sum(m.median_ms for m in parts.values())
    assert base.candidate.parts is not None
    cand = dataclasses.replace(base.candidate, measured=_m(cand_ms), parts={
        n: dataclasses.replace(s, measured=parts[n]) for n, s in base.candidate.parts.items()})
    return dataclasses.replace(base, standard=dataclasses.replace(
        base.standard, measured=_m(std_ms, gflops=400.0)), candidate=cand,
        speedup=Speedup(round(std_ms / cand_ms, 4), theory, "nchw"))


def test_an_implausible_speedup_is_called_so() -> None:
    c = _case(190.0, {"depthwise": _m(0.5), "pointwise": _m(0.5)})  # 190x vs 8.69x
    assert implausible_speedup(c) and "implausible" in explain(c)
    ok = _case(4.0, {"depthwise": _m(0.3), "pointwise": _m(0.7)})
    assert implausible_speedup(ok) is None


def test_why_names_the_slowest_part() -> None:
    c = _case(16.2, {"depthwise": _m(5.9), "pointwise": _m(10.3, bound="compute")},
              theory=3.0)
    why = explain(c)
    assert "the pointwise conv takes 64%" in why and "depthwise conv takes" not in why
    assert "close to" not in why
    far = _case(27.0, {"depthwise": _m(1.0), "pointwise": _m(2.0)}, theory=3.0)  # 9x vs 3x
    assert "close to" not in explain(far)


def test_warmup_runs_with_the_timers_threads() -> None:
    seen: list[int] = []
    torch.set_num_threads(2)
    time_call(lambda: seen.append(torch.get_num_threads()), torch.device("cpu"),
              min_time=0.001, warmup=2, threads=1)
    assert seen[:2] == [1, 1] and torch.get_num_threads() == 2


def test_svd_runs_on_one_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dsconv_cli.torch_backend import convert

    seen: list[int] = []
    real = torch.linalg.svd

    def spy(*a: Any, **k: Any) -> Any:
        seen.append(torch.get_num_threads())
        return real(*a, **k)

    monkeypatch.setattr(torch.linalg, "svd", spy)
    convert._svd(nn.Conv2d(8, 8, 3))
    assert seen == [1]


def test_measure_model_leaves_the_callers_model_alone() -> None:
    from dsconv_cli.torch_backend.measure import measure_model, open_session
    from dsconv_cli.torch_backend.timing import MeasureOptions

    model = small_resnet()
    w = model.stem[0].weight
    s = open_session(MeasureOptions("cpu", "fp32", 1, ("channels_last",), 0.01, 1))
    measure_model(model, (1, 3, 32, 32), s)
    assert model.stem[0].weight is w and w.is_contiguous() and model.training


# ------------------------------------------------------------------ 6. small bugs

def test_compare_model_takes_batch() -> None:
    r = invoke("compare", "--model", "mobilenet_v2", "--batch", "4", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["cases"][0]["model"]["batch"] == 4


def test_large_dilation_conv_converts(tmp_path: Path) -> None:
    m = nn.Sequential(nn.Conv2d(64, 64, 7, dilation=12, padding=36))
    p = tmp_path / "m.pt"
    torch.save(m, p)
    r = invoke("convert", p, "--dry-run", "--trust-pickle", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["cases"][0]["totals"]["converted"] == 1


def test_apply_plan_reads_the_version() -> None:
    from dsconv_cli import apply_plan

    with pytest.raises(ValueError, match="plan_version"):
        apply_plan(small_resnet(), {"plan_version": 99, "layers": []})


@pytest.mark.usefixtures("entry_signals")  # handlers as the entry point arms them
def test_ctrl_c_in_profile_json_writes_what_finished(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from dsconv_cli.services import profile as svc

    interrupt_second_call(monkeypatch, svc, "_run_case")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("timing: {min_time: 0.01, warmup: 1}\ncases:\n"
                   "  - {name: a, layer: {in: 8, hw: 8}}\n  - {name: b, layer: {in: 8, hw: 8}}\n")
    rep = tmp_path / "r.json"
    r = invoke("profile", cfg, "--json", "--report", rep)
    assert r.exit_code == 130
    data = json.loads(r.stdout)  # JSON on stdout, not a Rich table
    assert data["interrupted"] is True and [c["name"] for c in data["cases"]] == ["a"]
    assert json.loads(rep.read_text())["interrupted"] is True


# ------------------------------------------------------------------ 7. the engine

def test_same_padding_with_stride_is_an_engine_error() -> None:
    with pytest.raises(FieldError, match="'same' needs stride 1"):
        cost(ConvSpec(8, 8, (3, 3), (2, 2), "same"), (1, 8, 8, 8))


def test_counting_note_includes_the_elementwise_rule() -> None:
    r = invoke("compare", "--in", "8", "--hw", "4")
    assert "elementwise ops, counted apart" in r.stdout


# ------------------------------------------------------------------ 8. output that tells the truth

def test_narrow_tables_never_cut_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSCONV_WIDTH", "60")
    r = invoke("compare", "--in", "256", "-k", "3", "--hw", "14")
    assert r.exit_code == 0 and "…" not in r.stdout


def test_rank_is_capped_at_the_exact_rank(tmp_path: Path) -> None:
    p = tmp_path / "m.pt"
    torch.save(nn.Sequential(nn.Conv2d(32, 32, 2)), p)
    r = invoke("convert", p, "--dry-run", "--trust-pickle", "--depth-multiplier", "9",
               "--allow-larger", "--json")
    (la,) = json.loads(r.stdout)["cases"][0]["layers"]
    assert la["rank"] == 4 == la["max_rank"] and "capped" in la["note"]
    r = invoke("convert", p, "--dry-run", "--trust-pickle", "--depth-multiplier", "9",
               "--allow-larger")
    assert "9/4" not in r.stdout and "4/4" in r.stdout


def test_a_larger_ds_form_is_not_called_fewer() -> None:
    r = invoke("compare", "--in", "4", "--out", "4", "-k", "1", "--hw", "4")
    assert "fewer" not in r.stdout and "more params and MACs" in r.stdout


def test_dry_run_does_not_call_unevaluated_budgets_unmet(tmp_path: Path) -> None:
    cfg = _config(tmp_path, ", arch: 'tests.models:small_resnet'")
    cfg.write_text(cfg.read_text() + "    budget: {max_params: 10}\n")
    r = invoke("profile", cfg, "--dry-run", "--trust-code")
    assert r.exit_code == 0 and "0/1 met" not in r.stdout and "need a run" in r.stdout


def test_help_shows_the_extra_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    r = invoke("profile", "--help")
    assert "dsconv[plot]" in r.stdout


def test_backend_error_is_exit_1() -> None:
    assert BackendError("x").exit_code == 1 and InputError("x").exit_code == 2
