"""The CI gate around ``profile``: shards, merging their reports, baselines.

A shard runs a deterministic slice of the planned cases and records in its report which
slice it was (``shard: {index, count}``), how it ended (``exit_status``) and what failed
(its cases' verdicts, ``runtime_errors``). :func:`merge_reports` joins the reports of one
config and one dsconv version and fails unless every shard 1..n reported exactly once.
Reports read back (merge inputs, ``--baseline``) are checked against the shipped
``report.schema.json`` first. Stdlib only; nothing here prints.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .. import __version__
from ..errors import InputError, interrupt_exit_code
from ..fmt import listing
from ..gate import (
    BUDGET_METRICS,
    baseline_status,
    case_verdict,
    compare_baseline,
    env_mismatch,
    is_finite_number,
    judge_budget,
    peak_scale,
)
from ..inputs import read_bytes, read_text
from ..results import ProfileCaseResult, envelope, to_json
from ..validate import equal, fmt_path, report_schema, text_problems, validate

__all__ = ["MergeResult", "Shard", "apply_baseline", "baseline_environment_problem",
           "config_digest", "exit_status", "load_report", "merge_reports", "run_meta",
           "run_report", "summarise"]

#: at most this many problems of one report are listed (then "and N more")
MAX_PROBLEMS = 10
BUDGET_METRICS_BY_KEY = {m.key: m for m in BUDGET_METRICS.values()}
T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """The ``index``-th (1-based) of ``count`` deterministic slices of the planned cases."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            i, n = (int(v) for v in text.split("/"))
        except ValueError:
            raise InputError(f"--shard {text!r}: expected i/n, e.g. 2/4") from None
        if not 1 <= i <= n <= 1000:
            raise InputError(f"--shard {text!r}: needs 1 <= i <= n <= 1000")
        return cls(i, n)

    def select(self, planned: Sequence[T]) -> list[T]:
        """Every ``count``-th case from the ``index``-th: the shards of one plan cover each
        case exactly once."""
        return [pc for k, pc in enumerate(planned) if k % self.count == self.index - 1]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def config_digest(path: Path) -> str:
    """What identifies a config across shards: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(read_bytes(path, "CONFIG", "config")).hexdigest()[:16]


def exit_status(cases: Sequence[ProfileCaseResult], runtime_errors: dict[str, str],
                interrupted: bool = False) -> int:
    """The exit code a run's results call for: 130 interrupted, 1 a failed or errored case
    or a runtime error, else 0."""
    if interrupted:
        return interrupt_exit_code()
    failed = any(c.verdict in ("fail", "error") for c in cases)
    return 1 if failed or runtime_errors else 0


def summarise(verdicts: Sequence[str]) -> dict[str, int]:
    """The report's ``summary``: cases, failed (fail or error), marginal, passed."""
    failed = sum(v in ("fail", "error") for v in verdicts)
    marginal = sum(v == "marginal" for v in verdicts)
    return {"cases": len(verdicts), "failed": failed, "marginal": marginal,
            "passed": len(verdicts) - failed - marginal}


def run_meta(config: Path | str, shard: Shard | None, only: list[str] | None,
             expected: Sequence[str], strict: bool = False,
             digest: str | None = None) -> dict[str, Any]:
    """The report keys a merge checks: the config and its digest (``digest``: of a config
    that is no file, the Python API's dict), the shard, the selection, the names of the
    cases this run was to run (``expected_cases``: after ``--only`` and ``--shard``) and
    whether ``--strict`` judged them."""
    meta: dict[str, Any] = {"config": str(config),
                            "config_digest": digest or config_digest(Path(config))}
    if shard is not None:
        meta["shard"] = {"index": shard.index, "count": shard.count}
    if only:
        meta["only"] = list(only)
    meta["expected_cases"] = list(expected)
    if strict:
        meta["strict"] = True
    return meta


def run_report(run: Any, cases: list[ProfileCaseResult], meta: dict[str, Any]
               ) -> dict[str, Any]:
    """A run's report: its cases (baseline applied), environment, summary, the ``meta``
    of :func:`run_meta`, its exit status and what failed outside the cases."""
    return envelope(cases, environment=run.environment,
                    summary=summarise([c.verdict for c in cases]), **meta,
                    exit_status=exit_status(cases, run.runtime_errors, run.interrupted),
                    **({"interrupted": True} if run.interrupted else {}),
                    **({"runtime_errors": run.runtime_errors} if run.runtime_errors else {}),
                    **({"warnings": run.warnings} if run.warnings else {}))


# ---------------------------------------------------------------- reading reports back

def load_report(path: Path, what: str = "--baseline") -> dict[str, Any]:
    """A dsconv profile report, validated against ``report.schema.json`` and as a profile
    report (every case with a verdict, positive medians): each problem one line with its
    key path, all raised as one :class:`InputError` (exit 2)."""
    try:
        data = json.loads(read_text(path, what, "report"))
    except (ValueError, RecursionError) as e:
        raise InputError(f"{what} {path}: not a JSON report ({e})") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise InputError(f"{what} {path}: not a dsconv report (no schema_version)")
    if not equal(data["schema_version"], 1):
        raise InputError(f"{what} {path}: report schema_version {data['schema_version']!r}; "
                         "this dsconv reads schema_version 1")
    problems = text_problems(data) or validate(data, _profile_report_schema())
    cases = data.get("cases")
    for i, case in enumerate(cases if isinstance(cases, list) else []):
        if not isinstance(case, dict) or not isinstance(case.get("name"), str):
            problems.append((("cases", i), "a case must be an object with a string 'name'"))
            continue
        m = case.get("measured")
        for key in ("median_ms", "q1_ms", "q3_ms"):
            v = m.get(key) if isinstance(m, dict) else None
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0:
                problems.append((("cases", i, "measured", key),
                                 f"must be a positive number, got {v!r}"))
    if problems:
        lines = [f"{what} {path}: {fmt_path(p)}: {msg}"
                 for p, msg in sorted(dict.fromkeys(problems), key=_deepest_first)]
        if len(lines) > MAX_PROBLEMS:
            lines = [*lines[:MAX_PROBLEMS], f"{what} {path}: and {len(lines) - MAX_PROBLEMS} "
                     "more problem(s)"]
        # one ``Error:`` line per problem
        raise InputError("\nError: ".join(lines))
    return data


def _profile_report_schema() -> dict[str, Any]:
    """The shipped report schema, its cases held to the shape a profile case has (a
    baseline or a shard is a profile report, not a compare or convert one)."""
    schema = dict(report_schema())
    cases = {"type": "array", "items": {"$ref": "#/$defs/ProfileCaseResult"}}
    schema["properties"] = {**schema["properties"], "cases": cases}
    return schema


def _deepest_first(problem: tuple[tuple[Any, ...], str]) -> tuple[int, str]:
    """Problems of values before missing keys higher up: the line naming the bad figure
    comes first."""
    path, msg = problem
    return (-len(path), fmt_path(path)) if "missing" not in msg else (1, fmt_path(path))


# ---------------------------------------------------------------- merging shards

@dataclass(frozen=True)
class MergeResult:
    """The merged report, its exit code, and one line per reason it failed."""

    report: dict[str, Any]
    exit_status: int
    problems: list[str]


def merge_reports(files: Sequence[Path], strict: bool = False) -> MergeResult:
    """Shard reports of one config and one dsconv version joined into one report.

    The merge judges, it does not trust: every case's verdict is given again from its
    limits and values (:func:`dsconv_cli.gate.case_verdict`, as the run gave it), with
    ``--strict`` when the merge or the shard had it.

    Refused (exit 2): a report that fails its schema, another config digest, selection
    or dsconv version, shards of different counts, a shard or a case twice, dry runs
    beside measured ones, a stored ``ok``, ``marginal``, value or verdict its own figures
    contradict, a case the shard was not to run, or a finished shard without one it was
    to run. Failed (exit 1, the report still written): a shard that never reported or
    was interrupted (INCOMPLETE, naming the cases that never ran), and every shard's
    failed cases, runtime errors and non-zero exit."""
    datas = [load_report(p, "--merge") for p in files]
    _check_same_run(files, datas)
    shards = _check_shards(files, datas)
    dry = _check_kind_of_run(files, datas)
    names: dict[str, Path] = {}
    for p, d in zip(files, datas, strict=True):
        for c in d["cases"]:
            if c["name"] in names:
                raise InputError(f"--merge: case {c['name']!r} is in more than one report "
                                 f"({names[c['name']]}, {p}); the same shard twice?")
            names[c["name"]] = p
    never_ran = _check_expected(files, datas, shards)
    count = shards[0].count
    missing = [i for i in range(1, count + 1) if i not in {s.index for s in shards}]
    problems = [f"shard {i}/{count} never reported (it crashed, was cancelled or its "
                "report was not uploaded)" for i in missing]
    problems += [f"shard {s} was interrupted: case(s) {listing(names, 5)} never ran"
                 for s, names in never_ran.items()]
    runtime_errors: dict[str, str] = {}
    warnings: list[str] = []
    for s, d in sorted(zip(shards, datas, strict=True), key=lambda x: x[0].index):
        for rt, why in (d.get("runtime_errors") or {}).items():
            runtime_errors.setdefault(rt, f"shard {s}: {why}")
            problems.append(f"shard {s}: runtime {rt}: {why}")
        status = int(d.get("exit_status", 0))
        if status != 0:
            problems.append(f"shard {s} exited with status {status}")
        warnings += [f"shard {s}: {w}" for w in d.get("warnings") or []]
    cases = [_rejudged(p, i, c, dry, bool(d.get("strict")), strict)
             for p, d in zip(files, datas, strict=True) for i, c in enumerate(d["cases"])]
    failed = [c for c in cases if c["verdict"] in ("fail", "error")]
    problems += [f"case {c['name']}: " + ("could not run: " + c["error"]
                                          if c["verdict"] == "error"
                                          else "; ".join(c.get("failures") or []))
                 for c in failed[:MAX_PROBLEMS]]
    if len(failed) > MAX_PROBLEMS:
        problems.append(f"and {len(failed) - MAX_PROBLEMS} more failed case(s)")
    interrupted = any(d.get("interrupted") for d in datas)
    status = 1 if problems or interrupted else 0
    first = datas[0]
    report = envelope(
        cases, environment=first.get("environment"), config=first.get("config"),
        config_digest=first["config_digest"], **({"only": first["only"]} if "only" in first
                                                 else {}),
        expected_cases=[n for _, d in sorted(zip(shards, datas, strict=True),
                                             key=lambda x: x[0].index)
                        for n in d["expected_cases"]],
        shards=[{"report": str(p), "shard": {"index": s.index, "count": s.count},
                 "exit_status": int(d.get("exit_status", 0)),
                 "device_name": (d.get("environment") or {}).get("device_name"),
                 **({"runtime_errors": d["runtime_errors"]} if d.get("runtime_errors")
                    else {})}
                for p, s, d in zip(files, shards, datas, strict=True)],
        **({"missing_shards": missing} if missing else {}),
        **({"missing_cases": [n for names in never_ran.values() for n in names]}
           if never_ran else {}),
        **({"runtime_errors": runtime_errors} if runtime_errors else {}),
        **({"warnings": warnings} if warnings else {}),
        summary=summarise([c["verdict"] for c in cases]),
        exit_status=status, **({"interrupted": True} if interrupted else {}),
        **({"strict": True} if strict else {}), **({"dry_run": True} if dry else {}))
    return MergeResult(report, status, problems)


#: what only a measured run writes into a case
MEASURED_KEYS = ("measured", "standard_measured", "speedup", "original", "vs", "baseline",
                 "speedup_by_runtime", "stages", "flags")


def _check_kind_of_run(files: Sequence[Path], datas: list[dict[str, Any]]) -> bool:
    """Dry runs or measured runs, not both; a dry run's cases hold no measurement.
    Returns whether they are dry runs."""
    kinds = [bool(d.get("dry_run")) for d in datas]
    if len(set(kinds)) > 1:
        dry, real = files[kinds.index(True)], files[kinds.index(False)]
        raise InputError(f"--merge: {dry} is a dry run and {real} a measured run; merge the "
                         "shards of one kind of run")
    for p, d in zip(files, datas, strict=True):
        for i, c in enumerate(d["cases"] if kinds[0] else ()):
            key = next((k for k in MEASURED_KEYS if c.get(k) is not None), None)
            if key is not None:
                raise InputError(f"--merge {p}: cases[{i}].{key}: the report says dry_run "
                                 "but the case holds a measurement")
    return kinds[0]


def _check_expected(files: Sequence[Path], datas: list[dict[str, Any]],
                    shards: list[Shard]) -> dict[Shard, list[str]]:
    """Each report holds exactly the cases its shard was to run (``expected_cases``): a
    case it was not to run, or one expected by two shards, is refused; a case missing from
    a shard that finished is refused (its report was edited); missing from an interrupted
    shard, it never ran. Returns, per interrupted shard, the cases that never ran."""
    owner: dict[str, Path] = {}
    never_ran: dict[Shard, list[str]] = {}
    for p, d, s in zip(files, datas, shards, strict=True):
        expected = d.get("expected_cases")
        if expected is None:
            raise InputError(f"--merge {p}: expected_cases: required key is missing (a "
                             "shard report records the cases it was to run)")
        for name in expected:
            if name in owner:
                raise InputError(f"--merge: case {name!r} is expected by more than one report "
                                 f"({owner[name]}, {p}); the same shard twice?")
            owner[name] = p
        want = set(expected)
        have = [c["name"] for c in d["cases"]]
        stray = next((n for n in have if n not in want), None)
        if stray is not None:
            raise InputError(f"--merge {p}: case {stray!r} is not one shard {s} was to run "
                             "(expected_cases)")
        present = set(have)
        gone = [n for n in expected if n not in present]
        if not gone:
            continue
        status = int(d.get("exit_status", 0))
        if not (d.get("interrupted") or status >= 128):
            raise InputError(f"--merge {p}: case {gone[0]!r} (expected_cases) is not in the "
                             f"report, yet shard {s} finished (exit_status {status}); an "
                             "edited report?")
        never_ran[s] = gone
    return never_ran


def _own_value(case: dict[str, Any], key: str) -> tuple[bool, Any]:
    """The figure a budget on ``key`` judges, from the case's own data: (found, value)."""
    if not BUDGET_METRICS_BY_KEY[key].measured:
        a = case.get("analytic") or {}
        return (key in a, a.get(key))
    if key == "latency_ms":
        m = case.get("measured")
        return (isinstance(m, dict), m.get("median_ms") if isinstance(m, dict) else None)
    if key == "speedup":
        sp = case.get("speedup")
        if not isinstance(sp, dict):
            return True, None
        return True, sp.get("estimate") if sp.get("estimate") is not None else (
            sp.get("measured"))
    vs = case.get("vs")
    sp = vs.get("speedup") if isinstance(vs, dict) else None
    est = sp.get("estimate") if isinstance(sp, dict) else None
    return True, (round(1 / est - 1, 4) if is_finite_number(est) and est else None)


def _same(a: Any, b: Any) -> bool:
    if is_finite_number(a) and is_finite_number(b):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return type(a) is type(b) and a == b


def _rejudged(p: Path, i: int, case: dict[str, Any], dry: bool, own_strict: bool,
              strict: bool) -> dict[str, Any]:
    """The case as the merge reports it: its verdict and failures given again from its
    figures (under ``--strict`` when the shard or the merge had it). Refused (exit 2)
    when what the report stored disagrees with what its figures say."""
    where = f"--merge {p}: cases[{i}]"
    checks = {}
    for metric, stored in case["budget"].items():
        if metric not in BUDGET_METRICS:
            raise InputError(f"{where}.budget.{metric}: unknown budget; allowed: "
                             f"{', '.join(BUDGET_METRICS)}")
        key = BUDGET_METRICS[metric].key
        found, own = _own_value(case, key)
        if found and not _same(own, stored["value"]):
            raise InputError(f"{where}.budget.{metric}.value: {stored['value']!r}, but the "
                             f"case's own {key} is {own!r}")
        interval = stored.get("interval")
        if interval is not None and not (len(interval) == 2 and interval[0] <= interval[1]):
            raise InputError(f"{where}.budget.{metric}.interval: expected [low, high], got "
                             f"{interval!r}")
        judged = judge_budget(metric, stored["limit"], stored["value"], interval)
        if judged.ok != stored["ok"]:
            raise InputError(f"{where}.budget.{metric}.ok: {stored['ok']!r}, but value "
                             f"{stored['value']!r} against limit {stored['limit']!r}"
                             + (f" (interval {stored['interval']})" if "interval" in stored
                                else "") + f" {'meets' if judged.ok else 'misses'} it")
        if bool(judged.marginal) != bool(stored.get("marginal")):
            raise InputError(f"{where}.budget.{metric}.marginal: {stored.get('marginal')!r}, "
                             f"but interval {stored.get('interval')} "
                             f"{'straddles' if judged.marginal else 'does not straddle'} "
                             f"limit {stored['limit']!r}")
        checks[metric] = judged
    base = case.get("baseline")
    if base is not None:
        _check_baseline(where, base)
    judge = functools.partial(case_verdict, checks, baseline=base, flags=case.get("flags"),
                              error=case.get("error"), dry_run=dry)
    verdict, failures = judge(strict=own_strict)
    if verdict != case["verdict"]:
        why = f" ({'; '.join(failures)})" if failures else ""
        raise InputError(f"{where}.verdict: {case['verdict']!r}, but its figures make it "
                         f"{verdict!r}{why}")
    if strict and not own_strict:
        verdict, failures = judge(strict=True)
    out = {k: v for k, v in case.items() if k != "failures"}
    out["verdict"] = verdict
    if failures:
        out["failures"] = failures
    return out


def _check_baseline(where: str, base: dict[str, Any]) -> None:
    """A stored baseline status its own change, threshold and test contradict: refused."""
    change, threshold = base.get("change"), base.get("threshold")
    if not (is_finite_number(change) and is_finite_number(threshold)):
        return
    if base.get("test") == "mann-whitney":
        p, alpha = base.get("p_value"), base.get("alpha")
        if not (is_finite_number(p) and is_finite_number(alpha)):
            raise InputError(f"{where}.baseline: a mann-whitney comparison needs p_value "
                             "and alpha")
        significant = p < alpha
    else:
        significant = base.get("iqr_overlap") is False
    status = baseline_status(change, threshold, significant, base.get("noise"))
    if status != base.get("status"):
        raise InputError(f"{where}.baseline.status: {base.get('status')!r}, but change "
                         f"{change!r} against threshold {threshold!r} makes it {status!r}")


def _check_same_run(files: Sequence[Path], datas: list[dict[str, Any]]) -> None:
    """One config (digest and ``--only``) and one dsconv version, this one."""
    for p, d in zip(files, datas, strict=True):
        version = d["tool"]["version"]
        if version != __version__:
            raise InputError(f"--merge {p}: written by dsconv {version}, this is "
                             f"{__version__}; merge shards run by one dsconv version")
    digests = {d.get("config_digest") for d in datas}
    if None in digests or len(digests) != 1:
        raise InputError("--merge: the reports come from different configs (config_digest "
                         f"{', '.join(sorted(str(d) for d in digests))}); merge shards of one "
                         "config")
    onlys = {json.dumps(d.get("only")) for d in datas}
    if len(onlys) != 1:
        raise InputError(f"--merge: the reports select different cases (--only "
                         f"{', '.join(sorted(onlys))}); merge shards of one selection")


def _check_shards(files: Sequence[Path], datas: list[dict[str, Any]]) -> list[Shard]:
    """Each report's shard (an unsharded report is 1/1): one count, no index twice. The
    schema holds them to integers, which JSON Schema lets be written ``2.0``."""
    shards = [Shard(int(d["shard"]["index"]), int(d["shard"]["count"])) if "shard" in d
              else Shard(1, 1) for d in datas]
    counts = {s.count for s in shards}
    if len(counts) != 1:
        raise InputError("--merge: the reports split the cases differently (shard counts "
                         f"{', '.join(map(str, sorted(counts)))}); merge the shards of one "
                         "matrix")
    seen: dict[int, Path] = {}
    for p, s in zip(files, shards, strict=True):
        if s.index > s.count:
            raise InputError(f"--merge {p}: shard {s} is not one of 1..{s.count}")
        if s.index in seen:
            raise InputError(f"--merge: shard {s} is in more than one report ({seen[s.index]}, "
                             f"{p}); the same shard twice?")
        seen[s.index] = p
    return shards


# ---------------------------------------------------------------- baselines

def baseline_environment_problem(base: dict[str, Any] | None,
                                 environment: dict[str, Any]) -> str | None:
    """What differs between the baseline's environment and this run's, as one line."""
    if base is None:
        return None
    mismatch = env_mismatch(environment, base.get("environment", {}))
    return ("baseline from a different environment: " + "; ".join(mismatch)) if mismatch \
        else None


def apply_baseline(cases: list[ProfileCaseResult], base: dict[str, Any], threshold: float,
                   environment: dict[str, Any], normalize: bool = False,
                   strict: bool = False) -> list[ProfileCaseResult]:
    """Each case's change against the stored baseline (U test + threshold), and its
    verdict given again with it: a regression, or a figure that is not finite, fails the
    case; a comparison too noisy to call is ``marginal`` (``strict``: a failure). A
    baseline from another environment is marked cross-environment and, with
    ``normalize``, scaled by the ratio of calibrated peaks for the case's bound (a peak
    that is NaN, inf or 0 fails the case)."""
    from .profile import rejudge

    by_name = {c.get("name"): c for c in base.get("cases", [])}
    cross = bool(env_mismatch(environment, base.get("environment", {})))
    out = []
    for c in cases:
        old = by_name.get(c.name, {}).get("measured")
        scale, problem = 1.0, None
        if normalize and cross and c.measured is not None:
            scale, problem = peak_scale(base.get("environment", {}), environment,
                                        c.measured.bound)
        check: dict[str, Any] = (
            {"status": "not finite", "problem": problem} if problem is not None else
            compare_baseline(to_json(c.measured) if c.measured else None, old, threshold,
                             scale=scale))
        if cross:
            check["cross_environment"] = True
        out.append(rejudge(dataclasses.replace(c, baseline=check), strict))
    return out
