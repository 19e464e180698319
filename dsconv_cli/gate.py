"""CI gating on plain data (stdlib only): budgets and baseline comparison."""

from __future__ import annotations

from typing import Any

from .results import BudgetCheck

__all__ = ["BUDGET_METRICS", "DEFAULT_REGRESSION_THRESHOLD", "ENV_KEYS", "check_budget",
           "compare_baseline", "env_mismatch"]

#: From the noise study (benchmarks/noise.py, table in benchmarks/README.md): 10 runs of
#: configs/smoke.yaml on the 2-core CI machine. Per-layer medians spread ~10% (CV 3%), a
#: whole network's up to 63% (one noisy run, CV 17%); run pairs of an unchanged build were
#: called regressions 8.5% of the time at 10%, 5.2% at 30%, 1.5% at 50%. 30% is where the
#: false-alarm curve flattens; a 1.3x slowdown is still caught.
DEFAULT_REGRESSION_THRESHOLD = 0.30

#: budget metric -> (value key, "max" or "min")
BUDGET_METRICS = {
    "max_latency_ms": ("latency_ms", "max"),
    "min_speedup": ("speedup", "min"),
    "max_params": ("params", "max"),
    "max_macs": ("macs", "max"),
    "max_memory_mb": ("memory_mb", "max"),
}

ENV_KEYS = ("device", "device_name", "torch", "threads", "dtype")


def check_budget(budget: dict[str, float], values: dict[str, Any]) -> dict[str, BudgetCheck]:
    """Each budget metric with its limit, the case's value and whether it is met. A
    value that could not be obtained (not measured) does not meet its budget."""
    out = {}
    for metric, limit in budget.items():
        key, sense = BUDGET_METRICS[metric]
        v = values.get(key)
        ok = v is not None and (v <= limit if sense == "max" else v >= limit)
        out[metric] = BudgetCheck(limit=limit, value=v, ok=ok)
    return out


def compare_baseline(measured: dict[str, Any] | None, base: dict[str, Any] | None,
                     threshold: float) -> dict[str, Any]:
    """Change of the median against the baseline case's measurement.

    A regression is a slowdown beyond ``threshold`` whose IQR range [q1, q3] does not
    overlap the baseline's; a slowdown beyond it with overlapping ranges is "within
    noise" and does not fail."""
    if base is None or measured is None:
        return {"status": "new" if base is None else "not measured"}
    old, new = base["median_ms"], measured["median_ms"]
    change = new / old - 1
    overlap = measured["q1_ms"] <= base["q3_ms"] and base["q1_ms"] <= measured["q3_ms"]
    if change > threshold:
        status = "within noise" if overlap else "regression"
    elif change < -threshold and not overlap:
        status = "faster"
    else:
        status = "ok"
    return {"status": status, "baseline_median_ms": old, "median_ms": new,
            "change": round(change, 4), "threshold": threshold, "iqr_overlap": overlap}


def env_mismatch(env: dict[str, Any], base: dict[str, Any]) -> list[str]:
    """What differs between two measurement environments."""
    return [f"{k}: {base.get(k)!r} -> {env.get(k)!r}" for k in ENV_KEYS
            if base.get(k) != env.get(k)]
