"""The merge judges, it does not trust (issue 30): every shard records the cases it was
to run; ``profile --merge`` gives every verdict again from limits and values and refuses
(exit 2, one line naming the file and the field) a report its own figures contradict, dry
runs beside measured ones, or a finished shard without one of its cases; an interrupted
shard makes the merge INCOMPLETE naming what never ran; ``--strict`` means what it means
in a run. Plain data and dry runs only: seconds, no timing."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from dsconv_cli import __version__
from dsconv_cli.cli import app
from dsconv_cli.gate import budget_failures, judge_budget, not_finite
from dsconv_cli.validate import report_schema, validate

runner = CliRunner()
#: five layer cases, analytic only
SWEEP = "cases:\n  - name: s\n    layer: {in: [8, 16, 24, 32, 40], hw: 8}\n"


def run(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def error_lines(r: Any) -> list[str]:
    return [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]


def dry_shards(tmp_path: Path, n: int, text: str = SWEEP, *extra: str) -> list[Path]:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    out = []
    for i in range(1, n + 1):
        p = tmp_path / f"s{i}.json"
        r = run("profile", cfg, "--dry-run", "--shard", f"{i}/{n}", "--report", p, *extra)
        assert r.exit_code in (0, 1), r.stderr
        out.append(p)
    return out


def load(p: Path) -> dict[str, Any]:
    return json.loads(p.read_text())


def save(p: Path, d: dict[str, Any]) -> Path:
    p.write_text(json.dumps(d))
    return p


# ------------------------------------------------------------------ measured reports by hand

def _measurement(median: float, spread: float = 0.02) -> dict[str, Any]:
    samples = [median * (1 + spread * (k - 5) / 5) for k in range(11)]
    return {"median_ms": median, "iqr_ms": median * spread, "q1_ms": median * (1 - spread / 2),
            "q3_ms": median * (1 + spread / 2), "min_ms": min(samples),
            "max_ms": max(samples), "runs": 11, "calls": 110, "memory_format": "nchw",
            "gflops": 1.0, "gbps": 1.0, "bound_ms": 0.001, "bound": "compute",
            "roofline_fraction": 0.1, "flag": None, "samples_ms": samples}


def measured_case(name: str, *, estimate: float = 2.0, ci: tuple[float, float] = (1.9, 2.1),
                  min_speedup: float | None = 1.5, ratio_of_medians: float | None = None,
                  flags: list[str] | None = None) -> dict[str, Any]:
    """A layer case as a measured run writes it, its verdict worked out here by hand:
    params 100 under a limit of 1000; the speedup budget met, missed or straddled by the
    interval ``ci``."""
    budget: dict[str, Any] = {"max_params": {"limit": 1000, "value": 100, "ok": True}}
    verdict = "pass"
    if min_speedup is not None:
        lo, hi = ci
        ok = hi >= min_speedup  # missed only when the whole interval is under the limit
        marginal = lo < min_speedup <= hi
        budget["min_speedup"] = {"limit": min_speedup, "value": estimate, "ok": ok,
                                 "interval": list(ci), **({"marginal": True} if marginal
                                                          else {})}
        verdict = "fail" if not ok else "marginal" if marginal else "pass"
    case = {"name": name, "source": {"kind": "layer"}, "analytic": {"params": 100, "macs": 10},
            "budget": budget, "verdict": verdict, "measured": _measurement(1.0),
            "standard_measured": _measurement(2.0),
            "speedup": {"measured": ratio_of_medians or estimate, "theoretical": 8.69,
                        "estimate": estimate, "ci95": list(ci), "p_value": 0.001,
                        "verdict": "faster", "mde": 0.05, "rounds": 11},
            **({"flags": flags} if flags else {})}
    if verdict == "fail":
        case["failures"] = ["min_speedup: ..."]
    return case


def measured_shards(tmp_path: Path, shards: list[list[dict[str, Any]]],
                    **top: Any) -> list[Path]:
    """Shard reports of one measured run, shard i holding ``shards[i - 1]``."""
    out = []
    for i, cases in enumerate(shards, 1):
        d = {"schema_version": 1, "tool": {"name": "dsconv", "version": __version__},
             "environment": {"device": "cpu", "device_name": "cpu", "torch": "2.13.0",
                             "threads": 2, "dtype": "fp32"},
             "cases": cases, "config": "c.yaml", "config_digest": "0123456789abcdef",
             "shard": {"index": i, "count": len(shards)},
             "expected_cases": [c["name"] for c in cases], "exit_status": 0, **top}
        d["exit_status"] = 1 if any(c["verdict"] in ("fail", "error") for c in cases) else 0
        out.append(save(tmp_path / f"r{i}.json", d))
    return out


def test_the_hand_made_reports_are_reports(tmp_path: Path) -> None:
    """The material of these tests is what profile writes (its schema), and merges."""
    r1, r2 = measured_shards(tmp_path, [[measured_case("a")], [measured_case("b")]])
    for p in (r1, r2):
        jsonschema.validate(load(p), report_schema())
    r = run("profile", "--merge", r1, r2, "--json")
    assert r.exit_code == 0, r.stderr
    assert [c["verdict"] for c in json.loads(r.stdout)["cases"]] == ["pass", "pass"]


# ------------------------------------------------------------------ expected cases

def test_each_shard_records_the_cases_it_was_to_run(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(SWEEP)
    r = run("profile", cfg, "--dry-run", "--json")
    names = [c["name"] for c in json.loads(r.stdout)["cases"]]
    assert len(names) == 5
    s1, s2 = dry_shards(tmp_path, 2)
    # every second case from the first, as --shard documents
    assert load(s1)["expected_cases"] == names[0::2]
    assert load(s2)["expected_cases"] == names[1::2]
    r = run("profile", cfg, "--dry-run", "--json", "--only", "s[[]in=8*")
    assert json.loads(r.stdout)["expected_cases"] == ["s[in=8]"]


def test_a_finished_shard_without_an_expected_case_is_refused(tmp_path: Path) -> None:
    """A case deleted from a report that says its shard finished: two of three cases
    cannot vanish from a merge that says "passed"."""
    s1, s2 = dry_shards(tmp_path, 2)
    d = load(s1)
    gone = d["cases"][1]["name"]
    d["cases"] = d["cases"][:1]
    save(s1, d)
    r = run("profile", "--merge", s1, s2)
    (line,) = error_lines(r)
    assert r.exit_code == 2 and str(s1) in line and "expected_cases" in line
    assert repr(gone) in line
    d["cases"] = []
    save(s1, d)
    r = run("profile", "--merge", s1, s2)
    assert r.exit_code == 2 and len(error_lines(r)) == 1


def test_a_report_without_expected_cases_cannot_be_merged(tmp_path: Path) -> None:
    s1, s2 = dry_shards(tmp_path, 2)
    d = load(s2)
    del d["expected_cases"]
    save(s2, d)
    r = run("profile", "--merge", s1, s2)
    (line,) = error_lines(r)
    assert r.exit_code == 2 and str(s2) in line and "expected_cases" in line


def test_a_case_the_shard_was_not_to_run_is_refused(tmp_path: Path) -> None:
    s1, s2 = dry_shards(tmp_path, 2)
    d = load(s1)
    d["cases"].append({**d["cases"][0], "name": "smuggled"})
    save(s1, d)
    r = run("profile", "--merge", s1, s2)
    (line,) = error_lines(r)
    assert r.exit_code == 2 and "'smuggled'" in line and "expected_cases" in line


@pytest.mark.parametrize("status", [143, 130])
def test_an_interrupted_shard_makes_the_merge_incomplete(tmp_path: Path, status: int) -> None:
    """A SIGTERM'd shard (0 cases, exit 143): INCOMPLETE, naming every case that never
    ran, at the top of the table, the Markdown and the JSON."""
    s1, s2 = dry_shards(tmp_path, 2)
    d = load(s2)
    never = list(d["expected_cases"])
    d.update(cases=[], interrupted=True, exit_status=status)
    save(s2, d)
    md = tmp_path / "all.md"
    r = run("profile", "--merge", s1, s2, "--report", md)
    assert r.exit_code == 1, r.stderr
    for text in (r.stdout, md.read_text()):
        head = "\n".join(text.strip().splitlines()[:4])
        assert "INCOMPLETE" in head, head
        assert all(n in head for n in never), head
    assert any("never ran" in ln and all(n in ln for n in never) for ln in error_lines(r))
    r = run("profile", "--merge", s1, s2, "--json")
    merged = json.loads(r.stdout)
    assert merged["missing_cases"] == never and merged["exit_status"] == 1
    assert len(merged["cases"]) == len(load(s1)["cases"])


def test_an_interrupted_run_records_what_it_was_to_run() -> None:
    """What a SIGTERM'd shard writes: no cases, the ones it was to run, interrupted."""
    from dsconv_cli.errors import interrupt_exit_code
    from dsconv_cli.services.gate import run_report
    from dsconv_cli.services.profile import ProfileRun

    run_ = ProfileRun([], {"device": "cpu"}, interrupted=True)
    meta = {"config_digest": "x", "expected_cases": ["a", "b"]}
    d = run_report(run_, [], meta)
    assert d["interrupted"] is True and d["expected_cases"] == ["a", "b"]
    assert d["cases"] == [] and d["exit_status"] == interrupt_exit_code() != 0


# ------------------------------------------------------------------ stored verdicts re-judged

def _budget_edit(d: dict[str, Any], **fields: Any) -> dict[str, Any]:
    d["cases"][0]["budget"]["max_params"].update(fields)
    return d


def test_a_budget_marked_ok_beyond_its_limit_is_refused(tmp_path: Path) -> None:
    """``{limit: 1, value: 400, ok: true}``: the figures say it failed."""
    r1, r2 = measured_shards(tmp_path, [[measured_case("a")], [measured_case("b")]])
    d = load(r1)
    d["cases"][0]["analytic"]["params"] = 400
    save(r1, _budget_edit(d, limit=1, value=400, ok=True))
    r = run("profile", "--merge", r1, r2)
    (line,) = error_lines(r)
    assert r.exit_code == 2 and str(r1) in line
    assert "cases[0].budget.max_params.ok" in line and "400" in line and "limit 1" in line


@pytest.mark.parametrize("edit,field", [
    (lambda d: _budget_edit(d, ok=False), "budget.max_params.ok"),  # ok false, verdict pass
    (lambda d: _budget_edit(d, value=999), "budget.max_params.value"),  # not its own params
    (lambda d: d["cases"][0].update(verdict="fail"), "verdict"),  # fail with nothing failed
    (lambda d: d["cases"][0].update(verdict="marginal"), "verdict"),
    (lambda d: d["cases"][0]["budget"]["min_speedup"].update(value=400.0),
     "budget.min_speedup.value"),  # not the A/B estimate the interval belongs to
    (lambda d: d["cases"][0]["budget"]["min_speedup"].update(marginal=True),
     "budget.min_speedup.marginal"),
    (lambda d: d["cases"][0]["budget"]["min_speedup"].update(interval=[3.0]),
     "budget.min_speedup.interval"),
    (lambda d: d["cases"][0]["budget"].update(max_bogus={"limit": 1, "value": 1, "ok": True}),
     "budget.max_bogus"),
])
def test_stored_figures_that_contradict_themselves_are_refused(tmp_path: Path, edit: Any,
                                                              field: str) -> None:
    r1, r2 = measured_shards(tmp_path, [[measured_case("a")], [measured_case("b")]])
    d = load(r1)
    edit(d)
    save(r1, d)
    r = run("profile", "--merge", r1, r2)
    (line,) = error_lines(r)
    assert r.exit_code == 2 and str(r1) in line and f"cases[0].{field}" in line, line
    assert "Traceback" not in r.output


def test_a_value_outside_its_own_interval_never_passes(tmp_path: Path) -> None:
    """``min_speedup: 0.1`` with value 0.0048 beside an interval [0.1495, 0.1575]: the
    value is not the one the interval belongs to, so it is not met, and a stored
    ``ok: true`` is refused."""
    check = judge_budget("min_speedup", 0.1, 0.0048, [0.1495, 0.1575])
    assert not check.ok
    (line,) = budget_failures({"min_speedup": check})
    assert "outside" in line and "0.1495" in line
    assert judge_budget("min_speedup", 0.1, 0.153, [0.1495, 0.1575]).ok
    case = measured_case("a", estimate=0.0048, ci=(0.1495, 0.1575), min_speedup=0.1)
    case["budget"]["min_speedup"]["ok"] = True
    r1, r2 = measured_shards(tmp_path, [[case], [measured_case("b")]])
    r = run("profile", "--merge", r1, r2)
    (line,) = error_lines(r)
    assert r.exit_code == 2 and "min_speedup.ok" in line


def test_the_run_judges_the_ab_estimate_not_a_ratio_of_medians(tmp_path: Path) -> None:
    """The seed block read 58.4x (a ratio of medians taken at different times) while its
    interleaved A/B said 0.983x [0.69, 1.55]: the budget judges the A/B estimate."""
    from dsconv_cli.config import load_config
    from dsconv_cli.results import ProfileCaseResult, Speedup
    from dsconv_cli.services.profile import _judge
    from dsconv_cli.suite import plan_cases

    cfg = tmp_path / "c.yaml"
    cfg.write_text("cases:\n  - name: seed\n    layer: {in: 256, hw: 14}\n"
                   "    budget: {min_speedup: 2}\n")
    (pc,) = plan_cases(load_config(cfg), None)
    sp = Speedup(measured=58.4, theoretical=8.69, estimate=0.983, ci95=[0.69, 1.55],
                 p_value=0.99, verdict="no difference detected", mde=0.4, rounds=10)
    r = _judge(pc, ProfileCaseResult("seed", {}, {"params": 67840}, {}, "pass", speedup=sp))
    b = r.budget["min_speedup"]
    assert b.value == 0.983 and b.interval is not None and not b.ok
    assert b.interval[0] <= b.value <= b.interval[1]
    assert r.verdict == "fail"


def test_a_failed_case_names_its_budget_value_and_limit(tmp_path: Path) -> None:
    cfg = ("cases:\n  - name: seed\n    layer: {in: 256, hw: 14}\n"
           "    budget: {max_params: 10000}\n  - name: b\n    layer: {in: 8, hw: 8}\n")
    s1, s2 = dry_shards(tmp_path, 2, cfg)
    d = load(s1)
    d["cases"][0].pop("failures", None)  # what the merge says comes from the figures
    save(s1, d)
    r = run("profile", "--merge", s1, s2)
    assert r.exit_code == 1
    (line,) = [ln for ln in error_lines(r) if "case seed" in ln]
    # the seed block's DS form: 256*9 + 256*256 = 67,840 params (DESIGN.md)
    assert "max_params" in line and "67,840" in line and "10,000" in line, line


# ------------------------------------------------------------------ dry and real runs

def test_a_dry_shard_beside_a_real_one_is_refused(tmp_path: Path) -> None:
    (s1, _) = dry_shards(tmp_path, 2, "cases:\n  - name: a\n    layer: {in: 8, hw: 8}\n"
                                      "  - name: b\n    layer: {in: 16, hw: 8}\n")
    _, r2 = measured_shards(tmp_path, [[measured_case("a")], [measured_case("b")]])
    d = load(r2)
    d["config_digest"] = load(s1)["config_digest"]
    save(r2, d)
    r = run("profile", "--merge", s1, r2)
    (line,) = error_lines(r)
    assert r.exit_code == 2 and "dry run" in line and str(s1) in line and str(r2) in line


def test_a_real_report_edited_to_dry_run_is_refused(tmp_path: Path) -> None:
    r1, r2 = measured_shards(tmp_path, [[measured_case("a")], [measured_case("b")]],
                             dry_run=True)
    r = run("profile", "--merge", r1, r2)
    (line,) = error_lines(r)
    assert r.exit_code == 2 and "dry_run" in line and "cases[0].measured" in line


def test_a_planned_verdict_in_a_real_shard_is_refused(tmp_path: Path) -> None:
    case = measured_case("a")
    case["verdict"] = "planned"
    r1, r2 = measured_shards(tmp_path, [[case], [measured_case("b")]])
    r = run("profile", "--merge", r1, r2)
    (line,) = error_lines(r)
    assert r.exit_code == 2 and "cases[0].verdict" in line and "'planned'" in line


# ------------------------------------------------------------------ --strict in a merge

def test_strict_means_the_same_in_a_merge_as_in_a_run(tmp_path: Path) -> None:
    marginal = measured_case("a", ci=(1.4, 1.6), estimate=1.5, min_speedup=1.45)
    noisy = measured_case("b", flags=["measured: noisy: IQR 0.5 ms (50% of the median)"])
    r1, r2 = measured_shards(tmp_path, [[marginal], [noisy]])
    r = run("profile", "--merge", r1, r2, "--json")
    assert r.exit_code == 0, r.stderr
    assert [c["verdict"] for c in json.loads(r.stdout)["cases"]] == ["marginal", "pass"]
    r = run("profile", "--merge", r1, r2, "--strict", "--json")
    assert r.exit_code == 1
    assert [c["verdict"] for c in json.loads(r.stdout)["cases"]] == ["fail", "fail"]
    lines = error_lines(r)
    assert any("case a" in ln and "--strict" in ln and "min_speedup" in ln for ln in lines)
    assert any("case b" in ln and "--strict" in ln and "noisy" in ln for ln in lines)


def test_a_shard_run_with_strict_is_judged_with_strict(tmp_path: Path) -> None:
    """A shard's own --strict failures are what its figures say under --strict: merged
    without --strict, they stand (and are not refused as contradictions)."""
    marginal = measured_case("a", ci=(1.4, 1.6), estimate=1.5, min_speedup=1.45)
    marginal["verdict"] = "fail"
    r1, r2 = measured_shards(tmp_path, [[marginal], [measured_case("b")]], strict=True)
    r = run("profile", "--merge", r1, r2, "--json")
    assert r.exit_code == 1, r.stderr
    assert json.loads(r.stdout)["cases"][0]["verdict"] == "fail"
    d = load(r1)
    del d["strict"]  # the same figures without --strict: a marginal case, not a failure
    save(r1, d)
    r = run("profile", "--merge", r1, r2)
    assert r.exit_code == 2 and "verdict" in error_lines(r)[0]


# ------------------------------------------------------------------ what a reviewer reads

def test_the_table_and_summary_show_the_ab_estimate(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Never the ratio of medians (58.4x) beside a budget judged on the A/B; the interval
    and the standard side's time are there."""
    case = measured_case("seed", estimate=0.983, ci=(0.69, 1.55), min_speedup=None,
                         ratio_of_medians=58.4)
    r1, r2 = measured_shards(tmp_path, [[case], [measured_case("b")]])
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    r = run("profile", "--merge", r1, r2, "--wide")
    assert r.exit_code == 0, r.stderr
    for text in (r.stdout, summary.read_text()):
        row = next(ln for ln in text.splitlines() if "seed" in ln)
        assert "58.4" not in row and "0.983x" in row and "[0.690, 1.55]" in row, row
        assert "2.00" in row  # the standard side's median, 2 ms
        assert "std ms" in text


def test_noisy_and_calibration_warnings_reach_the_summary_and_reports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    noisy = measured_case("a", flags=["measured: noisy: IQR 0.5 ms (50% of the median)"])
    warning = ("calibration still implausible after 3 runs (spread 40%): is the machine "
               "loaded? Not cached; roofline fractions may be off")
    r1, r2 = measured_shards(tmp_path, [[noisy], [measured_case("b")]], warnings=[warning])
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    md = tmp_path / "all.md"
    r = run("profile", "--merge", r1, r2, "--report", md, "--json")
    assert r.exit_code == 0, r.stderr
    merged = json.loads(r.stdout)
    assert any("still implausible" in w and "shard 1/2" in w for w in merged["warnings"])
    assert merged["cases"][0]["flags"] == noisy["flags"]
    for text in (summary.read_text(), md.read_text()):
        assert "noisy: IQR 0.5 ms" in text and "Not cached" in text, text


def test_a_run_report_carries_its_warnings() -> None:
    from dsconv_cli.services.gate import run_report
    from dsconv_cli.services.profile import ProfileRun

    d = run_report(ProfileRun([], {"device": "cpu"}, warnings=["calibration ... Not cached"]),
                   [], {"expected_cases": []})
    assert d["warnings"] == ["calibration ... Not cached"]
    jsonschema.validate(d, report_schema())


# ------------------------------------------------------------------ the validator

def test_index_written_as_a_float_is_an_integer_as_json_schema_says(tmp_path: Path) -> None:
    """``"shard": {"index": 1.0, "count": 2.0}``: JSON Schema's integer includes 1.0
    (jsonschema agrees); the merge reads it as shard 1 of 2, never a TypeError."""
    s1, s2 = dry_shards(tmp_path, 2)
    d = load(s1)
    d["shard"] = {"index": 1.0, "count": 2.0}
    save(s1, d)
    assert jsonschema.Draft202012Validator(report_schema()).is_valid(d)
    assert validate(d, report_schema()) == []
    r = run("profile", "--merge", s1, s2, "--json")
    assert r.exit_code == 0 and "internal error" not in r.output, r.output
    assert [s["shard"] for s in json.loads(r.stdout)["shards"]] == [
        {"index": 1, "count": 2}, {"index": 2, "count": 2}]
    d["shard"] = {"index": 1.5, "count": 2}
    save(s1, d)
    r = run("profile", "--merge", s1, s2)
    assert r.exit_code == 2 and "shard.index" in error_lines(r)[0]


@pytest.mark.parametrize("path,value", [(("schema_version",), True),
                                        (("shard", "index"), True),
                                        (("exit_status",), False),
                                        (("cases", 0, "budget", "max_params", "limit"), True)])
def test_booleans_are_not_numbers(tmp_path: Path, path: tuple[Any, ...], value: Any) -> None:
    """Python's ``True == 1``; JSON Schema's ``const 1`` and ``integer`` reject true."""
    cfg = "cases:\n  - name: a\n    layer: {in: 8, hw: 8}\n    budget: {max_params: 9999}\n"
    (s1,) = dry_shards(tmp_path, 1, cfg)
    d = load(s1)
    target = d
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value
    save(s1, d)
    ours = validate(d, report_schema())
    theirs = list(jsonschema.Draft202012Validator(report_schema()).iter_errors(d))
    assert bool(theirs)
    if path != ("schema_version",):  # checked before the schema, with its own line
        assert bool(ours)
    r = run("profile", "--merge", s1)
    (line,) = error_lines(r)
    assert r.exit_code == 2 and str(s1) in line and path[-1] in line, line


def test_plan_version_true_is_not_1() -> None:
    from dsconv_cli.plan import PLAN_VERSION, validate_plan

    assert PLAN_VERSION == 1
    with pytest.raises(ValueError, match="plan_version True"):
        validate_plan({"plan_version": True, "layers": []})
    assert validate_plan({"plan_version": 1, "layers": []}) == []


def test_a_lone_surrogate_in_a_name_is_refused_cleanly(tmp_path: Path) -> None:
    """JSON can write ``"\\ud800"``; no terminal or file can print it. jsonschema calls it
    a string (so does validate); reading a report back refuses it, one line, naming it."""
    (s1,) = dry_shards(tmp_path, 1, "cases:\n  - name: a\n    layer: {in: 8, hw: 8}\n")
    text = s1.read_text().replace('"name": "a"', '"name": "a\\ud800"')
    text = text.replace('"expected_cases": ["a"]', '"expected_cases": ["a\\ud800"]')
    s1.write_text(text)
    d = json.loads(text)
    assert jsonschema.Draft202012Validator(report_schema()).is_valid(d)
    assert validate(d, report_schema()) == []
    for argv in (["profile", "--merge", s1],
                 ["profile", tmp_path / "c.yaml", "--dry-run", "--baseline", s1]):
        r = run(*argv)
        lines = error_lines(r)
        assert r.exit_code == 2 and "internal error" not in r.output, r.output
        assert len(lines) >= 1 and all("Unicode" in ln for ln in lines), lines
        assert any("cases[0].name" in ln for ln in lines), lines
        assert r.stdout == ""  # nothing half-written before the error


# ------------------------------------------------------------------ survivors of the audit

def test_a_missing_last_shard_fails_the_merge(tmp_path: Path) -> None:
    s1, s2, _ = dry_shards(tmp_path, 3)
    r = run("profile", "--merge", s1, s2, "--json")
    assert r.exit_code == 1
    assert json.loads(r.stdout)["missing_shards"] == [3]
    assert any("shard 3/3 never reported" in ln for ln in error_lines(r)), r.stderr


@pytest.mark.parametrize("text", ["0/3", "0/0", "-1/3", "4/3"])
def test_a_shard_outside_1_to_n_is_a_usage_error(tmp_path: Path, text: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(SWEEP)
    r = run("profile", cfg, "--dry-run", "--shard", text)
    (line,) = error_lines(r)
    assert r.exit_code == 2 and "--shard" in line and r.stdout == ""


def test_a_shard_that_exited_1_fails_the_merge(tmp_path: Path) -> None:
    """Its cases all passed and it still exited 1 (something failed outside them)."""
    s1, s2 = dry_shards(tmp_path, 2)
    d = load(s2)
    d["exit_status"] = 1
    save(s2, d)
    r = run("profile", "--merge", s1, s2, "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["exit_status"] == 1
    assert any("shard 2/2 exited with status 1" in ln for ln in error_lines(r)), r.stderr


def test_normalize_scales_the_baseline_the_right_way() -> None:
    """A baseline taken on a machine with twice this one's peak: this machine should take
    twice as long, so the baseline's times are doubled (not halved) before comparing."""
    from dsconv_cli.gate import peak_scale
    from dsconv_cli.results import Measurement, ProfileCaseResult
    from dsconv_cli.services.gate import apply_baseline

    fast = {"device": "cpu", "threads": 8, "calibration": {
        "peak_gflops": 100.0, "bandwidth_gbps": [{"copy": 40.0, "read": 60.0}]}}
    slow = {"device": "cpu", "threads": 2, "calibration": {
        "peak_gflops": 50.0, "bandwidth_gbps": [{"copy": 10.0, "read": 15.0}]}}
    assert peak_scale(fast, slow, "compute") == (2.0, None)
    assert peak_scale(fast, slow, "memory") == (4.0, None)  # 60 / 15: the larger of each
    base_m = _measurement(1.0)
    m = _measurement(2.0)
    case = ProfileCaseResult("a", {}, {}, {}, "pass", measured=Measurement(**{
        **{k: v for k, v in m.items()}}))
    base = {"environment": fast, "cases": [{"name": "a", "measured": base_m}]}
    (out,) = apply_baseline([case], base, 0.3, slow, normalize=True)
    assert out.baseline is not None and out.baseline["scale"] == 2.0
    assert out.baseline["status"] == "ok" and abs(out.baseline["change"]) < 0.01
    (out,) = apply_baseline([case], base, 0.3, slow, normalize=False)
    assert out.baseline is not None and out.baseline["status"] == "regression"


def test_the_baseline_comparison_is_the_u_test() -> None:
    """Samples whose IQR ranges overlap (the old fallback would say "within noise") but
    whose ranks separate them: the U test (p as scipy computes it) calls the regression."""
    from scipy.stats import mannwhitneyu

    from dsconv_cli.gate import compare_baseline

    old = [1.0 + 0.01 * k for k in range(12)]
    new = [1.5 + 0.01 * k for k in range(12)]
    base = {"median_ms": 1.055, "q1_ms": 1.03, "q3_ms": 1.08, "samples_ms": old}
    this = {"median_ms": 1.555, "q1_ms": 1.07, "q3_ms": 1.6, "samples_ms": new}
    check = compare_baseline(this, base, 0.3)
    assert check["test"] == "mann-whitney" and check["status"] == "regression", check
    p = mannwhitneyu(new, old, alternative="two-sided", method="exact").pvalue
    assert math.isclose(check["p_value"], p, rel_tol=1e-3), (check["p_value"], p)
    # beyond the threshold but not significant (the ranks interleave): within noise
    mixed = [1.0, 1.05, 1.08, 1.6, 1.65, 1.7, 1.75, 1.8, 1.85, 1.02, 1.09, 1.9]
    p_mixed = mannwhitneyu(mixed, old, alternative="two-sided").pvalue
    assert p_mixed > 0.01
    check = compare_baseline({**this, "samples_ms": mixed, "median_ms": 1.65}, base, 0.3)
    assert check["change"] > 0.3 and check["status"] == "within noise", check
    # the same medians without samples: the IQR ranges overlap, so it cannot say
    bare = compare_baseline({k: v for k, v in this.items() if k != "samples_ms"},
                            {k: v for k, v in base.items() if k != "samples_ms"}, 0.3)
    assert bare["status"] == "within noise"


def test_a_boolean_is_not_a_finite_number() -> None:
    assert not_finite({"x": True}) is not None and not_finite({"x": False}) is not None
    assert not_finite({"x": 1, "y": 2.5}) is None
    assert not_finite({"x": math.nan}) is not None and not_finite({"x": "1"}) is not None


def test_a_case_in_two_reports_is_refused(tmp_path: Path) -> None:
    """The duplicate-case check, on its own (its speed is benchmarks/merge_scale.py's)."""
    r1, r2 = measured_shards(tmp_path, [[measured_case("a")], [measured_case("b")]])
    d = load(r2)
    d["cases"][0]["name"] = "a"
    d["expected_cases"] = ["a"]
    save(r2, d)
    r = run("profile", "--merge", r1, r2)
    (line,) = error_lines(r)
    assert r.exit_code == 2 and "'a'" in line and "more than one report" in line
    r1, r2 = measured_shards(tmp_path, [[measured_case("a"), measured_case("a")],
                                        [measured_case("b")]])
    d = load(r1)
    d["expected_cases"] = ["a"]  # one case, reported twice
    save(r1, d)
    r = run("profile", "--merge", r1, r2)
    (line,) = error_lines(r)
    assert r.exit_code == 2 and "'a'" in line and "more than one report" in line


# ------------------------------------------------------------------ baselines too noisy to call

def test_a_baseline_too_noisy_to_call_is_marginal_never_a_regression() -> None:
    """The baseline's IQR 128% of its median: +1135% with p < 0.01 is noise, said so."""
    import numpy as np

    from dsconv_cli.gate import compare_baseline
    from dsconv_cli.results import Measurement, ProfileCaseResult
    from dsconv_cli.services.gate import apply_baseline

    old = [0.1, 0.12, 0.15, 0.2, 0.5, 1.0, 1.4, 1.5, 1.6, 1.7, 2.0]
    q1, med, q3 = np.percentile(old, [25, 50, 75])
    share = (q3 - q1) / med
    assert share > 1.0  # over 100% of the median
    base = {"median_ms": float(med), "q1_ms": float(q1), "q3_ms": float(q3), "samples_ms": old}
    m = _measurement(10.0)
    check = compare_baseline(m, base, 0.3)
    assert check["status"] == "marginal" and check["change"] > 0.3 and check["p_value"] < 0.01
    assert f"{100 * share:.0f}%" in check["noise"] and "baseline" in check["noise"]
    case = ProfileCaseResult("a", {}, {}, {}, "pass", measured=Measurement(**m))
    env = {"device": "cpu"}
    (out,) = apply_baseline([case], {"environment": env, "cases": [
        {"name": "a", "measured": base}]}, 0.3, env)
    assert out.verdict == "marginal" and not out.failures
    (out,) = apply_baseline([case], {"environment": env, "cases": [
        {"name": "a", "measured": base}]}, 0.3, env, strict=True)
    assert out.verdict == "fail" and any("--strict" in f for f in out.failures or [])
    quiet = compare_baseline(m, {**base, "samples_ms": [0.8 + 0.01 * k for k in range(11)],
                                 "median_ms": 0.85, "q1_ms": 0.82, "q3_ms": 0.88}, 0.3)
    assert quiet["status"] == "regression" and "noise" not in quiet


def test_the_merged_view_names_a_noisy_baseline(tmp_path: Path) -> None:
    case = measured_case("a")
    case["baseline"] = {"status": "marginal", "change": 11.35, "threshold": 0.3,
                        "p_value": 0.001, "alpha": 0.01, "test": "mann-whitney",
                        "noise": "unreliable: the baseline's IQR is 128% of its median"}
    case["verdict"] = "marginal"
    r1, r2 = measured_shards(tmp_path, [[case], [measured_case("b")]])
    r = run("profile", "--merge", r1, r2, "--format", "markdown")
    assert r.exit_code == 0, r.stderr
    assert "128% of its median" in r.stdout
    d = copy.deepcopy(load(r1))
    d["cases"][0]["baseline"]["status"] = "regression"  # its own noise says otherwise
    d["cases"][0]["verdict"] = "fail"
    save(r1, d)
    r = run("profile", "--merge", r1, r2)
    assert r.exit_code == 2 and "baseline.status" in error_lines(r)[0]
