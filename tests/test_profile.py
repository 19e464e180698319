"""`dsconv profile`: shipped configs, broken configs, budgets, baselines, reports."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from dsconv_cli.cli import app
from dsconv_cli.config import json_schema, load_config
from dsconv_cli.errors import ConfigError
from dsconv_cli.gate import compare_baseline

from .utils import validate_report

runner = CliRunner()
ROOT = Path(__file__).parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def build_conversion_model(folder: Path) -> None:
    """The model configs/model-conversion.yaml names, built from its own arch file."""
    sys.path.insert(0, str(folder / "models"))
    try:
        import tiny_resnet

        torch.manual_seed(0)
        torch.save(tiny_resnet.build(classes=10).state_dict(), folder / "model.pt")
    finally:
        sys.path.pop(0)


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    folder = tmp_path / "configs"
    shutil.copytree(ROOT / "configs", folder)
    build_conversion_model(folder)
    return folder


def profile(*args: Any) -> Any:
    return runner.invoke(app, ["profile", *map(str, args)])


@pytest.mark.parametrize("name", [p.name for p in CONFIGS])
def test_every_shipped_config_loads_and_dry_runs(configs: Path, name: str) -> None:
    r = profile(configs / name, "--dry-run", "--json", "--trust-code")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    validate_report(data)
    assert data["cases"] and all(c["verdict"] == "planned" for c in data["cases"])


def test_shipped_configs_cover_the_issue() -> None:
    names = {p.stem for p in CONFIGS}
    assert {"smoke", "mobilenet-blocks", "model-conversion", "sweep"} <= names


def test_dry_run_never_imports_torch(configs: Path) -> None:
    code = ("import sys; from typer.testing import CliRunner; from dsconv_cli.cli import app;"
            f"r = CliRunner().invoke(app, ['profile', {str(configs / 'model-conversion.yaml')!r},"
            "'--dry-run', '--trust-code']);"
            "print(r.exit_code, any(m.startswith('torch') for m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert p.stdout.split()[-2:] == ["0", "False"], p.stderr


def test_smoke_config_really_runs(configs: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    rj, rm = tmp_path / "out.json", tmp_path / "out.md"
    r = profile(configs / "smoke.yaml", "--report", rj, "--report", rm, "--save-baseline",
                tmp_path / "base.json")
    # structure, not speed: only a timing budget may fail on a loaded machine
    data = json.loads(rj.read_text())
    validate_report(data)
    failures = [f for c in data["cases"] for f in c.get("failures", [])]
    assert all(f.startswith("max_latency_ms") for f in failures), failures
    assert r.exit_code == (1 if failures else 0), r.stdout + r.stderr
    assert data["summary"]["cases"] == 3 and data["summary"]["failed"] == len(
        {c["name"] for c in data["cases"] if c.get("failures")})
    seed = data["cases"][0]
    assert seed["measured"]["median_ms"] > 0 and seed["speedup"]["measured"] > 0
    assert seed["budget"]["max_params"] == {"limit": 70000, "value": 67840, "ok": True}
    assert "max_latency_ms" in seed["budget"]  # the default applies
    assert "| seed-block |" in rm.read_text() and "| seed-block |" in summary.read_text()
    # a baseline 1000x faster than this machine is a regression; 1000x slower, "faster" (no
    # block of a loaded machine is 1000x off its median: the two samples never overlap)
    base = json.loads((tmp_path / "base.json").read_text())
    for scale, expected in ((1 / 1000, "regression"), (1000, "faster")):
        status = expected
        for c in base["cases"]:
            for k in ("median_ms", "q1_ms", "q3_ms"):
                c["measured"][k] *= scale
            c["measured"]["samples_ms"] = [x * scale for x in c["measured"]["samples_ms"]]
        (tmp_path / f"base{scale}.json").write_text(json.dumps(base))
        r = profile(configs / "smoke.yaml", "--baseline", tmp_path / f"base{scale}.json",
                    "--json", "--only", "seed*")
        (case,) = json.loads(r.stdout)["cases"]
        # a run whose IQR is over half its median (numpy's quartiles) is too noisy to call:
        # marginal, never a regression (a loaded machine's run can be that noisy)
        noisy = any(_iqr_share(m["samples_ms"]) > 0.5 for m in (case["measured"], next(
            c["measured"] for c in base["cases"] if c["name"] == case["name"])))
        status = "marginal" if noisy else status
        assert case["baseline"]["status"] == status, case["baseline"]
        assert case["baseline"]["test"] == "mann-whitney" and case["baseline"]["p_value"] < 0.01
        failures = case.get("failures") or []
        assert r.exit_code == (1 if failures else 0), failures
        assert any(f.startswith("regression") for f in failures) == (status == "regression")
        base = json.loads((tmp_path / "base.json").read_text())


def _iqr_share(samples: list[float]) -> float:
    import numpy as np

    q1, med, q3 = np.percentile(samples, [25, 50, 75])
    return float((q3 - q1) / med)


def test_model_conversion_config_runs(configs: Path) -> None:
    r = profile(configs / "model-conversion.yaml", "--json", "--trust-code")
    assert r.exit_code == 0, r.stderr
    (case,) = json.loads(r.stdout)["cases"]
    assert case["conversion"]["converted"] == 7  # all 3x3 convs but the 3-channel stem
    assert case["original"]["params"] > case["analytic"]["params"]
    assert case["speedup"]["theoretical"] > 1


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_budget_failure_exit_1_but_every_case_reports(tmp_path: Path) -> None:
    cfg = _write(tmp_path, """
timing: {min_time: 0.01, warmup: 1}
cases:
  - name: too-big
    layer: {in: 64, hw: 8}
    budget: {max_params: 10}
  - name: fine
    layer: {in: 64, hw: 8}
    budget: {max_params: 100000}
""")
    r = profile(cfg, "--json")
    assert r.exit_code == 1
    cases = json.loads(r.stdout)["cases"]
    assert [c["verdict"] for c in cases] == ["fail", "pass"]
    assert "too-big" in r.stderr


def test_defaults_apply_only_where_the_metric_exists(tmp_path: Path) -> None:
    cfg = _write(tmp_path, """
defaults: {budget: {min_speedup: 1.5, max_params: 5000000}}
cases:
  - name: net
    preset: {name: mobilenet_v1, resolution: 64}
  - name: block
    layer: {in: 32, hw: 8}
    budget: {max_params: 2000}
""")
    r = profile(cfg, "--dry-run", "--json")
    assert r.exit_code == 0, r.stderr
    net, block = json.loads(r.stdout)["cases"]
    assert set(net["budget"]) == {"max_params"} and net["budget_pending"] == []
    assert block["budget"]["max_params"]["limit"] == 2000  # the case wins, per key
    assert block["budget_pending"] == ["min_speedup"]


def _baseline(case: str, median: float, iqr: float, env: dict[str, Any]) -> dict[str, Any]:
    m = {"median_ms": median, "iqr_ms": iqr, "q1_ms": median - iqr / 2,
         "q3_ms": median + iqr / 2, "min_ms": median - iqr, "max_ms": median + iqr, "runs": 5,
         "calls": 50, "memory_format": "nchw", "gflops": 1.0, "gbps": 1.0, "bound_ms": 1e-5,
         "bound": "memory", "roofline_fraction": 0.1, "flag": None}
    # a report as profile writes it: read back, it is checked against report.schema.json
    return {"schema_version": 1, "tool": {"name": "dsconv", "version": "0"},
            "environment": env, "cases": [{"name": case, "source": {}, "analytic": {},
                                           "budget": {}, "verdict": "pass", "measured": m}]}


def test_baseline_regression_and_env(tmp_path: Path) -> None:
    cfg = _write(tmp_path, "timing: {min_time: 0.02}\ncases:\n  - name: b\n"
                           "    layer: {in: 128, hw: 28}\n")
    r = profile(cfg, "--json")
    env = json.loads(r.stdout)["environment"]
    base = tmp_path / "base.json"
    base.write_text(json.dumps(_baseline("b", 1e-4, 1e-6, env)))  # impossibly fast
    for median, iqr, status, code in ((1e-4, 1e-6, "regression", 1),  # impossibly fast
                                      (1e4, 1.0, "faster", 0)):  # impossibly slow
        base.write_text(json.dumps(_baseline("b", median, iqr, env)))
        r = profile(cfg, "--baseline", base, "--json")
        (case,) = json.loads(r.stdout)["cases"]
        # a run this noisy (a loaded machine) is too noisy to call: marginal, exit 0
        noisy = _iqr_share(case["measured"]["samples_ms"]) > 0.5
        assert case["baseline"]["status"] == ("marginal" if noisy else status), case["baseline"]
        assert r.exit_code == (0 if noisy else code)
    other = {**env, "threads": 99}
    base.write_text(json.dumps(_baseline("b", 1e4, 1.0, other)))
    r = profile(cfg, "--baseline", base)
    assert r.exit_code == 0 and "different environment" in r.stderr
    r = profile(cfg, "--baseline", base, "--strict-env")
    assert r.exit_code == 2 and "threads" in r.stderr


def test_compare_baseline_rules() -> None:
    def m(med: float, q1: float, q3: float) -> dict[str, float]:
        return {"median_ms": med, "q1_ms": q1, "q3_ms": q3}

    assert compare_baseline(m(1.3, 1.25, 1.35), m(1.0, 0.95, 1.05), 0.1)["status"] == "regression"
    assert compare_baseline(m(1.3, 1.0, 1.6), m(1.0, 0.9, 1.1), 0.1)["status"] == "within noise"
    assert compare_baseline(m(1.05, 1.0, 1.1), m(1.0, 0.9, 1.1), 0.1)["status"] == "ok"
    assert compare_baseline(m(1.0, 1.0, 1.0), None, 0.1)["status"] == "new"


def test_a_baseline_regression_must_be_significant() -> None:
    """Beyond the threshold but not significant is "within noise", never a regression."""
    from scipy.stats import mannwhitneyu

    def m(samples: list[float]) -> dict[str, Any]:
        return {"median_ms": sorted(samples)[2], "q1_ms": min(samples),
                "q3_ms": max(samples), "samples_ms": samples}

    old = [1.00, 1.02, 0.98, 1.05, 0.96]
    overlapping = [1.6, 0.97, 1.9, 1.45, 1.7]  # +60% in the median, one block overlaps
    separated = [1.6, 1.55, 1.9, 1.45, 1.7]
    assert mannwhitneyu(overlapping, old).pvalue >= 0.01 > mannwhitneyu(separated, old).pvalue
    noisy = compare_baseline(m(overlapping), m(old), 0.3)
    assert noisy["change"] > 0.3 and noisy["status"] == "within noise", noisy
    assert compare_baseline(m(separated), m(old), 0.3)["status"] == "regression"


def test_strict_env_fails_before_any_calibration(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from dsconv_cli.torch_backend import timing

    def never(*a: Any, **k: Any) -> Any:
        raise AssertionError("calibrated before checking the environment")

    monkeypatch.setenv("DSCONV_CACHE_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(timing, "_calibrate_once", never)
    cfg = _write(tmp_path, "cases:\n  - name: b\n    layer: {in: 8, hw: 8}\n")
    base = tmp_path / "base.json"
    base.write_text(json.dumps(_baseline("b", 1.0, 0.1, {"device": "tpu"})))
    r = profile(cfg, "--baseline", base, "--strict-env")
    assert r.exit_code == 2 and "different environment" in r.stderr, r.output


@pytest.mark.parametrize("vs,flag", [
    ("{path: m.pt, trust_pickle: true}", "vs.trust_pickle"),
    ("{path: sd.pt, arch: 'tests.models:small_resnet'}", "vs.arch"),
])
def test_vs_trust_comes_from_the_command_line(tmp_path: Path, vs: str, flag: str) -> None:
    from .models import small_resnet

    torch.save(small_resnet(), tmp_path / "m.pt")
    torch.save(small_resnet().state_dict(), tmp_path / "sd.pt")
    cfg = _write(tmp_path, "cases:\n  - name: a\n    model: {path: sd.pt, arch: resnet18, "
                           f"input_shape: [1, 3, 32, 32], vs: {vs}}}\n")
    r = profile(cfg, "--dry-run")
    assert r.exit_code == 2 and flag in r.stderr, r.output
    assert "cases[0].model.vs" in r.stderr


def test_alias_cap_refuses_one_alias_too_many(tmp_path: Path) -> None:
    """1,001 aliases of one scalar: a tiny expansion, refused by the alias cap (1,000)
    alone, in well under a second."""
    import time

    cfg = _write(tmp_path, "x: &a 1\nys: [" + ", ".join(["*a"] * 1001) + "]\ncases: []\n")
    t0 = time.perf_counter()
    r = profile(cfg, "--dry-run")
    assert r.exit_code == 2 and "more than 1000 aliases" in r.stderr, r.output
    assert time.perf_counter() - t0 < 5
    cfg.write_text(cfg.read_text().replace("*a] * 1001", "*a] * 1000"))


def test_only_and_plot(configs: Path, tmp_path: Path) -> None:
    png = tmp_path / "speedup.png"
    r = profile(configs / "smoke.yaml", "--only", "seed*", "--only", "eca", "--plot", png,
                "--json")
    assert r.exit_code == 0, r.stderr
    assert [c["name"] for c in json.loads(r.stdout)["cases"]] == ["seed-block", "eca"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = profile(configs / "smoke.yaml", "--only", "nothing*")
    assert r.exit_code == 2 and "matches no case" in r.stderr


def test_plot_without_matplotlib_exit_2(configs: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: None if n == "matplotlib" else real(n, *a))
    r = profile(configs / "smoke.yaml", "--plot", tmp_path / "x.png")
    assert r.exit_code == 2 and "dsconv[plot]" in r.stderr


def test_shipped_json_schema_is_current() -> None:
    shipped = json.loads((ROOT / "dsconv_cli" / "profile.schema.json").read_text())
    assert shipped == json_schema()
    r = runner.invoke(app, ["profile", "--schema"])
    assert r.exit_code == 0 and json.loads(r.stdout) == shipped


GOOD_CASE = "cases:\n  - name: a\n    layer: {in: 8, hw: 8}\n"
BROKEN: list[tuple[str, str, str, int | None]] = [
    # (id, yaml, expected path in the message, line)
    ("malformed", "cases: [{name: a, layer: {in: 8, hw: 8}", "", 1),
    ("not-a-mapping", "- a\n- b\n", "", 1),
    ("empty-file", "", "", 1),
    ("python-tag", "x: !!python/object/apply:os.system ['touch PWNED']\n" + GOOD_CASE, "", 1),
    ("unknown-top-key", "devise: cpu\n" + GOOD_CASE, "devise", 1),
    ("unknown-layer-key", "cases:\n  - name: a\n    layer: {in: 8, hw: 8, strid: 2}\n",
     "cases[0].layer.strid", 3),
    ("unknown-budget-key", GOOD_CASE + "    budget: {max_latncy_ms: 1}\n",
     "cases[0].budget.max_latncy_ms", 4),
    ("bool-not-int", "cases:\n  - name: a\n    layer: {in: true, hw: 8}\n",
     "cases[0].layer.in", 3),
    ("string-not-int", "threads: two\n" + GOOD_CASE, "threads", 1),
    ("float-not-int", "batch: 1.5\n" + GOOD_CASE, "batch", 1),
    ("empty-cases", "cases: []\n", "cases", 1),
    ("no-cases", "device: cpu\n", "cases", None),
    ("duplicate-names", GOOD_CASE + "  - name: a\n    layer: {in: 8, hw: 8}\n",
     "cases[1].name", 4),
    ("two-sources", "cases:\n  - name: a\n    layer: {in: 8, hw: 8}\n"
     "    preset: {name: mobilenet_v2}\n", "cases[0]", 2),
    ("no-source", "cases:\n  - name: a\n", "cases[0]", 2),
    ("missing-model", "cases:\n  - name: a\n    model: {path: nope.pt, input_shape: [1,3,8,8]}\n",
     "cases[0].model.path", 3),
    ("negative-hw-in-list", "cases:\n  - name: a\n    layer: {in: 8, hw: [8, -1]}\n",
     "cases[0].layer.hw[1]", 3),
    ("zero-threads", "threads: 0\n" + GOOD_CASE, "threads", 1),
    ("bad-device", "device: tpu\n" + GOOD_CASE, "device", 1),
    ("bad-kind", "cases:\n  - name: a\n    layer: {kind: conv3d, in: 8, hw: 8}\n",
     "cases[0].layer.kind", 3),
    ("bad-kernel-text", "cases:\n  - name: a\n    layer: {in: 8, hw: 8, kernel: 3xx}\n",
     "cases[0].layer.kernel", 3),
    ("groups-not-dividing", "cases:\n  - name: a\n    layer: {in: 8, out: 12, hw: 8, "
     "groups: 5}\n", "cases[0].layer.groups", 3),
    ("output-too-small", "cases:\n  - name: a\n    layer: {in: 8, hw: 2, kernel: 5, "
     "padding: 0}\n", "cases[0].layer.hw", 3),
    ("same-with-stride", "cases:\n  - name: a\n    layer: {in: 8, hw: 8, padding: same, "
     "stride: 2}\n", "cases[0].layer.padding", 3),
    ("unknown-preset", "cases:\n  - name: a\n    preset: {name: resnet50}\n",
     "cases[0].preset.name", 3),
    ("preset-low-resolution", "cases:\n  - name: a\n    preset: {name: mobilenet_v2, "
     "resolution: 16}\n", "cases[0].preset.resolution", 3),
    ("metric-case-cannot-have", "cases:\n  - name: a\n    preset: {name: mobilenet_v2}\n"
     "    budget: {min_speedup: 2}\n", "cases[0].budget.min_speedup", 4),
    ("negative-budget", GOOD_CASE + "    budget: {max_latency_ms: -1}\n",
     "cases[0].budget.max_latency_ms", 4),
    ("zero-min-time", "timing: {min_time: 0}\n" + GOOD_CASE, "timing.min_time", 1),
    ("version-2", "version: 2\n" + GOOD_CASE, "version", 1),
    ("sweep-over-cap", "max_cases: 3\ncases:\n  - name: a\n    layer: {in: [8, 16], "
     "hw: [8, 16]}\n", "cases[0].layer", 4),
    ("layer-option-for-other-kind", "cases:\n  - name: a\n    layer: {kind: eca, in: 8, "
     "hw: 8, expansion: 6}\n", "cases[0].layer.expansion", 3),
    ("wrong-type-model", "cases:\n  - name: a\n    model: {path: m.pt, input_shape: 224}\n",
     "cases[0].model.input_shape", 3),
]


@pytest.mark.parametrize("text,path,line", [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_config_exit_2_one_line(tmp_path: Path, text: str, path: str,
                                       line: int | None) -> None:
    cfg = _write(tmp_path, text)
    for args in ([], ["--dry-run"]):
        r = profile(cfg, *args)
        assert r.exit_code == 2, r.output
        assert "Traceback" not in r.output and r.stdout == ""
        err = r.stderr.strip()
        assert len(err.splitlines()) == 1
        assert "cfg.yaml" in err
        if path:
            assert f": {path}: " in err
        if line is not None:
            assert f"cfg.yaml:{line}:" in err
    assert not (tmp_path / "PWNED").exists()


def test_config_error_carries_structure(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, "cases:\n  - name: a\n    layer: {in: 8, hw: 8, "
                                     "strid: 2}\n"))
    assert e.value.path == "cases[0].layer.strid" and e.value.line == 3
    assert e.value.hint == "did you mean 'stride'?"


def test_unsafe_model_in_config_exit_2(tmp_path: Path) -> None:
    torch.save(torch.nn.Conv2d(3, 3, 3), tmp_path / "m.pt")  # a pickled module
    cfg = _write(tmp_path, "cases:\n  - name: a\n    model: {path: m.pt, input_shape: "
                           "[1, 3, 8, 8]}\n")
    r = profile(cfg)
    assert r.exit_code == 2 and "trust_pickle" in r.stderr.replace("--trust-pickle",
                                                                     "trust_pickle")
    assert "cases[0].model" in r.stderr


def test_installed_script_profile(configs: Path) -> None:
    env = {**os.environ, "DSCONV_WIDTH": "160", "NO_COLOR": "1"}
    p = subprocess.run([sys.executable, "-m", "dsconv_cli", "profile",
                        str(configs / "sweep.yaml"), "--dry-run", "--format", "markdown"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "ds[in=512,kernel=5,hw=7]" in p.stdout  # field order: stable names


# ------------------------------------------------------------------ verdicts and intervals

def _meas(samples: list[float], flag: str | None = None) -> Any:
    import statistics

    from dsconv_cli.results import Measurement

    q = statistics.quantiles(samples, n=4, method="inclusive")
    return Measurement(median_ms=statistics.median(samples), iqr_ms=q[2] - q[0], q1_ms=q[0],
                       q3_ms=q[2], min_ms=min(samples), max_ms=max(samples), runs=len(samples),
                       calls=len(samples), memory_format="nchw", samples_ms=samples,
                       gflops=1.0, gbps=1.0, bound_ms=0.1, bound="memory",
                       roofline_fraction=0.1, flag=flag)


def _judged(budget: dict[str, float], samples: list[float], **kw: Any) -> Any:
    from types import SimpleNamespace

    from dsconv_cli.results import ProfileCaseResult
    from dsconv_cli.services.profile import _judge

    r = ProfileCaseResult("c", {"kind": "model"}, {"params": 1, "macs": 1}, {}, "pass",
                          measured=_meas(samples), **kw)
    return _judge(SimpleNamespace(budget=budget), r)  # type: ignore[arg-type]


TEN = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9]  # median 1.45, 95% CI [1.1, 1.8]


@pytest.mark.parametrize("limit,verdict", [(2.0, "pass"), (1.5, "marginal"), (1.0, "fail")])
def test_latency_budget_is_judged_on_its_interval(limit: float, verdict: str) -> None:
    r = _judged({"max_latency_ms": limit}, TEN)
    check = r.budget["max_latency_ms"]
    assert check.interval == [1.1, 1.8] and r.verdict == verdict
    assert bool(check.marginal) == (verdict == "marginal") and check.ok == (verdict != "fail")
    assert bool(r.failures) == (verdict == "fail")


def test_slowdown_budget_is_judged_on_the_ab_interval() -> None:
    from dsconv_cli.results import Speedup

    def vs(lo: float, est: float, hi: float) -> dict[str, Any]:
        return {"source": "x", "speedup": Speedup(measured=est, theoretical=None,
                                                  estimate=est, ci95=[lo, hi], p_value=0.001)}

    # speedup of the model over vs in [0.8, 0.95]: slowdown in [5%, 25%] straddles 10%
    r = _judged({"max_slowdown": 0.1}, TEN, vs=vs(0.8, 0.87, 0.95))
    assert r.verdict == "marginal" and r.budget["max_slowdown"].interval == pytest.approx(
        [1 / 0.95 - 1, 0.25], rel=1e-3)
    assert _judged({"max_slowdown": 0.1}, TEN, vs=vs(0.6, 0.65, 0.7)).verdict == "fail"
    assert _judged({"max_slowdown": 0.1}, TEN, vs=vs(0.95, 1.0, 1.05)).verdict == "pass"


def test_profile_flags_implausible_speedups_as_compare_does() -> None:
    """One home: profile's model+convert speedup goes through compare's rule (a 10%
    noise floor: 15% above theory with quiet timings is implausible)."""
    from dsconv_cli.results import Speedup
    from dsconv_cli.services.compare import speedup_flag

    quiet_std, quiet_cand = _meas([10.0] * 5), _meas([1.0] * 5)
    sp = Speedup(measured=10.0, theoretical=8.69)
    assert "implausible" in (speedup_flag(sp, quiet_std, quiet_cand) or "")
    assert speedup_flag(Speedup(measured=9.2, theoretical=8.69), quiet_std, quiet_cand) is None
    r = _judged({}, TEN, speedup=dataclasses.replace(sp, flag=speedup_flag(
        sp, quiet_std, quiet_cand)))
    assert r.flags and r.flags[-1].startswith("speedup: measured 10.00x")


def test_noisy_and_implausible_measurements_are_flagged_and_strict_fails(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from dsconv_cli.results import BlockStats
    from dsconv_cli.services import profile as svc
    from dsconv_cli.torch_backend.timing import Calibration, roofline

    # 0.265 +- 5.622 ms: an IQR far above 20% of the median is noisy
    noisy = roofline(10**7, 10**3, BlockStats(0.265, 5.622, 0.1, 5.7, 0.05, 9.0, 9, 9, "nchw"),
                     Calibration("k", 100.0, ((1 << 30, 10.0, 10.0),)))
    assert noisy.flag and noisy.flag.startswith("noisy")
    quiet = BlockStats(1.0, 0.1, 0.95, 1.05, 0.9, 1.1, 9, 9, "nchw")
    assert roofline(10**7, 10**3, quiet, Calibration("k", 100.0, ((1 << 30, 10.0, 10.0),))
                    ).flag is None  # IQR 10% of the median: not noisy
    flagged = dataclasses.replace(_meas(TEN), flag=noisy.flag)
    monkeypatch.setattr(svc, "_measure_case", lambda *a: svc.ProfileCaseResult(
        "c", {}, {}, {}, "pass", measured=flagged, timed_s=100.0))
    pc = SimpleNamespace(budget={"max_latency_ms": 1.5})
    lax = svc._run_case(pc, None, None, None)  # type: ignore[arg-type]
    assert lax.verdict == "marginal" and lax.flags and "noisy" in lax.flags[0]
    strict = svc._run_case(pc, None, None, None, strict=True)  # type: ignore[arg-type]
    assert strict.verdict == "fail" and len(strict.failures) == 2
    assert all(f.startswith("--strict") for f in strict.failures)


def test_a_straddling_verdict_is_measured_again_longer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from dsconv_cli.options import MeasureOptions
    from dsconv_cli.services import profile as svc

    seen: list[float] = []

    def measure(pc: Any, cfg: Any, session: Any, *a: Any) -> Any:
        seen.append(session.options.min_time)
        samples = TEN if len(seen) == 1 else [1.0 + 0.01 * i for i in range(10)]
        return svc.ProfileCaseResult("c", {}, {}, {}, "pass", measured=_meas(samples),
                                     timed_s=1.0)

    monkeypatch.setattr(svc, "_measure_case", measure)
    session = SimpleNamespace(options=MeasureOptions(min_time=0.2, rounds=10))
    pc = SimpleNamespace(budget={"max_latency_ms": 1.5})
    r = svc._run_case(pc, None, session, None)  # type: ignore[arg-type]
    assert seen == [0.2, pytest.approx(0.6)] and r.verdict == "pass" and r.timed_s == 2.0
    assert session.options.min_time == 0.2  # restored
    # past the case's time cap it is not re-measured: marginal
    monkeypatch.setattr(svc, "_measure_case", lambda *a: svc.ProfileCaseResult(
        "c", {}, {}, {}, "pass", measured=_meas(TEN), timed_s=svc.CASE_TIME_CAP_S))
    assert svc._run_case(pc, None, session, None).verdict == "marginal"  # type: ignore[arg-type]
