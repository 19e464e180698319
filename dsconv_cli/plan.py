"""Conversion planning on plain data (stdlib only): which Conv2d layers become depthwise
separable pairs, at which depth multiplier, and why the others are skipped.

The backend measures each layer (attributes, input size, the singular values of its
per-channel slices) and applies the decisions; the choices themselves live here.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cost import cost
from .names import short_name
from .specs import ConvSpec, Padding, SeparableSpec

__all__ = ["ConvFacts", "Decision", "PlanOptions", "decide", "plan_layer_dict", "validate_plan"]

PLAN_VERSION = 1
#: the largest depth multiplier dsconv builds (``--depth-multiplier``, a plan's entries)
MAX_MULTIPLIER = 1 << 10


@dataclass(frozen=True)
class PlanOptions:
    min_channels: int = 32
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    depth_multiplier: int = 1
    energy: float | None = None
    max_error: float | None = None
    allow_larger: bool = False
    init: str = "svd"
    #: per-layer multipliers chosen for a MACs budget (``--target-macs``), by layer name
    ranks: tuple[tuple[str, int], ...] = ()
    #: per-layer notes of the budget (a multiplier held where a larger one would grow it)
    notes: tuple[tuple[str, str], ...] = ()
    #: layers a budget keeps as convs (``--target-latency``), with the reason, by layer name
    keep: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ConvFacts:
    """What the backend read off one ``nn.Conv2d``."""

    name: str
    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: Padding | str
    dilation: tuple[int, int]
    groups: int
    bias: bool
    padding_mode: str = "zeros"
    input_shape: tuple[int, ...] | None = None
    #: cumulative fraction of spectral energy kept at rank 1..max_rank (svd init only)
    energy_by_rank: tuple[float, ...] = ()
    aliases: tuple[str, ...] = field(default=())
    #: a Conv2d subclass whose forward is not Conv2d's (dynamic padding, weight
    #: standardisation...): its output is not the plain conv the DS form reproduces
    custom_forward: str | None = None

    @property
    def max_rank(self) -> int:
        """The rank of each input channel's slice: the outputs it feeds (its group's) by
        the kernel taps."""
        return min(self.out_channels // self.groups, self.kernel[0] * self.kernel[1])

    def spec(self) -> ConvSpec:
        pad = (0, 0) if self.padding == "valid" else self.padding
        return ConvSpec(self.in_channels, self.out_channels, self.kernel, self.stride,
                        pad, self.dilation, self.groups, self.bias)  # type: ignore[arg-type]

    def separable(self, m: int) -> SeparableSpec:
        base = self.spec()
        return SeparableSpec(self.in_channels, self.out_channels, self.kernel, self.stride,
                             base.padding, self.dilation, m, self.bias, pw_groups=self.groups)


@dataclass(frozen=True)
class Decision:
    facts: ConvFacts
    convert: bool
    reason: str
    rank: int | None = None
    energy: float | None = None
    weight_error: float | None = None
    params_before: int = 0
    params_after: int | None = None
    macs_before: int | None = None
    macs_after: int | None = None
    #: something the user should know about a converted layer (a capped rank)
    note: str | None = None


def _params(spec: Any) -> int:
    """Params do not depend on the input size: price the spec on an input just big enough
    for its dilated kernel (a fixed size would refuse a legal large-dilation conv)."""
    kh, kw = spec.kernel
    dh, dw = spec.dilation
    return cost(spec, (1, spec.in_channels, dh * (kh - 1) + 1, dw * (kw - 1) + 1)).params


def _macs(spec: Any, shape: tuple[int, ...] | None) -> int | None:
    if shape is None or len(shape) != 4:
        return None
    return cost(spec, shape).macs


def eligibility(f: ConvFacts, o: PlanOptions) -> str | None:
    """Why this conv is not a candidate at all, or None."""
    names = (f.name, *f.aliases)
    if f.custom_forward:
        return (f"{f.custom_forward} overrides Conv2d.forward; its output is not a plain "
                "conv's, so the DS form would change it")
    if f.groups == f.in_channels and f.groups > 1:
        return f"already depthwise (groups={f.groups})"
    if f.kernel == (1, 1):
        return "1x1 conv (already pointwise)"
    if f.in_channels < o.min_channels:
        return f"in_channels {f.in_channels} < --min-channels {o.min_channels}"
    if o.include and not any(fnmatch.fnmatchcase(n, p) for n in names for p in o.include):
        return "not matched by --include"
    for p in o.exclude:
        if any(fnmatch.fnmatchcase(n, p) for n in names):
            return f"excluded by --exclude {p!r}"
    return None


def choose_rank(f: ConvFacts, o: PlanOptions) -> int:
    chosen = dict(o.ranks)
    if f.name in chosen:
        return chosen[f.name]
    if o.energy is None or not f.energy_by_rank:
        return o.depth_multiplier
    for m, e in enumerate(f.energy_by_rank, start=1):
        if e >= o.energy - 1e-12:
            return m
    return f.max_rank


def decide(f: ConvFacts, o: PlanOptions) -> Decision:
    """Convert or skip one layer, with the numbers that justify it."""
    spec = f.spec()
    before = _params(spec)
    macs_before = _macs(spec, f.input_shape)
    why = eligibility(f, o) or dict(o.keep).get(f.name)
    if why:
        return Decision(f, False, why, params_before=before, macs_before=macs_before)
    m = choose_rank(f, o)
    note = None
    if m > f.max_rank:
        note = (f"depth multiplier {m} is above this kernel's rank {f.max_rank}: capped at "
                f"{f.max_rank}, which is already exact")
        m = f.max_rank
    ds = f.separable(m)
    after = _params(ds)
    energy = err = None
    if o.init == "svd" and f.energy_by_rank:
        energy = 1.0 if m >= f.max_rank else f.energy_by_rank[m - 1]
        err = math.sqrt(max(0.0, 1.0 - energy))  # Eckart-Young: the best rank-m error
    macs_after = _macs(ds, f.input_shape)
    reason = "converted"
    larger = _not_smaller(before, after, macs_before, macs_after)
    if larger and not o.allow_larger:
        reason = (f"DS form at depth multiplier {m} not smaller ({larger}): kept the original "
                  "conv (--allow-larger converts it)")
    elif o.max_error is not None and err is not None and err > o.max_error:
        reason = f"weight error {err:.3f} > --max-error {o.max_error}"
    return Decision(f, reason == "converted", reason, rank=m, energy=energy, weight_error=err,
                    params_before=before, params_after=after, macs_before=macs_before,
                    macs_after=macs_after, note=note or dict(o.notes).get(f.name))


def _not_smaller(params_before: int, params_after: int, macs_before: int | None,
                 macs_after: int | None) -> str | None:
    """Why a DS form is not smaller than its conv (params or MACs), or None."""
    if params_after >= params_before:
        return f"{params_after:,} >= {params_before:,} params"
    if macs_before is not None and macs_after is not None and macs_after >= macs_before:
        return f"{macs_after:,} >= {macs_before:,} MACs"
    return None


def largest_smaller(f: ConvFacts) -> int:
    """The largest depth multiplier (up to the kernel's rank) at which the DS form has fewer
    params and fewer MACs than the conv; 0 when even multiplier 1 is not smaller. Both
    grow linearly in the multiplier, so the first one that is not smaller ends the search."""
    spec = f.spec()
    before, macs_before = _params(spec), _macs(spec, f.input_shape)
    best = 0
    for m in range(1, f.max_rank + 1):
        ds = f.separable(m)
        if _not_smaller(before, _params(ds), macs_before, _macs(ds, f.input_shape)):
            break
        best = m
    return best


def plan_layer_dict(d: Decision) -> dict[str, Any]:
    """One entry of a ``.plan.json``: enough to rebuild the structure without weights."""
    f = d.facts
    return {
        "name": f.name, "aliases": list(f.aliases), "in_channels": f.in_channels,
        "out_channels": f.out_channels, "kernel": list(f.kernel), "stride": list(f.stride),
        "padding": f.padding if isinstance(f.padding, str) else list(f.padding),
        "dilation": list(f.dilation), "padding_mode": f.padding_mode, "bias": f.bias,
        "depth_multiplier": d.rank,
    }


def plan_document(decisions: Sequence[Decision], source: str,
                  calibrated: frozenset[str] = frozenset(),
                  arch: dict[str, Any] | None = None,
                  prior: dict[str, Any] | None = None) -> dict[str, Any]:
    """The plan beside a converted state_dict: what to rebuild (multipliers), which layers
    were calibrated, and the ``--arch``/``--arch-kwargs`` that build the model. Converting
    a converted model (``prior``, the plan it was loaded with) composes: the earlier layers
    come first, then this run's, so applying the one plan to the bare architecture
    rebuilds both conversions."""
    doc: dict[str, Any] = {"plan_version": PLAN_VERSION, "tool": "dsconv", "source": source}
    arch = arch or (prior or {}).get("arch")
    if arch:
        doc["arch"] = arch
    doc["layers"] = [*(prior or {}).get("layers", []),
                     *({**plan_layer_dict(d), "calibrated": d.facts.name in calibrated}
                       for d in decisions if d.convert)]
    return doc


def validate_plan(doc: Any) -> list[dict[str, Any]]:
    """A plan's layers, checked before anything is built from it (a multiplier of a million
    would allocate before failing): raises ``ValueError`` with one line naming the field."""
    if not isinstance(doc, dict):
        raise ValueError(f"a plan is a JSON object, not {type(doc).__name__}")
    version = doc.get("plan_version")
    if isinstance(version, bool) or version != PLAN_VERSION:  # JSON's true is not 1
        newer = isinstance(version, int) and version > PLAN_VERSION
        raise ValueError(f"plan_version {short_name(repr(version))}: this dsconv reads plan "
                         f"version {PLAN_VERSION}"
                         + (" (a newer dsconv wrote it)" if newer else ""))
    arch = doc.get("arch")
    if arch is not None and not (isinstance(arch, dict) and isinstance(arch.get("arch"), str)
                                 and isinstance(arch.get("arch_kwargs", {}), dict)):
        raise ValueError('arch: expected {"arch": "module:callable", "arch_kwargs": {...}}')
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ValueError("layers: expected a list")
    seen: set[str] = set()
    for i, la in enumerate(layers):
        if not isinstance(la, dict) or not isinstance(la.get("name"), str) or not la["name"]:
            raise ValueError(f"layers[{i}]: expected an object with a layer name")
        if la["name"] in seen:
            raise ValueError(f"layers[{i}]: layer {short_name(la['name'])!r} appears twice")
        seen.add(la["name"])
        for key, hi in (("depth_multiplier", MAX_MULTIPLIER), ("in_channels", 1 << 24),
                        ("out_channels", 1 << 24)):
            v = la.get(key)
            if not _positive_int(v, hi):
                limit = f"1 to {hi}"
                raise ValueError(f"layers[{i}] ({short_name(la['name'])}).{key}: expected {limit}, "
                                 f"got {short_name(repr(v))}")
        k = la.get("kernel")
        if not (isinstance(k, list) and len(k) == 2 and all(map(_positive_int, k))):
            raise ValueError(f"layers[{i}] ({short_name(la['name'])}).kernel: expected "
                             f"[height, width], got {short_name(repr(k))}")
    return layers


def _positive_int(v: Any, hi: int = 1 << 24) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= hi


def plan_path(output: Path) -> Path:
    """Where a converted state_dict's plan goes: beside it, ``NAME.plan.json``."""
    return output.with_name(output.name + ".plan.json")


@dataclass(frozen=True)
class Budget:
    """Per-layer multipliers that fit a MACs budget, and notes on the layers held back."""

    ranks: dict[str, int]
    notes: dict[str, str]


def ranks_for_budget(facts: Sequence[ConvFacts], model_macs: int, target: int,
                     calls: dict[str, int] | None = None,
                     allow_larger: bool = False) -> Budget:
    """``--target-macs``: every eligible layer whose DS form is smaller than its conv starts
    at multiplier 1 (the others keep their conv); then, greedily, the step m -> m+1 with the
    most weight error removed per MAC added is taken while the model stays within ``target``
    MACs and (without ``allow_larger``) the layer's DS form stays smaller than its conv in
    params and MACs. The weight error at rank m is the Eckart-Young one, sqrt(1 - energy
    kept). Raises ``ValueError`` when the target cannot be met (the message says why)."""
    calls = calls or {}
    cap = {f.name: f.max_rank if allow_larger else largest_smaller(f) for f in facts}
    live = [f for f in facts if cap[f.name] >= 1]

    def macs(f: ConvFacts, m: int) -> int:
        return (_macs(f.separable(m), f.input_shape) or 0) * calls.get(f.name, 1)

    def err(f: ConvFacts, m: int) -> float:
        e = 1.0 if m >= f.max_rank or not f.energy_by_rank else f.energy_by_rank[m - 1]
        return math.sqrt(max(0.0, 1.0 - e))

    if not live:
        if model_macs <= target:
            return Budget({}, {})
        what = ("no Conv2d layer is eligible for conversion" if not facts else
                f"none of the {len(facts)} eligible layer(s) is smaller in the DS form, so "
                "each keeps its conv")
        raise ValueError(f"{what}; the model's {model_macs:,} MACs stay above the target "
                         f"{target:,}")
    before = sum((_macs(f.spec(), f.input_shape) or 0) * calls.get(f.name, 1) for f in live)
    total = model_macs - before + sum(macs(f, 1) for f in live)
    if total > target:
        raise ValueError(f"even at depth multiplier 1 everywhere the DS form is smaller "
                         f"({len(live)} layer(s)) the model has {total:,} MACs, above the "
                         f"target {target:,}")
    rank = {f.name: 1 for f in live}
    while True:
        best: tuple[float, ConvFacts] | None = None
        for f in live:
            m = rank[f.name]
            if m >= cap[f.name]:
                continue
            added = macs(f, m + 1) - macs(f, m)
            if added <= 0 or total + added > target:
                continue
            gain = (err(f, m) - err(f, m + 1)) / added
            if best is None or gain > best[0]:
                best = (gain, f)
        if best is None:
            break
        f = best[1]
        total += macs(f, rank[f.name] + 1) - macs(f, rank[f.name])
        rank[f.name] += 1
    notes = {f.name: f"--target-macs: held at depth multiplier {rank[f.name]}; at "
             f"{rank[f.name] + 1} the DS form would not be smaller than the conv"
             for f in live if rank[f.name] == cap[f.name] < f.max_rank
             and total + macs(f, rank[f.name] + 1) - macs(f, rank[f.name]) <= target}
    return Budget(rank, notes)
