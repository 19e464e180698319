"""The CI gate: shards and complete merges, dry-run budgets, figures that are not finite,
reports validated when read back, one source per name, the YAML parsed once, and the
step summary. Everything here runs on ``--dry-run`` or plain data: seconds, no timing."""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from dsconv_cli import __version__
from dsconv_cli.cli import app
from dsconv_cli.gate import (
    BUDGET_METRICS,
    MEASURED_METRICS,
    budget_failures,
    check_budget,
    compare_baseline,
    peak_scale,
)
from dsconv_cli.results import Measurement, ProfileCaseResult
from dsconv_cli.services.gate import Shard, apply_baseline
from dsconv_cli.validate import ANNOTATIONS, KEYWORDS, report_schema, validate

runner = CliRunner()
ROOT = Path(__file__).parents[1]
#: five layer cases, analytic only
SWEEP = "cases:\n  - name: s\n    layer: {in: [8, 16, 24, 32, 40], hw: 8}\n"


def run(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def shards(tmp_path: Path, n: int, text: str = SWEEP) -> list[Path]:
    """The dry-run reports of shards 1..n of one config."""
    cfg = write(tmp_path, text)
    out = []
    for i in range(1, n + 1):
        p = tmp_path / f"s{i}.json"
        r = run("profile", cfg, "--dry-run", "--shard", f"{i}/{n}", "--report", p)
        assert r.exit_code == 0, r.stderr
        out.append(p)
    return out


def edit(p: Path, **changes: Any) -> None:
    d = json.loads(p.read_text())
    d.update(changes)
    p.write_text(json.dumps(d))


def error_lines(r: Any) -> list[str]:
    return [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]


# ------------------------------------------------------------------ 18.1: the gate service

def test_shards_cover_every_case_once() -> None:
    planned = list(range(23))
    for n in (1, 2, 5, 23, 30):
        got = [x for i in range(1, n + 1) for x in Shard(i, n).select(planned)]
        assert sorted(got) == planned
    with pytest.raises(Exception, match="1 <= i <= n"):
        Shard.parse("3/2")


def test_the_command_only_wires_the_gate() -> None:
    """Shard slicing, merging and baseline reading live in services/gate.py."""
    text = (ROOT / "dsconv_cli" / "cli" / "profile.py").read_text()
    for name in ("def _load_baseline", "def _parse_shard", "json.loads", "hashlib",
                 "k % n", "names.count"):
        assert name not in text, name


# ------------------------------------------------------------------ 18.4 / 18.6: config

@pytest.mark.parametrize("text,where", [
    ("runtime: bogus\n" + SWEEP, "runtime"),
    ("runtime: [eager, bogus]\n" + SWEEP, "runtime"),
    ("runtime: []\n" + SWEEP, "runtime"),
    ("cases:\n  - name: m\n    model: {path: m.pt, input_shape: []}\n",
     "cases[0].model.input_shape"),
])
def test_bad_runtime_and_shape_are_config_errors(tmp_path: Path, text: str,
                                                 where: str) -> None:
    r = run("profile", write(tmp_path, text), "--dry-run")
    (line,) = error_lines(r)
    assert r.exit_code == 2 and where in line, r.stderr


def test_runtime_names_have_one_source() -> None:
    from dsconv_cli.config import Config
    from dsconv_cli.names import RUNTIME_NAMES
    from dsconv_cli.torch_backend.runtimes import RUNTIMES

    assert tuple(RUNTIMES) == RUNTIME_NAMES
    schema = Config.model_json_schema()["properties"]["runtime"]
    assert schema["anyOf"][0]["enum"] == list(RUNTIME_NAMES)


def test_budget_metrics_have_one_source() -> None:
    from dsconv_cli.config import Budget
    from dsconv_cli.services import profile as svc
    from dsconv_cli.suite import SOURCE_METRICS

    assert list(Budget.model_fields) == list(BUDGET_METRICS)
    assert set().union(*SOURCE_METRICS.values()) == set(BUDGET_METRICS)
    assert svc.MEASURED_METRICS is MEASURED_METRICS
    assert set(MEASURED_METRICS) == {"max_latency_ms", "min_speedup", "max_slowdown"}


def test_the_yaml_is_parsed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from dsconv_cli.config import load_config

    calls = []
    real = yaml.SafeLoader.__init__

    def counting(self: Any, stream: Any) -> None:
        calls.append(stream)
        real(self, stream)

    monkeypatch.setattr(yaml.SafeLoader, "__init__", counting)
    cfg = load_config(write(tmp_path, "defaults: &d {budget: {max_params: 9}}\n" + SWEEP))
    assert len(calls) == 1 and cfg.cases[0].name == "s"


# ------------------------------------------------------------------ 19.1: complete merges

def test_a_shard_report_says_which_shard_and_how_it_ended(tmp_path: Path) -> None:
    (s1, s2) = shards(tmp_path, 2)
    d = json.loads(s2.read_text())
    assert d["shard"] == {"index": 2, "count": 2} and d["exit_status"] == 0
    r = run("profile", "--merge", s1, s2, "--json")
    assert r.exit_code == 0, r.stderr
    merged = json.loads(r.stdout)
    assert len(merged["cases"]) == 5 and merged["exit_status"] == 0
    assert [s["shard"]["index"] for s in merged["shards"]] == [1, 2]
    jsonschema.validate(merged, report_schema())


def test_a_missing_shard_fails_the_merge(tmp_path: Path) -> None:
    s1, s2, s3 = shards(tmp_path, 3)
    r = run("profile", "--merge", s1, s3, "--json")
    assert r.exit_code == 1
    assert any("shard 2/3 never reported" in ln for ln in error_lines(r)), r.stderr
    assert json.loads(r.stdout)["missing_shards"] == [2]
    r = run("profile", "--merge", s2)  # one shard alone is not the whole run
    assert r.exit_code == 1 and "shard 1/3 never reported" in r.stderr


def test_a_merge_carries_every_shards_failures(tmp_path: Path) -> None:
    s1, s2 = shards(tmp_path, 2)
    edit(s1, runtime_errors={"onnxruntime": "export failed"}, exit_status=1)
    r = run("profile", "--merge", s1, s2, "--json")
    assert r.exit_code == 1
    merged = json.loads(r.stdout)
    assert "export failed" in merged["runtime_errors"]["onnxruntime"]
    assert merged["shards"][0]["runtime_errors"] == {"onnxruntime": "export failed"}
    assert merged["exit_status"] == 1
    assert any("runtime onnxruntime: export failed" in ln for ln in error_lines(r))
    s1, s2 = shards(tmp_path, 2)
    edit(s2, exit_status=143)  # a shard cut short: its cases may all have passed
    r = run("profile", "--merge", s1, s2)
    assert r.exit_code == 1 and "shard 2/2 exited with status 143" in r.stderr


@pytest.mark.parametrize("change,message", [
    ({"tool": {"name": "dsconv", "version": "0.0.1"}}, "dsconv 0.0.1"),
    ({"config_digest": "0123456789abcdef"}, "different configs"),
    ({"shard": {"index": 1, "count": 3}}, "split the cases differently"),
    ({"shard": {"index": 1, "count": 2}}, "more than one report"),
    ({"only": ["s*"]}, "select different cases"),
])
def test_a_merge_of_other_runs_is_refused(tmp_path: Path, change: dict[str, Any],
                                          message: str) -> None:
    s1, s2 = shards(tmp_path, 2)
    edit(s2, **change)
    r = run("profile", "--merge", s1, s2)
    (line,) = error_lines(r)
    assert r.exit_code == 2 and message in line, r.stderr
    assert __version__ != "0.0.1"


def test_merge_with_shard_is_a_usage_error(tmp_path: Path) -> None:
    s1, s2 = shards(tmp_path, 2)
    r = run("profile", "--merge", s1, s2, "--shard", "1/2")
    (line,) = error_lines(r)
    assert r.exit_code == 2 and "--shard" in line


def test_the_readme_workflow_cannot_go_green_on_a_failed_shard() -> None:
    text = (ROOT / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "--merge" in b]
    assert "|| true" not in block and "rc=$?" not in block
    verdict = block[block.index("verdict:"):]
    assert "if: always()" in verdict.split("steps:")[0]  # the merge job always runs
    upload = block[block.index("--shard"):block.index("verdict:")]
    assert "if: always()" in upload  # a failed shard still uploads its report


# ------------------------------------------------------------------ 19.4: dry runs

def test_dry_run_judges_analytic_budgets(tmp_path: Path) -> None:
    cfg = write(tmp_path, "cases:\n  - name: seed\n    layer: {in: 256, hw: 14}\n"
                          "    budget: {max_params: 10000, max_latency_ms: 5}\n")
    r = run("profile", cfg, "--dry-run", "--json")
    assert r.exit_code == 1, r.stderr
    (case,) = json.loads(r.stdout)["cases"]
    assert case["verdict"] == "fail" and case["budget"]["max_params"]["value"] == 67840
    (failure,) = case["failures"]
    assert failure.startswith("max_params: 67") and "10" in failure
    assert case["budget_pending"] == ["max_latency_ms"]  # only a run can judge it
    assert json.loads(r.stdout)["exit_status"] == 1
    ok = write(tmp_path, "cases:\n  - name: seed\n    layer: {in: 256, hw: 14}\n"
                         "    budget: {max_params: 70000, max_macs: 20000000, "
                         "max_memory_mb: 10, max_latency_ms: 5}\n", "ok.yaml")
    r = run("profile", ok, "--dry-run", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["cases"][0]["verdict"] == "planned"
    r = run("profile", ok, "--dry-run")
    assert "need a run" in r.stdout


def test_dry_run_with_plot_is_a_usage_error(tmp_path: Path) -> None:
    r = run("profile", write(tmp_path, SWEEP), "--dry-run", "--plot", tmp_path / "p.png")
    (line,) = error_lines(r)
    assert r.exit_code == 2 and "--plot" in line and "--dry-run" in line


# ------------------------------------------------------------------ 19.5: NaN never passes

@pytest.mark.parametrize("metric,value", [
    ("max_latency_ms", math.nan), ("max_latency_ms", math.inf),
    ("min_speedup", math.nan), ("min_speedup", math.inf), ("max_params", math.nan)])
def test_a_figure_that_is_not_finite_fails_its_budget(metric: str, value: float) -> None:
    key = BUDGET_METRICS[metric].key
    checks = check_budget({metric: 1.0}, {key: value})
    assert not checks[metric].ok
    (line,) = budget_failures(checks)
    assert line.startswith(metric) and "not finite" in line


def _measured(median: float) -> Measurement:
    return Measurement(median_ms=median, iqr_ms=0.01, q1_ms=median - 0.005,
                       q3_ms=median + 0.005, min_ms=median - 0.01, max_ms=median + 0.01,
                       runs=5, calls=50, memory_format="nchw", gflops=1.0, gbps=1.0,
                       bound_ms=0.01, bound="compute", roofline_fraction=0.1, flag=None)


@pytest.mark.parametrize("peak", [math.nan, math.inf, 0.0])
def test_normalize_against_a_peak_that_is_not_finite_fails(peak: float) -> None:
    case = ProfileCaseResult("b", {}, {}, {}, "pass", measured=_measured(1.0))
    base_env = {"device": "cpu", "threads": 2, "calibration": {"peak_gflops": peak}}
    env = {"device": "cpu", "threads": 4, "calibration": {"peak_gflops": 50.0}}
    base = {"environment": base_env, "cases": [{"name": "b", "measured": {
        "median_ms": 1.0, "q1_ms": 0.99, "q3_ms": 1.01}}]}
    (out,) = apply_baseline([case], base, 0.3, env, normalize=True)
    assert out.verdict == "fail" and out.baseline is not None
    assert out.baseline["status"] == "not finite"
    (line,) = out.failures or []
    assert "peak_gflops" in line and "baseline" in line
    scale, problem = peak_scale(base_env, env, "compute")
    assert math.isnan(scale) and problem is not None


def test_a_baseline_figure_that_is_not_finite_is_never_ok() -> None:
    m = {"median_ms": 1.0, "q1_ms": 0.9, "q3_ms": 1.1}
    check = compare_baseline(m, {**m, "median_ms": math.nan}, 0.3)
    assert check["status"] == "not finite" and "median_ms" in check["problem"]
    check = compare_baseline(m, m, 0.3, scale=math.inf)
    assert check["status"] == "not finite" and "scale" in check["problem"]


# ------------------------------------------------------------------ 19.6: reports read back

def test_the_validator_knows_every_keyword_of_the_shipped_schema() -> None:
    seen: set[str] = set()

    def walk(node: Any, in_props: bool = False) -> None:
        if isinstance(node, dict):
            if not in_props:
                seen.update(node)
            for k, v in node.items():
                walk(v, k in ("properties", "$defs"))
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(report_schema())
    assert seen <= KEYWORDS | ANNOTATIONS, seen - KEYWORDS - ANNOTATIONS


def _mutations(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report with one thing broken at a time (and unbroken)."""
    out = [report]
    for path, value in [(("schema_version",), 2), (("tool",), None), (("cases",), {}),
                        (("cases", 0), 7), (("cases", 0, "verdict"), "maybe"),
                        (("cases", 0, "budget"), []), (("cases", 0, "name"), 3),
                        (("shard",), {"index": 0, "count": 2}), (("shard",), "1/2"),
                        (("exit_status",), -1), (("runtime_errors",), {"eager": 1}),
                        (("cases", 0, "analytic", "params"), "many")]:
        r = copy.deepcopy(report)
        target = r
        for p in path[:-1]:
            target = target[p]
        if value is None:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        out.append(r)
    return out


def test_the_validator_agrees_with_jsonschema(tmp_path: Path) -> None:
    (s1,) = shards(tmp_path, 1)
    schema = report_schema()
    for report in _mutations(json.loads(s1.read_text())):
        ours = validate(report, schema)
        theirs = list(jsonschema.Draft202012Validator(schema).iter_errors(report))
        assert bool(ours) == bool(theirs), (report, ours, [e.message for e in theirs])


def test_a_report_read_back_is_checked_against_the_schema(tmp_path: Path) -> None:
    s1, s2 = shards(tmp_path, 2)
    d = json.loads(s2.read_text())
    d["cases"][0]["verdict"] = "maybe"
    d["cases"][1]["budget"] = []
    d["shard"] = "2/2"
    s2.write_text(json.dumps(d))
    r = run("profile", "--merge", s1, s2)
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and all(ln.startswith("Error: --merge ") for ln in lines), r.stderr
    assert len(lines) == 3
    for where in ("cases[0].verdict: ", "cases[1].budget: ", "shard: "):
        assert any(f": {where}" in ln for ln in lines), (where, lines)
    r = run("profile", write(tmp_path, SWEEP), "--dry-run", "--baseline", s2)
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 3


# ------------------------------------------------------------------ 21.3: the step summary

def test_merge_appends_to_the_step_summary(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    s1, s2, s3 = shards(tmp_path, 3)
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    r = run("profile", "--merge", s1, s3)
    assert r.exit_code == 1
    text = summary.read_text()
    assert text.startswith("# earlier step\n") and "s[in=8]" in text and "s[in=24]" in text
    ours = text.split("# earlier step\n", 1)[1]
    assert "shard 2/3 never reported" in ours.split("| s[in=8]")[0]  # above the table


def test_a_config_error_writes_its_line_to_the_step_summary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    r = run("profile", write(tmp_path, "runtime: bogus\n" + SWEEP), "--dry-run")
    (line,) = error_lines(r)
    assert r.exit_code == 2
    assert summary.read_text().strip() == line


def test_an_incomplete_merge_says_so_at_the_top_of_every_report(tmp_path: Path) -> None:
    s1, _, s3 = shards(tmp_path, 3)
    md = tmp_path / "all.md"
    r = run("profile", "--merge", s1, s3, "--report", md)
    assert r.exit_code == 1
    for text in (r.stdout, md.read_text()):
        head = text.strip().splitlines()[:6]
        assert any(ln.lstrip("#* ").startswith("INCOMPLETE") for ln in head), head
        assert any("shard 2/3 never reported" in ln for ln in head), head


def test_no_output_may_be_a_file_the_configs_cases_read(tmp_path: Path) -> None:
    import torch

    from tests.models import small_resnet

    torch.save(small_resnet().state_dict(), tmp_path / "m.pt")
    (tmp_path / "arch.py").write_text("from tests.models import small_resnet as build\n")
    before = {n: (tmp_path / n).read_bytes() for n in ("m.pt", "arch.py")}
    cfg = write(tmp_path, "cases:\n  - name: m\n    model: {path: m.pt, arch: 'arch.py:build',"
                " input_shape: [1, 3, 32, 32]}\n")
    for target, key in (("m.pt", "cases[0].model.path"), ("arch.py", "cases[0].model.arch")):
        r = run("profile", cfg, "--trust-code", "--save-baseline", tmp_path / target)
        assert r.exit_code == 2 and key in r.stderr, r.stderr
    assert before == {n: (tmp_path / n).read_bytes() for n in before}
