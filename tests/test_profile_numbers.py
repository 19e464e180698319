"""What a reviewer reads is the number the gate used (issue 30), on real runs: a speedup
budget judges the interleaved A/B estimate inside its own interval; the table shows that
estimate, its interval and the standard side's time; a model with nothing to convert
says so instead of a speedup; a calibration warning reaches the report and the step
summary. Each run is tiny (one small case, short timing): structure, never speed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from dsconv_cli.cli import app

runner = CliRunner()
FAST = "timing: {min_time: 0.01, warmup: 1}\n"


def run(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def no_eligible_conv() -> nn.Module:
    """Nothing convert can take: a 1x1 conv (already pointwise) and a linear layer."""
    return nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 4))


def test_a_speedup_budget_judges_the_ab_estimate_inside_its_interval(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(FAST + "cases:\n  - name: b\n    layer: {in: 32, hw: 8}\n"
                   "    budget: {min_speedup: 0.001}\n")
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    r = run("profile", cfg, "--json", "--report", tmp_path / "out.md")
    (case,) = json.loads(r.stdout)["cases"]
    b, sp = case["budget"]["min_speedup"], case["speedup"]
    assert b["value"] == sp["estimate"]  # the A/B's, not the ratio of medians
    lo, hi = b["interval"]
    assert lo <= b["value"] <= hi
    assert b["interval"] == pytest.approx(sp["ci95"], rel=1e-3)  # the A/B's interval
    # the table: the estimate and its interval, and the standard side's median
    for text in (summary.read_text(), (tmp_path / "out.md").read_text()):
        row = next(ln for ln in text.splitlines() if ln.startswith("| b "))
        cells = [c.strip() for c in row.strip("|").split("|")]
        header = next(ln for ln in text.splitlines() if ln.startswith("| case"))
        cols = [c.strip() for c in header.strip("|").split("|")]
        got = dict(zip(cols, cells, strict=True))
        shown = float(got["speedup"].rstrip("x").replace(",", ""))
        assert shown == pytest.approx(sp["estimate"], rel=5e-3), (got, sp)
        assert got["95% CI"].startswith("[") and got["std ms"] != "-"
        std = case["standard_measured"]["median_ms"]
        assert float(got["std ms"]) == pytest.approx(std, rel=5e-3)


def test_nothing_to_convert_says_so(tmp_path: Path) -> None:
    """A model with no eligible layer and ``convert: true``: no second timing of the same
    model and no "speedup 1.48x, pass"; a min_speedup budget cannot be met."""
    torch.save(no_eligible_conv().state_dict(), tmp_path / "m.pt")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(FAST + "cases:\n  - name: m\n    model: {path: m.pt, arch: "
                   "'tests.test_profile_numbers:no_eligible_conv', input_shape: [1, 3, 8, 8], "
                   "convert: true}\n    budget: {min_speedup: 1.1}\n")
    r = run("profile", cfg, "--json", "--trust-code")
    assert r.exit_code == 1, r.stderr
    (case,) = json.loads(r.stdout)["cases"]
    assert case["conversion"]["converted"] == 0
    assert "nothing to convert" in case["conversion"]["note"]
    assert "speedup" not in case and "original" not in case
    assert case["verdict"] == "fail" and case["budget"]["min_speedup"]["value"] is None
    r = run("profile", cfg, "--trust-code")
    assert "nothing to convert" in r.stdout


def test_a_calibration_warning_reaches_the_report_and_the_summary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A calibration that stays implausible is not cached and said so: in the JSON
    (``warnings``) and in the step summary, not only on stderr."""
    from dsconv_cli.torch_backend import measure

    real = measure.open_session

    def warned(*a: Any, **k: Any) -> Any:
        k["on_warn"]("calibration still implausible after 3 runs (spread 40%): is the "
                     "machine loaded? Not cached; roofline fractions may be off")
        return real(*a, **k)

    monkeypatch.setattr(measure, "open_session", warned)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(FAST + "cases:\n  - name: b\n    layer: {in: 8, hw: 8}\n")
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    r = run("profile", cfg, "--report", tmp_path / "out.json")
    assert "Not cached" in r.stderr
    (w,) = json.loads((tmp_path / "out.json").read_text())["warnings"]
    assert "still implausible" in w
    assert "Not cached" in summary.read_text()
