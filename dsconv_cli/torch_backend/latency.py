"""The per-layer latency table (``convert --target-latency``, ``compare --model --measure --vs
ds``) and the end-to-end check of a converted model, measured in a session's runtime.

Each eligible layer shape is measured once per runtime, device, threads, dtype, layout and
library versions: its conv and its DS form at each candidate multiplier, built standalone at
the input shape the layer really sees and timed interleaved in one run. The table is cached
under the user cache dir (``latency.json``, beside the roofline calibration) and, like the
calibration, judged on every load: an entry that is too noisy or damaged is measured again,
and one still too noisy after :data:`ATTEMPTS` runs is used for this run (and said) but
never cached. Decisions from the table live in :mod:`dsconv_cli.latency`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import DsconvError, InputError
from ..inputs import NoSuchFile, read_text
from ..latency import CANDIDATE_MULTIPLIERS, LayerTimes, Timed, entry_problem
from ..plan import ConvFacts, largest_smaller
from .convert import make_pair
from .measure import Session, ab_modules
from .timing import cache_path, device_name, interleave, prepare, time_call

__all__ = ["ATTEMPTS", "LayerTable", "TableStats", "candidate_multipliers", "layer_table",
           "model_samples", "table_key", "time_model"]

#: measurements of one layer before a noisy one is used uncached
ATTEMPTS = 2
CACHE_NAME = "latency.json"
#: the cache's own format; a file of another version is measured afresh
CACHE_VERSION = 1


def candidate_multipliers(f: ConvFacts, allow_larger: bool = False) -> list[int]:
    """The multipliers measured for a layer: :data:`CANDIDATE_MULTIPLIERS` up to the
    largest at which the DS form is still smaller than the conv (its rank with
    ``allow_larger``)."""
    cap = f.max_rank if allow_larger else largest_smaller(f)
    return [m for m in CANDIDATE_MULTIPLIERS if m <= cap]


def layout(s: Session) -> str:
    """The layout layers are timed in: the first asked for that the runtime takes."""
    rt = s.runtime
    fmts = [f for f in s.options.memory_formats if rt.layouts is None or f in rt.layouts]
    return (fmts or list(rt.layouts or ("nchw",)))[0]


def table_key(s: Session) -> str:
    """What a table entry is valid for: runtime (and its version), device, threads, dtype,
    layout, torch's version."""
    rec = {k: v for k, v in s.runtime.record().items() if k != "runtime"}
    extra = "".join(f"|{k} {v}" for k, v in sorted(rec.items()))
    return (f"{s.runtime.name}|{device_name(s.device)}|threads "
            f"{s.options.threads or torch.get_num_threads()}|{s.options.dtype}|{layout(s)}|"
            f"torch {torch.__version__}{extra}")


def shape_key(f: ConvFacts, multipliers: Sequence[int]) -> str:
    """One layer shape and the multipliers measured (the table's row key)."""
    pad = f.padding if isinstance(f.padding, str) else list(f.padding)
    return json.dumps([f.in_channels, f.out_channels, list(f.kernel), list(f.stride), pad,
                       list(f.dilation), f.groups, f.bias, f.padding_mode,
                       list(f.input_shape or ()), list(multipliers)])


@dataclass
class TableStats:
    """Where the table came from: the cache file, entries read from it, measured, and
    measured but left out of it (still too noisy)."""

    path: str
    cached: int = 0
    measured: int = 0
    not_cached: int = 0


@dataclass(frozen=True)
class LayerTable:
    """One layer's measured forms (``times``) and whether they came from the cache, and
    why they are not to be trusted (still noisy after every attempt), if so."""

    times: LayerTimes
    input_shape: tuple[int, ...]
    cached: bool
    problem: str | None = None


def _conv(f: ConvFacts) -> nn.Conv2d:
    kw: dict[str, Any] = {"padding": f.padding, "padding_mode": f.padding_mode}
    return nn.Conv2d(f.in_channels, f.out_channels, f.kernel, f.stride, dilation=f.dilation,
                     groups=f.groups, bias=f.bias, **kw)


def _measure(f: ConvFacts, ms: Sequence[int], s: Session) -> dict[str, Timed]:
    """The conv and its DS form at each multiplier, standalone at the layer's input shape,
    prepared in the session's runtime and timed interleaved."""
    assert f.input_shape is not None
    fmt = layout(s)
    conv = _conv(f)
    forms: dict[str, nn.Module] = {"conv": conv}
    forms.update({str(m): make_pair(conv, m, "random") for m in ms})
    fns: dict[str, Callable[[], Any]] = {}
    for k, mod in forms.items():
        module, x = prepare(mod, f.input_shape, s.device, s.dtype, fmt)
        fns[k] = s.runtime.prepare(module, x).fn
    got = interleave(fns, s.device, min_time=s.options.min_time, rounds=s.options.rounds,
                     warmup=s.options.warmup, threads=s.options.threads)
    return {k: Timed(tuple(round(t * 1e3, 7) for t in v[0])) for k, v in got.items()}


def _problem(forms: dict[str, Timed]) -> str | None:
    for k, t in forms.items():
        why = entry_problem(t)
        if why:
            return f"{'conv' if k == 'conv' else 'DS m=' + k}: {why}"
    return None


def _from_cache(rows: dict[str, Any], f: ConvFacts, ms: Sequence[int]
                ) -> dict[str, Timed] | None:
    """A cached row of this layer shape measuring at least ``ms`` (its forms were timed
    together, so any of them compare with its conv), if it is whole and every form it has
    passes :func:`entry_problem`; the exact row first."""
    exact = shape_key(f, ms)
    shape = json.loads(exact)[:-1]
    keys = [exact] + [k for k in rows if k != exact and _holds(k, shape, ms)]
    for key in keys:
        entry: Any = rows.get(key)
        try:
            forms = {k: Timed(tuple(float(v) for v in entry[k]))
                     for k in ("conv", *map(str, ms))}
        except (KeyError, TypeError, ValueError):
            continue
        if _problem(forms) is None:
            return forms
    return None


def _holds(key: str, shape: list[Any], ms: Sequence[int]) -> bool:
    try:
        doc = json.loads(key)
        return bool(doc[:-1] == shape and set(ms) <= set(doc[-1]))
    except (ValueError, TypeError, IndexError):
        return False


def _read_cache(path: Path, warn: Callable[[str], None]) -> dict[str, Any]:
    try:
        doc = json.loads(read_text(path, "latency cache", "cache"))
    except (FileNotFoundError, NoSuchFile):
        return {}
    except (OSError, ValueError, InputError) as e:
        warn(f"latency cache {path} cannot be read ({e}): measuring afresh")
        return {}
    if not isinstance(doc, dict) or doc.get("version") != CACHE_VERSION or not isinstance(
            doc.get("tables"), dict):
        warn(f"latency cache {path} is not a version {CACHE_VERSION} table: measuring afresh")
        return {}
    return doc["tables"]


def layer_table(layers: Sequence[tuple[ConvFacts, int]], s: Session,
                errors: Callable[[ConvFacts, int], float], recalibrate: bool = False,
                allow_larger: bool = False, warn: Callable[[str], None] = lambda m: None,
                advance: Callable[[str], None] | None = None,
                only: Callable[[ConvFacts], list[int]] | None = None
                ) -> tuple[list[LayerTable], TableStats]:
    """The latency table of ``layers`` (facts, calls per forward) in the session's runtime:
    each distinct layer shape measured once (or read from the cache, unless
    ``recalibrate``), with ``errors(facts, m)`` the error of each DS form. Layers the
    forward never reached, or with no DS form smaller than the conv, are left out.
    ``only(facts)`` names the multipliers to measure instead of the candidates (the one a
    plan picked, for ``compare --vs ds``); a cached row measuring more serves it."""
    path = cache_path(CACHE_NAME)
    tables = _read_cache(path, warn)
    key = table_key(s)
    rows: dict[str, Any] = tables.setdefault(key, {}) if isinstance(
        tables.get(key, {}), dict) else {}
    tables[key] = rows
    stats = TableStats(str(path))
    done: dict[str, tuple[dict[str, Timed], bool, str | None]] = {}
    out = []
    for f, calls in layers:
        ms = only(f) if only else candidate_multipliers(f, allow_larger)
        if f.input_shape is None or len(f.input_shape) != 4 or not ms or calls == 0:
            continue
        sk = shape_key(f, ms)
        if sk not in done:
            forms = None if recalibrate else _from_cache(rows, f, ms)
            cached, problem = forms is not None, None
            if forms is None:
                for _ in range(ATTEMPTS):
                    forms = _measure(f, ms, s)
                    problem = _problem(forms)
                    if problem is None:
                        break
                assert forms is not None
                stats.measured += 1
                if problem is None:
                    rows[sk] = {k: list(t.samples_ms) for k, t in forms.items()}
                else:
                    stats.not_cached += 1
                    warn(f"latency of {f.name} still implausible after {ATTEMPTS} "
                         f"measurements ({problem}): used for this run, not cached")
            else:
                stats.cached += 1
            done[sk] = (forms, cached, problem)
        forms, cached, problem = done[sk]
        times = LayerTimes(f.name, forms["conv"], {m: forms[str(m)] for m in ms},
                           {m: errors(f, m) for m in ms}, calls)
        out.append(LayerTable(times, f.input_shape, cached, problem))
        if advance:
            advance(f.name)
    if stats.measured > stats.not_cached:
        _write_cache(path, tables, warn)
    return out, stats


def _write_cache(path: Path, tables: dict[str, Any], warn: Callable[[str], None]) -> None:
    from ..atomic import write_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps({"version": CACHE_VERSION, "tables": tables}))
    except (OSError, DsconvError) as e:
        warn(f"latency cache {path} cannot be written ({e}): the next run measures again")


def weight_error(f: ConvFacts, m: int) -> float:
    """The best rank-m error of the layer's weights (Eckart-Young: sqrt(1 - energy kept))."""
    if m >= f.max_rank:
        return 0.0
    if not f.energy_by_rank:  # random init: nothing of the weights is kept
        return 1.0
    return math.sqrt(max(0.0, 1.0 - f.energy_by_rank[m - 1]))


def time_model(model: nn.Module, shape: tuple[int, ...], s: Session) -> Timed:
    """The model alone in the session's runtime and layout (block times)."""
    module, x = prepare(model, shape, s.device, s.dtype, layout(s))
    t = time_call(s.runtime.prepare(module, x).fn, s.device, min_time=s.options.min_time,
                  warmup=s.options.warmup, threads=s.options.threads)
    return Timed(tuple(t.samples_ms or ()))


#: the end-to-end A/B adds rounds until its interval is this narrow (high / low - 1)...
SETTLE_WIDTH = 0.06
#: ...or this many times ``min_time`` has passed
SETTLE_CAP = 20


def model_samples(original: Callable[[], nn.Module], converted: Callable[[], nn.Module],
                  shape: tuple[int, ...], s: Session) -> tuple[list[float], list[float]]:
    """The original and the converted model timed interleaved in the session's runtime and
    layout (``measure.ab_modules``, sequential until the ratio is pinned down): the block
    times of each, ms."""
    fmt = layout(s)
    a, b = ab_modules(original, shape, fmt, converted, shape, fmt, s, width=SETTLE_WIDTH,
                      time_cap=SETTLE_CAP * s.options.min_time)
    return list(a.samples_ms or ()), list(b.samples_ms or ())
