"""CI gating on plain data (stdlib only): budgets and baseline comparison."""

from __future__ import annotations

from typing import Any

from .results import BudgetCheck

__all__ = ["BUDGET_METRICS", "DEFAULT_MAX_SLOWDOWN", "DEFAULT_REGRESSION_THRESHOLD",
           "ENV_KEYS", "check_budget", "compare_baseline", "env_mismatch", "peak_scale"]

#: From the noise study (benchmarks/noise.py, table in benchmarks/README.md): 10 runs of
#: configs/smoke.yaml on the 2-core CI machine. Per-layer medians spread ~10% (CV 3%), a
#: whole network's up to 63% (one noisy run, CV 17%); run pairs of an unchanged build were
#: called regressions 8.5% of the time at 10%, 5.2% at 30%, 1.5% at 50%. 30% is where the
#: false-alarm curve flattens; a 1.3x slowdown is still caught.
DEFAULT_REGRESSION_THRESHOLD = 0.30
#: An A/B in one job (a profile case against its ``vs:``) shares the machine's state, so a
#: tighter threshold holds: 10%, and only when p < 0.01 (benchmarks/noise.py).
DEFAULT_MAX_SLOWDOWN = 0.10

#: budget metric -> (value key, "max" or "min")
BUDGET_METRICS = {
    "max_latency_ms": ("latency_ms", "max"),
    "min_speedup": ("speedup", "min"),
    "max_params": ("params", "max"),
    "max_macs": ("macs", "max"),
    "max_memory_mb": ("memory_mb", "max"),
    "max_slowdown": ("slowdown", "max"),
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
    old, new = base["median_ms"] * scale, measured["median_ms"]
    old_s, new_s = base.get("samples_ms"), measured.get("samples_ms")
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


def peak_scale(base_env: dict[str, Any], env: dict[str, Any], bound: str) -> float:
    """How much faster this environment's calibrated peak is than the baseline's, for a
    case bound by ``bound`` (``compute``: peak FLOP/s; ``memory``: the largest-working-set
    bandwidth): the factor to scale the baseline's times by (``--normalize``)."""
    try:
        a, b = base_env["calibration"], env["calibration"]
        if bound == "compute":
            return float(a["peak_gflops"]) / float(b["peak_gflops"])

        def bw(c: dict[str, Any]) -> float:
            last = c["bandwidth_gbps"][-1]
            return max(float(last["copy"]), float(last["read"]))

        return bw(a) / bw(b)
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError):
        return 1.0


def env_mismatch(env: dict[str, Any], base: dict[str, Any]) -> list[str]:
    """What differs between two measurement environments."""
    return [f"{k}: {base.get(k)!r} -> {env.get(k)!r}" for k in ENV_KEYS
            if base.get(k) != env.get(k)]
