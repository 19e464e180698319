"""CI gating on plain data (stdlib only): budgets and baseline comparison."""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_REGRESSION_THRESHOLD", "ENV_KEYS", "check_budget", "compare_baseline",
           "env_mismatch"]

#: from the noise study in benchmarks/README.md: 10 runs of configs/smoke.yaml on the
#: 2-core CI machine spread up to ~12% (max/min of a case's median) with IQR overlap in
#: most pairs; 15% keeps false alarms rare while a 1.25x slowdown is still caught.
DEFAULT_REGRESSION_THRESHOLD = 0.15

#: budget metric -> (value key, "max" or "min")
METRICS = {
    "max_latency_ms": ("latency_ms", "max"),
    "min_speedup": ("speedup", "min"),
    "max_params": ("params", "max"),
    "max_macs": ("macs", "max"),
    "max_memory_mb": ("memory_mb", "max"),
}

ENV_KEYS = ("device", "device_name", "torch", "threads", "dtype")


def check_budget(budget: dict[str, float], values: dict[str, Any]) -> dict[str, Any]:
    """Each budget metric with its limit, the case's value and whether it is met. A
    value that could not be obtained (not measured) does not meet its budget."""
    out = {}
    for metric, limit in budget.items():
        key, sense = METRICS[metric]
        v = values.get(key)
        ok = v is not None and (v <= limit if sense == "max" else v >= limit)
        out[metric] = {"limit": limit, "value": v, "ok": ok}
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
