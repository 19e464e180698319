"""CI gating on plain data (stdlib only): budgets and baseline comparison."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

from .fmt import budget_line
from .results import BudgetCheck

__all__ = ["BUDGET_METRICS", "DEFAULT_MAX_SLOWDOWN", "DEFAULT_REGRESSION_THRESHOLD",
           "ENV_KEYS", "MEASURED_METRICS", "NOISY_BASELINE", "BudgetMetric", "baseline_failure",
           "baseline_status", "budget_failures", "case_verdict", "check_budget",
           "compare_baseline", "env_mismatch", "is_finite_number", "judge_budget", "not_finite",
           "outside_interval", "peak_scale", "spread"]

#: From the noise study (benchmarks/noise.py, table in benchmarks/README.md): 10 runs of
#: configs/smoke.yaml on the 2-core CI machine. Per-layer medians spread ~10% (CV 3%), a
#: whole network's up to 63% (one noisy run, CV 17%); run pairs of an unchanged build were
#: called regressions 8.5% of the time at 10%, 5.2% at 30%, 1.5% at 50%. 30% is where the
#: false-alarm curve flattens; a 1.3x slowdown is still caught.
DEFAULT_REGRESSION_THRESHOLD = 0.30
#: An A/B in one job (a profile case against its ``vs:``) shares the machine's state, so a
#: tighter threshold holds: 10%, and only when p < 0.01 (benchmarks/noise.py).
DEFAULT_MAX_SLOWDOWN = 0.10

@dataclass(frozen=True)
class BudgetMetric:
    """One budget a case can set: the value it limits and how."""

    #: the key of the case's values it limits (analytic or measured)
    key: str
    sense: Literal["max", "min"]
    #: only a run can check it (``--dry-run`` says "needs a run")
    measured: bool
    #: an integer limit (a count) rather than a real one
    integer: bool
    #: the kinds of case that have it (see :func:`dsconv_cli.suite.source_of`)
    sources: frozenset[str]
    help: str | None = None


_ALL = frozenset({"layer", "preset", "model", "model+convert"})
#: every budget metric; the config's ``budget:`` keys, the metrics each kind of case
#: allows and the ones ``--dry-run`` can judge are all derived from it
BUDGET_METRICS: dict[str, BudgetMetric] = {
    "max_latency_ms": BudgetMetric("latency_ms", "max", True, False, _ALL,
                                   "median latency of the candidate (or whole model)"),
    "min_speedup": BudgetMetric("speedup", "min", True, False,
                                frozenset({"layer", "model+convert"}),
                                "the interleaved A/B estimate of standard / candidate (or "
                                "original / converted model)"),
    "max_params": BudgetMetric("params", "max", False, True, _ALL),
    "max_macs": BudgetMetric("macs", "max", False, True, _ALL),
    "max_memory_mb": BudgetMetric("memory_mb", "max", False, False,
                                  frozenset({"layer", "preset"}),
                                  "weights + largest live activations, 1 MB = 10^6 bytes"),
    "max_slowdown": BudgetMetric("slowdown", "max", True, False,
                                 frozenset({"model", "model+convert"}),
                                 "a model case against its vs: fails when slower by more "
                                 "than this fraction and significantly so (p < 0.01); "
                                 "default 0.10"),
}
#: the budget metrics only a measurement can check
MEASURED_METRICS = tuple(k for k, m in BUDGET_METRICS.items() if m.measured)

ENV_KEYS = ("device", "device_name", "torch", "threads", "dtype")


#: a value may sit this far (relative) outside its stored interval: intervals are written
#: to 4 significant digits
INTERVAL_SLACK = 1e-3


def _meets(value: float, limit: float, sense: str) -> bool:
    return value <= limit if sense == "max" else value >= limit


def outside_interval(value: float | None, interval: list[float] | None) -> bool:
    """Whether a finite ``value`` lies outside its own 95% ``interval`` (a figure that
    cannot be the one its interval was computed for)."""
    if value is None or interval is None or not is_finite_number(value):
        return False
    lo, hi = interval
    return not (lo - INTERVAL_SLACK * abs(lo) <= value <= hi + INTERVAL_SLACK * abs(hi))


def judge_budget(metric: str, limit: float, value: float | None,
                 interval: list[float] | None = None) -> BudgetCheck:
    """One budget judged: a value that could not be obtained or is not finite misses it;
    with its 95% ``interval`` (a measured value) it is met unless the whole interval is on
    the wrong side of the limit, ``marginal`` when the interval straddles it, and missed
    when the value lies outside its own interval. The run and ``--merge`` both judge here."""
    from .stats import against_limit

    m = BUDGET_METRICS[metric]
    if value is None or not is_finite_number(value):
        return BudgetCheck(limit=limit, value=value, ok=False, interval=interval)
    if interval is None:
        return BudgetCheck(limit=limit, value=value, ok=_meets(value, limit, m.sense))
    if outside_interval(value, interval):
        return BudgetCheck(limit=limit, value=value, ok=False, interval=interval)
    call = against_limit((interval[0], interval[1]), limit, m.sense)
    return BudgetCheck(limit=limit, value=value, ok=call != "fail", interval=interval,
                       marginal=True if call == "marginal" else None)


def check_budget(budget: dict[str, float], values: dict[str, Any],
                 intervals: dict[str, list[float]] | None = None) -> dict[str, BudgetCheck]:
    """Each budget metric with its limit, the case's value (and, for a measured one, its
    95% interval from ``intervals``, keyed like ``values``) judged by :func:`judge_budget`."""
    intervals = intervals or {}
    return {metric: judge_budget(metric, limit, values.get(BUDGET_METRICS[metric].key),
                                 intervals.get(BUDGET_METRICS[metric].key))
            for metric, limit in budget.items()}


def budget_failures(checks: dict[str, BudgetCheck]) -> list[str]:
    """One line per unmet budget, naming the budget, the value and the limit; a figure
    that is not finite, or outside its own interval, says so."""
    out = []
    for k, v in checks.items():
        if v.ok:
            continue
        if v.value is not None and not is_finite_number(v.value):
            out.append(f"{k}: the figure is not finite ({v.value!r}); limit {v.limit}")
        elif v.interval is not None and outside_interval(v.value, v.interval):
            out.append(f"{budget_line(k, v.value, v.limit)}: the value is outside its own "
                       f"95% interval [{v.interval[0]}, {v.interval[1]}]")
        else:
            out.append(budget_line(k, v.value, v.limit))  # as the tables write numbers
    return out


def is_finite_number(v: Any) -> TypeGuard[float]:
    """A finite int or float, not a bool (JSON Schema's number)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def case_verdict(checks: dict[str, BudgetCheck], *, baseline: dict[str, Any] | None = None,
                 flags: list[str] | None = None, error: str | None = None,
                 strict: bool = False, dry_run: bool = False) -> tuple[str, list[str]]:
    """A profile case's verdict and failure lines from its judged budgets, its baseline
    check and its flags: ``error`` when it could not run; ``fail`` when a budget is
    missed, the baseline found a regression or a figure that is not finite, or (with
    ``strict``) a budget or the baseline is marginal or a measurement is flagged;
    ``marginal`` when a budget or the baseline cannot say; else ``pass`` (``planned`` in
    a dry run). A run and ``--merge`` both give verdicts here."""
    if error is not None:
        return "error", []
    failures = budget_failures(checks)
    base_line = baseline_failure(baseline) if baseline else None
    if base_line is not None:
        failures.append(base_line)
    marginal = [f"{k} is marginal (interval {v.interval} straddles {v.limit})"
                for k, v in checks.items() if v.marginal]
    if baseline and baseline.get("status") == "marginal":
        marginal.append(f"baseline: {baseline.get('noise', 'marginal')}")
    if strict:
        failures += [f"--strict: {f}" for f in [*(flags or []), *marginal]]
    if failures:
        return "fail", failures
    return ("planned" if dry_run else "marginal" if marginal else "pass"), []


def not_finite(figures: dict[str, Any]) -> str | None:
    """The first of ``figures`` (name -> number) that is NaN, inf or not a number, as a
    line saying so; None when all are finite."""
    for name, v in figures.items():
        if not is_finite_number(v):
            return f"{name} is not a finite number ({v!r})"
    return None


#: a baseline comparison is unreliable (``marginal``, never a regression) when either
#: run's interquartile range is more than this share of its median: a run that noisy says
#: more about the machine's load than about the code
NOISY_BASELINE = 0.5


def spread(m: dict[str, Any]) -> float | None:
    """A measurement's IQR as a share of its median: from its block times where it kept
    five or more (inclusive quartiles, as numpy's percentiles), else from ``q1_ms`` and
    ``q3_ms``; None when neither is there."""
    import statistics

    samples, med = m.get("samples_ms"), m.get("median_ms")
    if isinstance(samples, list) and len(samples) >= 5 and all(map(is_finite_number, samples)):
        q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
        med = statistics.median(samples)
    elif is_finite_number(m.get("q1_ms")) and is_finite_number(m.get("q3_ms")):
        q1, q3 = m["q1_ms"], m["q3_ms"]
    else:
        return None
    return (q3 - q1) / med if is_finite_number(med) and med > 0 else None


def baseline_status(change: float, threshold: float, significant: bool,
                    noise: str | None = None) -> str:
    """A baseline comparison's status from the change of the median (new / old - 1):
    ``marginal`` when its inputs are too noisy (``noise`` says which), a ``regression``
    beyond ``threshold`` when ``significant``, else ``within noise``; ``faster`` when as
    much faster and significant; else ``ok``. The run and ``--merge`` both call it."""
    if noise is not None:
        return "marginal"
    if change > threshold:
        return "regression" if significant else "within noise"
    if change < -threshold / (1 + threshold) and significant:
        return "faster"
    return "ok"


def baseline_noise(measured: dict[str, Any], base: dict[str, Any]) -> str | None:
    """The line naming the noise that makes a comparison unreliable, or None."""
    parts = [f"{who}'s IQR is {100 * r:.0f}% of its median" for who, m in
             (("the baseline", base), ("this run", measured))
             for r in [spread(m)] if r is not None and r > NOISY_BASELINE]
    if not parts:
        return None
    return (f"unreliable: {' and '.join(parts)} (over {100 * NOISY_BASELINE:.0f}%): too "
            "noisy to call a regression; re-run both on a quieter machine")


def compare_baseline(measured: dict[str, Any] | None, base: dict[str, Any] | None,
                     threshold: float, alpha: float = 0.01, scale: float = 1.0
                     ) -> dict[str, Any]:
    """This run's measurement against the baseline's.

    With both runs' raw block times (``samples_ms``) it is the A/B test of
    :mod:`dsconv_cli.stats`: a **regression** is a slowdown (Hodges-Lehmann ratio of new
    to old) beyond ``threshold`` that is also significant (two-sided Mann-Whitney
    p < ``alpha``); beyond the threshold but not significant is "within noise". Either
    run's IQR above :data:`NOISY_BASELINE` of its median makes it ``marginal`` (the
    ``noise`` line says whose). ``scale`` multiplies the baseline's times first
    (``--normalize``). A baseline without samples (an older report) falls back to
    comparing IQR ranges [q1, q3]."""
    if base is None or measured is None:
        return {"status": "new" if base is None else "not measured"}
    old_s, new_s = base.get("samples_ms"), measured.get("samples_ms")
    problem = not_finite({"the normalisation scale": scale,
                          "the baseline's median_ms": base["median_ms"],
                          "this run's median_ms": measured["median_ms"],
                          **{f"the baseline's samples_ms[{i}]": v
                             for i, v in enumerate(old_s if isinstance(old_s, list) else [])},
                          **{f"this run's samples_ms[{i}]": v
                             for i, v in enumerate(new_s if isinstance(new_s, list) else [])}})
    if problem is None and min(scale, base["median_ms"], measured["median_ms"],
                               *(old_s if isinstance(old_s, list) else []),
                               *(new_s if isinstance(new_s, list) else [])) <= 0:
        problem = "a median, a block time or the normalisation scale is not positive"
    if problem is not None:
        return {"status": "not finite", "problem": problem}
    old, new = base["median_ms"] * scale, measured["median_ms"]
    noise = baseline_noise(measured, base)
    out: dict[str, Any] = {"baseline_median_ms": round(old, 6), "median_ms": new,
                           "threshold": threshold, **({"noise": noise} if noise else {})}
    if scale != 1.0:
        out["scale"] = round(scale, 4)
    if isinstance(old_s, list) and isinstance(new_s, list) and min(len(old_s), len(new_s)) >= 5:
        from .stats import compare_samples

        ab = compare_samples([x * scale for x in old_s], new_s)  # estimate = new / old
        change = ab.estimate - 1
        status = baseline_status(change, threshold, ab.p_value < alpha, noise)
        return {"status": status, **out, "change": round(change, 4),
                "ci95": [round(ab.ci95[0] - 1, 4), round(ab.ci95[1] - 1, 4)],
                "p_value": float(f"{ab.p_value:.4g}"), "alpha": alpha, "test": "mann-whitney"}
    change = new / old - 1
    overlap = measured["q1_ms"] <= base["q3_ms"] * scale and base["q1_ms"] * scale <= (
        measured["q3_ms"])
    status = baseline_status(change, threshold, not overlap, noise)
    return {"status": status, **out, "change": round(change, 4), "iqr_overlap": overlap,
            "test": "iqr-overlap (the baseline has no samples_ms)"}


def baseline_failure(check: dict[str, Any]) -> str | None:
    """The failure line of a baseline check that fails its case (a regression, or a
    figure that is not finite), else None."""
    if check.get("status") == "regression":
        change = check.get("change")
        text = f"{100 * change:+.1f}%" if is_finite_number(change) else repr(change)
        return f"regression: median {text} vs baseline (threshold {check.get('threshold')})"
    if check.get("status") == "not finite":
        return f"baseline: {check.get('problem')}"
    return None


def peak_scale(base_env: dict[str, Any], env: dict[str, Any], bound: str
               ) -> tuple[float, str | None]:
    """How much faster this environment's calibrated peak is than the baseline's, for a
    case bound by ``bound`` (``compute``: peak FLOP/s; ``memory``: the largest-working-set
    bandwidth): the factor to scale the baseline's times by (``--normalize``), and the
    line saying which peak is not a finite positive number (then the factor is NaN and
    the comparison fails). Without a calibration on either side the factor is 1."""
    try:
        a, b = base_env["calibration"], env["calibration"]
        if bound == "compute":
            figures = {"the baseline's calibrated peak_gflops": a["peak_gflops"],
                       "this run's calibrated peak_gflops": b["peak_gflops"]}
        else:
            la, lb = a["bandwidth_gbps"][-1], b["bandwidth_gbps"][-1]
            figures = {"the baseline's calibrated copy bandwidth": la["copy"],
                       "the baseline's calibrated read bandwidth": la["read"],
                       "this run's calibrated copy bandwidth": lb["copy"],
                       "this run's calibrated read bandwidth": lb["read"]}
    except (KeyError, TypeError, IndexError):
        return 1.0, None
    problem = not_finite(figures)
    if problem is None:
        problem = next((f"{k} is not positive ({v!r})" for k, v in figures.items() if v <= 0),
                       None)
    if problem is not None:
        return math.nan, f"--normalize: {problem}"
    v = [float(x) for x in figures.values()]
    return (v[0] / v[1], None) if bound == "compute" else (max(v[0], v[1]) / max(v[2], v[3]),
                                                            None)


def env_mismatch(env: dict[str, Any], base: dict[str, Any]) -> list[str]:
    """What differs between two measurement environments."""
    return [f"{k}: {base.get(k)!r} -> {env.get(k)!r}" for k in ENV_KEYS
            if base.get(k) != env.get(k)]
