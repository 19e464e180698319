"""The one number format (stdlib only): what a person reads in tables, notes and failure lines.

Integers get thousands separators; times and ratios three significant digits (fixed point
from 0.001 up, scientific below, whole numbers with separators from 1,000 up). CSV and JSON
keep the raw numbers; these functions only make text.
"""

from __future__ import annotations

import math

__all__ = ["BUDGET_UNITS", "budget_line", "fmt_count", "fmt_ms", "fmt_x", "listing", "sig3"]


def fmt_count(n: int | float | None) -> str:
    """An integer with separators: ``19,584``; ``-`` when there is none (what is not a
    finite number, from a hand-edited report, is shown as it is)."""
    if n is None:
        return "-"
    return f"{int(n):,}" if is_number(n) else str(n)


def is_number(x: object) -> bool:
    """A finite int or float (not a bool): what a table may format as a number."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def sig3(x: float | None, trim: bool = False) -> str:
    """Three significant digits: ``0.000705`` -> ``7.05e-04``, ``0.2110`` -> ``0.211``,
    ``12.345`` -> ``12.3``, ``159.87`` -> ``160``, ``2821.33`` -> ``2,821``. ``trim`` drops
    trailing zeros (a limit the user wrote: ``50.0`` -> ``50``)."""
    if x is None:
        return "-"
    if not is_number(x):
        return str(x)
    if x == 0:
        return "0"
    a = abs(x)
    if a < 1e-3:
        return f"{x:.2e}"
    if a >= 999.5:
        return f"{round(x):,}"
    digits = 2 - math.floor(math.log10(a))
    text = f"{x:.{max(0, digits)}f}"
    if abs(float(text)) >= 10 ** (3 - max(0, digits)) and digits > 0:  # 9.996 -> "10.00"
        text = f"{x:.{digits - 1}f}"
    return text.rstrip("0").rstrip(".") if trim and "." in text else text


def fmt_ms(x: float | None) -> str:
    """A time in milliseconds, three significant digits, with its unit: ``160 ms``."""
    return "-" if x is None else f"{sig3(x)} ms"


def fmt_x(x: float | None) -> str:
    """A ratio, three significant digits: ``8.69x``, ``14.0x``, ``2,821x``."""
    return "-" if x is None else f"{sig3(x)}x"


#: budget metric -> (scale, unit) of its value and limit (the config's units)
BUDGET_UNITS: dict[str, tuple[float, str]] = {
    "max_latency_ms": (1, " ms"), "min_speedup": (1, "x"), "max_params": (1, ""),
    "max_macs": (1, ""), "max_memory_mb": (1, " MB"), "max_slowdown": (100, "%"),
}


def _budget_number(metric: str, v: float, trim: bool) -> str:
    scale, unit = BUDGET_UNITS.get(metric, (1, ""))
    if metric in ("max_params", "max_macs"):
        return fmt_count(v)
    return sig3(scale * v, trim) + unit


def budget_line(metric: str, value: float | None, limit: float) -> str:
    """A failed budget as the tables write numbers: ``max_latency_ms: 160 ms > limit 50 ms``;
    a value that could not be obtained says so."""
    lim = _budget_number(metric, limit, trim=True)
    if value is None:
        return f"{metric}: not measured (limit {lim})"
    at_most = not metric.startswith("min_")
    worse = value > limit if at_most else value < limit
    sign = (">" if at_most else "<") if worse else "vs"  # "vs": failed by a rule beside it
    return f"{metric}: {_budget_number(metric, value, trim=False)} {sign} limit {lim}"


def listing(items: list[str], limit: int) -> str:
    """The first ``limit`` items, comma-separated, and how many more: ``a, b … 6 more``."""
    head = ", ".join(items[:limit])
    return head + (f" … {len(items) - limit} more" if len(items) > limit else "")
