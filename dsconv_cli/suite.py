"""A profile config's cases made runnable (stdlib only): sweeps expanded, layers and
presets resolved, budgets merged over the defaults, ``--only`` applied.

Works on the validated config (:class:`dsconv_cli.config.Config`) without importing it:
pydantic and YAML stay in the config module.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Any

from .cases import LayerCase, expand_grid, parse_value, resolve_layer
from .errors import FieldError, InputError
from .gate import BUDGET_METRICS
from .presets import Preset, get_preset

__all__ = ["SOURCE_METRICS", "PlannedCase", "merged_budget", "plan_cases", "source_of"]

#: which budget metrics each kind of case can have (from the metric registry)
SOURCE_METRICS = {src: {k for k, m in BUDGET_METRICS.items() if src in m.sources}
                  for src in ("layer", "preset", "model", "model+convert")}


def source_of(c: Any) -> str:
    """``layer``, ``preset``, ``model`` or ``model+convert`` for a config case."""
    if c.layer is not None:
        return "layer"
    if c.preset is not None:
        return "preset"
    assert c.model is not None
    return "model+convert" if c.model.convert else "model"


def merged_budget(cfg: Any, c: Any) -> dict[str, float]:
    """Case budget over defaults, per key; a default applies only where its metric exists."""
    allowed = SOURCE_METRICS[source_of(c)]
    out = {k: v for k, v in cfg.defaults.budget.model_dump().items()
           if v is not None and k in allowed}
    out.update({k: v for k, v in c.budget.model_dump().items() if v is not None})
    if c.model is not None and c.model.vs is not None:
        from .gate import DEFAULT_MAX_SLOWDOWN

        out.setdefault("max_slowdown", DEFAULT_MAX_SLOWDOWN)
    else:
        out.pop("max_slowdown", None)
    return out


@dataclass(frozen=True)
class PlannedCase:
    """One runnable case after sweeps are expanded."""

    name: str
    index: int  # position in cfg.cases
    source: str
    budget: dict[str, float]
    layer: LayerCase | None = None
    preset: Preset | None = None
    model: Any = None  # the config's ModelCfg

    def analytic(self, batch: int, dtype: str) -> dict[str, Any]:
        if self.layer is not None:
            std, cand = self.layer.costs()
            return {"params": cand.params, "macs": cand.macs,
                    "memory_mb": round(cand.memory_bytes / 1e6, 4),
                    "standard_params": std.params, "standard_macs": std.macs,
                    "theoretical_speedup": round(std.macs / cand.macs, 4) if cand.macs else None}
        if self.preset is not None:
            c = self.preset.cost(batch, dtype)
            return {"params": c.params, "macs": c.macs,
                    "memory_mb": round(c.memory_bytes / 1e6, 4), "theoretical_speedup": None}
        return {"params": None, "macs": None, "memory_mb": None, "theoretical_speedup": None,
                "needs": "torch"}


def plan_cases(cfg: Any, only: list[str] | None = None) -> list[PlannedCase]:
    """Expand sweeps and resolve every case; ``only`` globs select cases by name. The case
    count comes from the list lengths before any case is built, so a sweep of 10^9 is
    refused in microseconds, not after filling memory."""
    total = 0
    for i, c in enumerate(cfg.cases):
        raw = c.layer.model_dump(exclude_none=True) if c.layer is not None else {}
        total += math.prod(len(v) if isinstance(v, list) else 1 for v in raw.values())
        if total > cfg.max_cases:
            raise cfg.error(f"{total:,} cases after expanding sweeps up to this one, more "
                            f"than max_cases ({cfg.max_cases:,})",
                            ("cases", i, "layer" if c.layer is not None else "name"),
                            hint="narrow the lists or raise max_cases")
    out: list[PlannedCase] = []
    for i, c in enumerate(cfg.cases):
        budget = merged_budget(cfg, c)
        src = source_of(c)
        if c.layer is not None:
            raw = c.layer.model_dump(by_alias=True, exclude_none=True)
            values: dict[str, Any] = {}
            try:
                for k, v in raw.items():
                    values[k] = ([parse_value(k, x) for x in v] if isinstance(v, list)
                                 else parse_value(k, v))
                values.setdefault("batch", cfg.batch)
                grid = expand_grid(c.name, values, cfg.max_cases)
                for name, vals in grid:
                    case = resolve_layer(vals, name, cfg.dtype)
                    out.append(PlannedCase(name, i, src, budget, layer=case))
            except FieldError as e:
                raise cfg.error(e.message, ("cases", i, "layer", e.field), e.hint) from None
            except InputError as e:  # the sweep cap
                raise cfg.error(e.message, ("cases", i, "layer"), e.hint) from None
        elif c.preset is not None:
            p = c.preset
            try:
                preset = get_preset(p.name, p.width, p.resolution, p.classes)
            except FieldError as e:
                field = "name" if e.field == "model" else e.field
                raise cfg.error(e.message, ("cases", i, "preset", field), e.hint) from None
            out.append(PlannedCase(c.name, i, src, budget, preset=preset))
        else:
            out.append(PlannedCase(c.name, i, src, budget, model=c.model))
    if len(out) > cfg.max_cases:
        raise cfg.error(f"{len(out)} cases after expanding sweeps, more than max_cases "
                        f"({cfg.max_cases})", ("cases",))
    if only:
        out = [pc for pc in out if any(fnmatch.fnmatchcase(pc.name, g) for g in only)]
        if not out:
            raise cfg.error(f"--only {' '.join(only)} matches no case", ())
    return out


