"""CI gating on plain data (stdlib only): budgets and baseline comparison."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from .fmt import budget_line
from .results import BudgetCheck

__all__ = ["BUDGET_METRICS", "DEFAULT_MAX_SLOWDOWN", "DEFAULT_REGRESSION_THRESHOLD",
           "ENV_KEYS", "MEASURED_METRICS", "BudgetMetric", "baseline_failure", "budget_failures",
           "check_budget", "compare_baseline", "env_mismatch", "not_finite", "peak_scale"]

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
                                "measured standard / candidate (or original / converted "
                                "model)"),
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


def check_budget(budget: dict[str, float], values: dict[str, Any]) -> dict[str, BudgetCheck]:
    """Each budget metric with its limit, the case's value and whether it is met. A
    value that could not be obtained (not measured) or is not finite (NaN, inf) does not
    meet its budget."""
    out = {}
    for metric, limit in budget.items():
        m = BUDGET_METRICS[metric]
        v = values.get(m.key)
        ok = v is not None and math.isfinite(v) and (v <= limit if m.sense == "max"
                                                     else v >= limit)
        out[metric] = BudgetCheck(limit=limit, value=v, ok=ok)
    return out


def budget_failures(checks: dict[str, BudgetCheck]) -> list[str]:
    """One line per unmet budget; a figure that is not finite says so."""
    out = []
    for k, v in checks.items():
        if v.ok:
            continue
        if v.value is not None and not math.isfinite(v.value):
            out.append(f"{k}: the figure is not finite ({v.value}); limit {v.limit}")
        else:
            out.append(budget_line(k, v.value, v.limit))  # as the tables write numbers
    return out


def not_finite(figures: dict[str, Any]) -> str | None:
    """The first of ``figures`` (name -> number) that is NaN, inf or not a number, as a
    line saying so; None when all are finite."""
    for name, v in figures.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return f"{name} is not a finite number ({v!r})"
    return None


def compare_baseline(measured: dict[str, Any] | None, base: dict[str, Any] | None,
                     threshold: float, alpha: float = 0.01, scale: float = 1.0
                     ) -> dict[str, Any]:
    """This run's measurement against the baseline's.

    With both runs' raw block times (``samples_ms``) it is the A/B test of
    :mod:`dsconv_cli.stats`: a **regression** is a slowdown (Hodges-Lehmann ratio of new
    to old) beyond ``threshold`` that is also significant (two-sided Mann-Whitney
    p < ``alpha``); beyond the threshold but not significant is "within noise".
    ``scale`` multiplies the baseline's times first (``--normalize``). A baseline without
    samples (an older report) falls back to comparing IQR ranges [q1, q3]."""
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
    if problem is None and min(scale, base["median_ms"], measured["median_ms"]) <= 0:
        problem = "a median or the normalisation scale is not positive"
    if problem is not None:
        return {"status": "not finite", "problem": problem}
    old, new = base["median_ms"] * scale, measured["median_ms"]
    out: dict[str, Any] = {"baseline_median_ms": round(old, 6), "median_ms": new,
                           "threshold": threshold}
    if scale != 1.0:
        out["scale"] = round(scale, 4)
    if isinstance(old_s, list) and isinstance(new_s, list) and min(len(old_s), len(new_s)) >= 5:
        from .stats import compare_samples

        ab = compare_samples([x * scale for x in old_s], new_s)  # estimate = new / old
        change = ab.estimate - 1
        significant = ab.p_value < alpha
        if change > threshold:
            status = "regression" if significant else "within noise"
        elif change < -threshold / (1 + threshold) and significant:
            status = "faster"
        else:
            status = "ok"
        return {"status": status, **out, "change": round(change, 4),
                "ci95": [round(ab.ci95[0] - 1, 4), round(ab.ci95[1] - 1, 4)],
                "p_value": float(f"{ab.p_value:.4g}"), "alpha": alpha, "test": "mann-whitney"}
    change = new / old - 1
    overlap = measured["q1_ms"] <= base["q3_ms"] * scale and base["q1_ms"] * scale <= (
        measured["q3_ms"])
    if change > threshold:
        status = "within noise" if overlap else "regression"
    elif change < -threshold and not overlap:
        status = "faster"
    else:
        status = "ok"
    return {"status": status, **out, "change": round(change, 4), "iqr_overlap": overlap,
            "test": "iqr-overlap (the baseline has no samples_ms)"}


def baseline_failure(check: dict[str, Any]) -> str | None:
    """The failure line of a baseline check that fails its case (a regression, or a
    figure that is not finite), else None."""
    if check["status"] == "regression":
        return f"regression: median {100 * check['change']:+.1f}% vs baseline"
    if check["status"] == "not finite":
        return f"baseline: {check['problem']}"
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
