"""Timing and roofline: structure and sanity on CPU (not speed); CUDA where present."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from dsconv_cli.cli import app
from dsconv_cli.results import BlockStats
from dsconv_cli.services import compare as compare_service
from dsconv_cli.torch_backend import timing
from dsconv_cli.torch_backend.timing import (
    CAL_SIZES,
    Calibration,
    calibration_key,
    load_calibration,
    roofline,
    time_call,
)

from .utils import interrupt_second_call, needs_cuda, validate_report

runner = CliRunner()
FAST = ["--min-time", "0.01", "--warmup", "1"]


def test_time_call_statistics_are_sane() -> None:
    conv = torch.nn.Conv2d(8, 8, 3, padding=1).eval()
    x = torch.randn(1, 8, 16, 16)
    t = time_call(lambda: conv(x), torch.device("cpu"), min_time=0.02, warmup=1, threads=1)
    assert t.runs >= 5 and t.calls >= t.runs
    assert 0 < t.min_ms <= t.median_ms <= t.max_ms
    assert 0 <= t.iqr_ms <= t.max_ms - t.min_ms
    assert t.min_ms <= t.q1_ms <= t.median_ms <= t.q3_ms <= t.max_ms
    assert t.iqr_ms == pytest.approx(t.q3_ms - t.q1_ms)


def _timing(ms: float) -> BlockStats:
    return BlockStats(ms, 0.0, ms, ms, ms, ms, 5, 5, "nchw")


def test_roofline_bound_and_flag() -> None:
    cal = Calibration("k", peak_gflops=100.0, bandwidth=((1 << 20, 10.0, 20.0),
                                                           (1 << 30, 5.0, 4.0)))
    # 1e9 FLOPs at 100 GFLOP/s = 10 ms compute bound; 1 MB at 20 GB/s = 0.05 ms
    r = roofline(10**9, 10**6, _timing(20.0), cal)
    assert r.bound == "compute" and r.bound_ms == pytest.approx(10.0)
    assert r.roofline_fraction == pytest.approx(0.5) and r.flag is None
    assert r.gflops == pytest.approx(50.0)
    # faster than the bound: flagged, fraction not clipped
    r = roofline(10**9, 10**6, _timing(5.0), cal)
    assert r.roofline_fraction == pytest.approx(2.0) and r.flag and "exceeds" in r.flag
    # working set beyond 1 MiB uses the larger-size figure (5 GB/s copy > 4 read)
    assert cal.gbps_for(2 << 20) == 5.0 and cal.gbps_for(1000) == 20.0
    assert cal.gbps_for(2 << 30) == 5.0


GOOD = Calibration("k", 80.0, tuple((s, 20.0, 25.0) for s in CAL_SIZES), 0.05)
BUSY = Calibration("k", 31.6, tuple((s, 0.19, 0.19) for s in CAL_SIZES), 4.8)


def fake_calibrations(monkeypatch: pytest.MonkeyPatch, *cals: Calibration) -> list[int]:
    """``_calibrate_once`` returns ``cals`` in turn (the last one from then on), keyed
    like the real one; the list counts the calls."""
    calls: list[int] = []

    def once(device: Any, dtype: str, threads: int | None) -> Calibration:
        calls.append(1)
        c = cals[min(len(calls), len(cals)) - 1]
        return dataclasses.replace(c, key=calibration_key(device, dtype, threads))

    monkeypatch.setattr(timing, "_calibrate_once", once)
    return calls


def test_a_real_calibration_is_sane() -> None:
    cal = timing._calibrate_once(torch.device("cpu"), "fp32", 1)
    assert cal.peak_gflops > 0 and all(c > 0 and r > 0 for _, c, r in cal.bandwidth)
    assert [s for s, _, _ in cal.bandwidth] == list(CAL_SIZES) and cal.spread >= 0
    assert "threads 1" in cal.key and "fp32" in cal.key


def test_calibration_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSCONV_CACHE_DIR", str(tmp_path))
    calls = fake_calibrations(monkeypatch, GOOD)
    cpu = torch.device("cpu")
    a = load_calibration(cpu, "fp32", 1)
    data = json.loads((tmp_path / "calibration.json").read_text())
    assert a.key in data and "threads 1" in a.key and "fp32" in a.key
    b = load_calibration(cpu, "fp32", 1)
    assert b == a and len(calls) == 1  # from the cache, not re-measured
    # a damaged, foreign or implausible cache (floors, spread) is recalibrated with one
    # warning, and the fresh figures are written back
    low_bw = {a.key: {"peak_gflops": a.peak_gflops,
                      "bandwidth": [[s, 0.07, 0.07] for s, _, _ in a.bandwidth]}}
    spread = {a.key: {"peak_gflops": a.peak_gflops, "spread": 4.8,
                      "bandwidth": [list(x) for x in a.bandwidth]}}
    for bad in ("{broken", "[1, 2]", json.dumps({a.key: []}), json.dumps(low_bw),
                json.dumps(spread)):
        (tmp_path / "calibration.json").write_text(bad)
        warned: list[str] = []
        c = load_calibration(cpu, "fp32", 1, on_warn=warned.append)
        assert "recalibrating" in warned[0], (bad, warned)  # said once, first
        assert c == a
        stored = json.loads((tmp_path / "calibration.json").read_text())[a.key]
        assert stored["spread"] == a.spread and stored["bandwidth"][0][1] == 20.0


def test_an_implausible_calibration_is_never_cached(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSCONV_CACHE_DIR", str(tmp_path))
    calls = fake_calibrations(monkeypatch, BUSY)
    warned: list[str] = []
    cal = load_calibration(torch.device("cpu"), "fp32", 1, on_warn=warned.append)
    assert cal.implausible() and len(calls) == timing.CAL_ATTEMPTS
    assert "Not cached" in warned[-1] and not (tmp_path / "calibration.json").exists()
    # the spread alone makes it implausible (a busy machine), even above the floors
    assert "spread" in (dataclasses.replace(GOOD, spread=4.8).implausible() or "")
    assert dataclasses.replace(GOOD, spread=0.9).implausible() is None


def _session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cached: Calibration,
             *fresh: Calibration) -> tuple[Any, list[int], list[str]]:
    """A session whose cache holds ``cached``; recalibrating yields ``fresh``."""
    from dsconv_cli.options import MeasureOptions
    from dsconv_cli.torch_backend.measure import open_session

    monkeypatch.setenv("DSCONV_CACHE_DIR", str(tmp_path))
    key = calibration_key(torch.device("cpu"), "fp32", 1)
    (tmp_path / "calibration.json").write_text(json.dumps({key: {
        "peak_gflops": cached.peak_gflops, "spread": cached.spread,
        "bandwidth": [list(b) for b in cached.bandwidth]}}))
    calls = fake_calibrations(monkeypatch, *fresh)
    warned: list[str] = []
    s = open_session(MeasureOptions(threads=1, min_time=0.01, warmup=1),
                     on_warn=warned.append)
    return s, calls, warned


# plausible, but far below what any machine does with a 64-channel 3x3 conv (~75 MFLOP)
SLOW = Calibration("k", 1.5, tuple((s, 0.6, 0.6) for s in CAL_SIZES), 0.05)
FASTEST = Calibration("k", 1e5, tuple((s, 1e5, 1e5) for s in CAL_SIZES), 0.05)


def test_above_the_roofline_recalibrates_once_and_rejudges(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dsconv_cli.torch_backend.counting import model_cost
    from dsconv_cli.torch_backend.measure import measure_module

    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False)
    shape = (1, 64, 32, 32)
    cost = model_cost(conv, shape, 4)
    # the cached calibration was taken on a busy machine: the conv beats it; the fresh one
    # explains the measurement, which is judged again and not flagged
    s, calls, warned = _session(tmp_path, monkeypatch, SLOW, FASTEST)
    m, _ = measure_module(lambda: conv, shape, cost, s)
    assert len(calls) == 1 and s.recalibrated and s.calibration.peak_gflops == 1e5
    assert m.roofline_fraction < 1 and not (m.flag and "exceeds" in m.flag)
    assert s.environment["calibration"]["peak_gflops"] == 1e5 and "recalibrating" in warned[0]
    # still above after the fresh calibration: flagged implausible, never explained away,
    # and the calibration is redone once per run, not per measurement
    s, calls, _ = _session(tmp_path, monkeypatch, SLOW, SLOW)
    for _ in range(2):
        m, _ = measure_module(lambda: conv, shape, cost, s)
        assert m.roofline_fraction > 1.05 and m.flag and "implausible" in m.flag
        assert "cache" not in m.flag
    assert len(calls) == 1


def _measured(data: dict[str, Any]) -> list[dict[str, Any]]:
    (case,) = data["cases"]
    cand = case["candidate"]
    return [case["standard"]["measured"], cand["measured"],
            *(p["measured"] for p in cand["parts"].values())]


def test_compare_measure_json_fields() -> None:
    r = runner.invoke(app, ["compare", "--in", "16", "--hw", "12", "--measure", "--json",
                            "--threads", "1", *FAST])
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    validate_report(data)
    env = data["environment"]
    assert env["device"] == "cpu" and env["threads"] == 1 and env["torch"] == torch.__version__
    assert env["tf32"] is False and env["calibration"]["peak_gflops"] > 0
    for m in _measured(data):
        assert m["median_ms"] > 0 and m["runs"] >= 5
        assert m["min_ms"] <= m["median_ms"] <= m["max_ms"]
        assert m["gflops"] > 0 and m["gbps"] > 0 and m["memory_format"] == "nchw"
        # the fraction is bound/median, and a row beating its bound says so
        assert m["roofline_fraction"] == pytest.approx(m["bound_ms"] / m["median_ms"],
                                                       rel=1e-2, abs=2e-4)
        assert ("exceeds" in (m["flag"] or "")) == (m["roofline_fraction"] > 1.05)
    case = data["cases"][0]
    sp = case["speedup"]
    assert sp["measured"] == pytest.approx(
        case["standard"]["measured"]["median_ms"] / case["candidate"]["measured"]["median_ms"],
        rel=1e-3)
    assert sp["theoretical"] == case["reduction"]["macs"]
    assert case["why"].startswith("measured")


def test_memory_format_both_names_winner() -> None:
    r = runner.invoke(app, ["compare", "--in", "16", "--hw", "12", "--measure", "--json",
                            "--memory-format", "both", *FAST])
    assert r.exit_code == 0, r.stderr
    case = json.loads(r.stdout)["cases"][0]
    dw = case["candidate"]["parts"]["depthwise"]
    by = dw["measured_by_format"]
    assert set(by) == {"nchw", "channels_last"}
    assert dw["measured"]["median_ms"] == min(m["median_ms"] for m in by.values())


@pytest.mark.parametrize("kind", ["inverted-residual", "mbconv", "eca"])
def test_measure_every_kind(kind: str) -> None:
    r = runner.invoke(app, ["compare", "--in", "8", "--hw", "8", "--kind", kind, "--measure",
                            "--format", "csv", *FAST])
    assert r.exit_code == 0, r.stderr
    assert "total" in r.stdout


def test_measured_table_has_timings() -> None:
    r = runner.invoke(app, ["compare", "--in", "16", "--hw", "12", "--measure", *FAST])
    assert r.exit_code == 0
    assert "median ms" in r.stdout and "Measured speedup" in r.stdout and "Why:" in r.stdout


@pytest.mark.parametrize(("args", "needle"), [
    (["--threads", "0"], "--threads"),
    (["--min-time", "0"], "--min-time"),
    (["--dtype", "int8"], "--dtype"),
    (["--warmup", "-1"], "--warmup"),
])
def test_measure_bad_options_exit_2(args: list[str], needle: str) -> None:
    r = runner.invoke(app, ["compare", "--in", "8", "--hw", "8", "--measure", *args])
    assert r.exit_code == 2 and needle in r.stderr and "Traceback" not in r.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_exit_2() -> None:
    r = runner.invoke(app, ["compare", "--in", "8", "--hw", "8", "--measure", "--device", "cuda"])
    assert r.exit_code == 2 and "CUDA is not available" in r.stderr


def test_too_big_case_skipped_rest_reported() -> None:
    # 8 channels at 32768x32768: ~400 GB of tensors, more than any test machine
    r = runner.invoke(app, ["compare", "--in", "8", "--hw", "8,32768", "--measure",
                            "--json", *FAST])
    assert r.exit_code == 1
    cases = json.loads(r.stdout)["cases"]
    skipped = [c for c in cases if c.get("skipped")]
    assert [c["name"] for c in skipped] == ["separable[hw=32768]"]
    assert "GB" in skipped[0]["skipped"]
    assert sum("speedup" in c for c in cases) == 1
    assert "skipped" in r.stderr


@pytest.mark.usefixtures("entry_signals")  # handlers as the entry point arms them
def test_ctrl_c_reports_what_was_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    interrupt_second_call(monkeypatch, compare_service, "measure_layer")
    r = runner.invoke(app, ["compare", "--in", "8,16", "--hw", "8", "--measure", "--json",
                            *FAST])
    assert r.exit_code == 130
    cases = json.loads(r.stdout)["cases"]
    assert [c["name"] for c in cases] == ["separable[in=8]"]
    assert "interrupted" in r.stderr


@needs_cuda
@pytest.mark.cuda
def test_cuda_measure() -> None:
    r = runner.invoke(app, ["compare", "--in", "64", "--hw", "28", "--measure", "--json",
                            "--device", "cuda", "--memory-format", "both", *FAST])
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["environment"]["device"] == "cuda"
    for m in _measured(data):
        assert m["median_ms"] > 0
        assert ("exceeds" in (m["flag"] or "")) == (m["roofline_fraction"] > 1.05)


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_cuda_half_precision(dtype: str) -> None:
    r = runner.invoke(app, ["compare", "--in", "64", "--hw", "28", "--measure", "--json",
                            "--device", "cuda", "--dtype", dtype, *FAST])
    assert r.exit_code == 0, r.stderr


def test_sequential_ab_adds_rounds_until_settled_or_the_cap() -> None:
    from dsconv_cli.torch_backend.timing import AB_STEP, ab_time

    x = torch.randn(64)
    seen: list[int] = []

    def enough(a: list[float], b: list[float]) -> bool:
        assert len(a) == len(b)
        seen.append(len(a))
        return len(a) >= 20

    kw: dict[str, Any] = {"min_time": 0.01, "rounds": 10, "warmup": 1, "threads": 1}
    a, b = ab_time(x.sum, x.mean, torch.device("cpu"), until=enough, time_cap=60, **kw)
    assert seen == [10, 10 + AB_STEP, 10 + 2 * AB_STEP] and a.runs == b.runs == 20
    seen.clear()  # the cap is reached at once: no round added
    a, _ = ab_time(x.sum, x.mean, torch.device("cpu"), until=enough, time_cap=0, **kw)
    assert seen == [] and a.runs == 10
    a, _ = ab_time(x.sum, x.mean, torch.device("cpu"), **kw)  # not sequential
    assert a.runs == 10
