"""What a view hands the format writers: :class:`Table` (cells, hierarchy, notes) and the
reader's :class:`Layout` choices (``--wide``, ``--columns``, ``--sort``, ``--top``).

Every column has a priority (:data:`PRIORITY`): at the terminal's width a table drops its
lowest-priority columns first and says which; the first column (the row's name) is always
kept. JSON keeps everything; CSV and Markdown keep every column unless ``--columns`` picks.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError

__all__ = ["PRIORITY", "Cell", "Layout", "Table", "View", "column_key", "resolve_columns"]


@dataclass(frozen=True)
class Layout:
    """How a reader wants a table: every column (``wide``), the ones picked (``columns``,
    labels), and for a model's modules an order (``sort``) and a count (``top``)."""

    wide: bool = False
    columns: tuple[str, ...] = ()
    sort: str | None = None
    top: int | None = None


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    styles: list[str | None] = field(default_factory=list)  # per-row Rich style
    #: per-row depth in a hierarchy (0: top level); the first cell holds the bare name
    depths: list[int] = field(default_factory=list)
    #: what a reader needs first (verdict counts) and the lines that matter most (failures)
    summary: str | None = None
    alerts: list[str] = field(default_factory=list)
    #: the counting conventions (a collapsed block in Markdown) and their one-line form
    #: (what the terminal shows: the rest is in docs/CONVENTIONS.md)
    conventions: str | None = None
    brief: str | None = None
    layout: Layout = field(default_factory=Layout)

    def add(self, row: list[str], style: str | None = None, depth: int = 0) -> None:
        self.rows.append(row)
        self.styles.append(style)
        self.depths.append(depth)

    def depth(self, i: int) -> int:
        return self.depths[i] if i < len(self.depths) else 0


View = Callable[[dict[str, Any]], list[Table]]


class Cell(str):
    """A table cell: the text a person reads, and the raw number CSV writes."""

    raw: int | float | None

    def __new__(cls, text: str, raw: int | float | None) -> Cell:
        cell = super().__new__(cls, text)
        cell.raw = raw
        return cell


#: column label -> priority: 1 holds the key numbers (params, MACs, ratios, the measured
#: median, speedup, verdict) and goes last; 5 goes first. The first column is always kept.
PRIORITY: dict[str, float] = {
    # 1: the answer
    "params": 1, "MACs": 1, "MACs x": 1, "params x": 1, "median ms": 1, "ms": 1,
    "speedup": 1, "verdict": 1, "status": 1, "DS MACs x": 1,
    "params after": 1, "MACs after": 1, "conv ms": 1, "DS ms": 1, "choice": 1,
    # 1.5: kept as long as room allows beside the key numbers
    "reason": 1.5,
    # 2: what explains it
    "std params": 2, "std MACs": 2, "std ms": 2, "theory x": 2,
    "MAC share": 2, "time share": 2, "self ms": 2,
    "budget": 2, "params before": 2, "MACs before": 2,
    "full-conv MACs": 2, "DS MACs": 2, "layer": 2, "stage": 2,
    # 3: context
    "output": 3, "FLOPs": 3, "type": 3, "kind": 3, "roofline": 3, "baseline": 3,
    "DS params": 3, "rank/max": 3, "IQR ms": 3, "full-conv params": 3, "blocks": 3,
    "source": 3, "in>out": 3, "weight err": 3, "95% CI": 3, "conv 95%": 3, "DS 95%": 3,
    # 4: detail
    "bytes": 4, "FLOP/B": 4, "activations": 4, "GFLOP/s": 4, "GB/s": 4, "energy": 4,
    "kernel": 4, "stride": 4, "input": 4, "vs": 4, "calls": 4,
    # 5: rarely needed at a glance
    "dil": 5,
}


def column_key(label: str) -> str:
    """The name ``--columns`` takes for a column: ``median ms`` -> ``median-ms``,
    ``FLOP/B`` -> ``flop-b``, ``MACs x`` -> ``macs-x``."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def resolve_columns(text: str | None, labels: Iterable[str]) -> tuple[str, ...]:
    """``--columns a,b``: the labels named (by key or label, any case), or exit 2 with a
    "did you mean" for a name no column has."""
    if text is None:
        return ()
    by_key: dict[str, str] = {}
    for label in labels:
        by_key.setdefault(column_key(label), label)
    out = []
    for name in (n.strip() for n in text.split(",")):
        if not name:
            continue
        found = by_key.get(column_key(name))
        if found is None:
            close = difflib.get_close_matches(column_key(name), list(by_key), n=1, cutoff=0.5)
            raise InputError(
                f"Invalid value for '--columns': no column {name!r}"
                + (f" (did you mean {close[0]!r}?)" if close else ""),
                hint="columns: " + ", ".join(by_key))
        out.append(found)
    if not out:
        raise InputError("Invalid value for '--columns': give column names, e.g. params,macs")
    return tuple(dict.fromkeys(out))
