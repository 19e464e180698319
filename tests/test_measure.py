"""Timing and roofline: structure and sanity on CPU (not speed); CUDA where present."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from dsconv_cli.cli import app
from dsconv_cli.results import BlockStats
from dsconv_cli.services import compare as compare_service
from dsconv_cli.torch_backend.timing import (
    Calibration,
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


def test_calibration_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSCONV_CACHE_DIR", str(tmp_path))
    cpu = torch.device("cpu")
    a = load_calibration(cpu, "fp32", 1)
    assert a.peak_gflops > 0 and all(c > 0 and r > 0 for _, c, r in a.bandwidth)
    data = json.loads((tmp_path / "calibration.json").read_text())
    assert a.key in data and "threads 1" in a.key and "fp32" in a.key
    b = load_calibration(cpu, "fp32", 1)
    assert b == a  # from the cache, not re-measured
    # a damaged, foreign or implausible cache is recalibrated with one warning, and the
    # fresh figures are written back
    implausible = {a.key: {"peak_gflops": a.peak_gflops,
                           "bandwidth": [[s, 0.07, 0.07] for s, _, _ in a.bandwidth]}}
    for bad in ("{broken", "[1, 2]", json.dumps({a.key: []}), json.dumps(implausible)):
        (tmp_path / "calibration.json").write_text(bad)
        warned: list[str] = []
        c = load_calibration(cpu, "fp32", 1, on_warn=warned.append)
        assert "recalibrating" in warned[0], (bad, warned)  # said once, first
        assert c.implausible() is None and min(max(cp, r) for _, cp, r in c.bandwidth) > 0.5
        stored = json.loads((tmp_path / "calibration.json").read_text())[a.key]
        assert stored["peak_gflops"] == c.peak_gflops


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
