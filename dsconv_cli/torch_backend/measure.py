"""Measure a comparison case on real layers: the standard side, the candidate block as a
whole and each of its parts, in one or more memory layouts, with roofline context."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from ..cases import LayerCase
from ..cost import DTYPE_BYTES, Cost, cost_sequence
from ..errors import BackendError
from ..presets import Preset
from ..specs import Spec
from .build import build, build_preset, build_sequence
from .timing import (
    Calibration,
    MeasureOptions,
    available_memory,
    check_dtype,
    environment,
    is_oom,
    load_calibration,
    prepare,
    resolve_device,
    roofline,
    time_call,
)

__all__ = ["Session", "SkipCase", "measure_layer_case", "measure_preset", "open_session",
           "verdict"]

Progress = Callable[[str], None]


class SkipCase(BackendError):
    """A case that cannot run here (too big for memory); the rest still runs. Exit 1."""


@dataclass
class Session:
    """Everything a run needs once: device, dtype, options, calibration, environment."""

    options: MeasureOptions
    device: torch.device
    dtype: torch.dtype
    calibration: Calibration
    environment: dict[str, Any]


def open_session(options: MeasureOptions, recalibrate: bool = False,
                 on_status: Progress | None = None) -> Session:
    """Check the options against this machine (``InputError`` -> exit 2) and calibrate."""
    from ..errors import InputError

    if options.threads is not None and options.threads <= 0:
        raise InputError(f"--threads must be >= 1, got {options.threads}")
    if options.min_time <= 0:
        raise InputError(f"--min-time must be > 0 seconds, got {options.min_time}")
    if options.warmup < 0:
        raise InputError(f"--warmup must be >= 0, got {options.warmup}")
    device = resolve_device(options.device)
    td = check_dtype(options.dtype, device)
    cal = load_calibration(device, options.dtype, options.threads, recalibrate, on_status)
    env = environment(device, options.dtype, options.threads)
    env["calibration"] = {"peak_gflops": cal.peak_gflops,
                          "bandwidth_gbps": [{"bytes": s, "copy": c, "read": r}
                                             for s, c, r in cal.bandwidth]}
    return Session(options, device, td, cal, env)


def measure_module(make: Callable[[], nn.Module], shape: tuple[int, ...], c: Cost,
                   s: Session) -> dict[str, Any]:
    """Time a freshly built module in every requested layout.

    Returns ``{"measured": best, "measured_by_format": {...}}`` (the latter only when more
    than one layout was measured)."""
    by_fmt: dict[str, dict[str, Any]] = {}
    for fmt in s.options.memory_formats:
        module, x = prepare(make(), shape, s.device, s.dtype, fmt)
        t = time_call(partial(module, x), s.device, min_time=s.options.min_time,
                      warmup=s.options.warmup, threads=s.options.threads, memory_format=fmt)
        by_fmt[fmt] = roofline(c.flops, c.bytes, t, s.calibration)
        by_fmt[fmt]["memory_format"] = fmt
        del module, x
    best = min(by_fmt.values(), key=lambda m: m["median_ms"])
    out: dict[str, Any] = {"measured": best}
    if len(by_fmt) > 1:
        out["measured_by_format"] = by_fmt
    return out


def check_memory(need: int, s: Session, what: str) -> None:
    free = available_memory(s.device)
    if need > 0.8 * free:
        raise SkipCase(f"{what} needs about {need / 1e9:.2f} GB on {s.device.type}; "
                       f"{free / 1e9:.2f} GB free")


def measure_layer_case(case: LayerCase, d: dict[str, Any], s: Session,
                       on_progress: Progress | None = None) -> dict[str, Any]:
    """Add measurements to the case dict ``d`` (from ``case.to_dict()``) and return it."""
    std, cand = case.costs()
    e = DTYPE_BYTES[s.options.dtype]
    need = 3 * (std.params + std.peak_activation_elems + cand.params
                + cand.peak_activation_elems) * e
    check_memory(need, s, case.name)
    targets: list[tuple[str, Spec, Cost, dict[str, Any]]] = [
        ("standard", case.standard, std, d["standard"]),
        (d["candidate"]["kind"], case.candidate, cand, d["candidate"]),
    ]
    for name, part in getattr(case.candidate, "parts", ()):
        targets.append((name, part, cand.part(name), d["candidate"]["parts"][name]))
    try:
        for label, spec, c, slot in targets:
            if on_progress:
                on_progress(f"{case.name}: {label}")
            slot.update(measure_module(partial(build, spec), c.input_shape, c, s))
    except (RuntimeError, MemoryError) as e_:
        if is_oom(e_):
            raise SkipCase(f"{case.name}: out of memory on {s.device.type} "
                           f"(estimate {need / 1e9:.2f} GB)") from None
        raise
    sm, cm = d["standard"]["measured"], d["candidate"]["measured"]
    d["speedup"] = {
        "measured": round(sm["median_ms"] / cm["median_ms"], 4),
        "theoretical": d["reduction"]["macs"],
        "memory_format": cm["memory_format"],
    }
    d["verdict"] = verdict(d)
    return d


def verdict(d: dict[str, Any]) -> str:
    """One line on why the measured speedup differs from the MAC reduction."""
    sp = d["speedup"]
    measured, theory = sp["measured"], sp["theoretical"] or 0.0
    parts = d["candidate"].get("parts", {})
    reasons = []
    dw = parts.get("depthwise")
    std_m = d["standard"]["measured"]
    if dw and "measured" in dw:
        m = dw["measured"]
        if m["bound"] == "memory" or m["gflops"] < 0.5 * std_m["gflops"]:
            reasons.append(
                f"the depthwise conv is memory-bound ({dw['arithmetic_intensity']:.1f} FLOP/B) "
                f"and runs at {m['gflops']:.1f} GFLOP/s against {std_m['gflops']:.1f} for the "
                f"dense conv")
        by_fmt = dw.get("measured_by_format")
        if by_fmt and len(by_fmt) > 1:
            slow = max(by_fmt.values(), key=lambda x: x["median_ms"])
            ratio = slow["median_ms"] / m["median_ms"]
            if ratio > 1.2:
                reasons.append(f"layout: the depthwise conv is {ratio:.1f}x faster in "
                               f"{m['memory_format']} than in {slow['memory_format']}")
        elif m["memory_format"] == "nchw":
            reasons.append("layout: try --memory-format both (depthwise convs are often much "
                           "faster channels_last)")
    cm = d["candidate"]["measured"]
    if cm["median_ms"] < 0.05:
        reasons.append(f"launch overhead: the block takes only {cm['median_ms'] * 1e3:.0f} us, "
                       "so per-call overhead weighs as much as the arithmetic")
    if theory and measured >= 0.8 * theory:
        head = f"measured {measured:.2f}x is close to the theoretical {theory:.2f}x"
        return head + ("; " + reasons[0] if reasons else "")
    head = f"measured {measured:.2f}x vs theoretical {theory:.2f}x"
    return head + (": " + "; ".join(reasons) if reasons else "")


def measure_preset(preset: Preset, d: dict[str, Any], s: Session,
                   on_progress: Progress | None = None) -> dict[str, Any]:
    """Time the whole network and each stage; add each stage's share of the time."""
    batch = d["model"]["batch"]
    total = preset.cost(batch, s.options.dtype)
    check_memory(3 * (total.params + total.peak_activation_elems) * DTYPE_BYTES[
        s.options.dtype], s, preset.name)
    if on_progress:
        on_progress(f"{preset.name}: whole network")
    d["measured"] = measure_module(partial(build_preset, preset), total.input_shape, total,
                                   s)["measured"]
    layer_costs = dict(total.parts)
    for st in d["stages"]:
        layers = preset.stage_layers(st["stage"])
        c = cost_sequence(layers, layer_costs[layers[0][0]].input_shape,
                          DTYPE_BYTES[s.options.dtype])
        if on_progress:
            on_progress(f"{preset.name}: {st['stage']}")
        st.update(measure_module(partial(build_sequence, layers), c.input_shape, c, s))
    times = sum(st["measured"]["median_ms"] for st in d["stages"])
    for st in d["stages"]:
        st["measured"]["share_time"] = round(st["measured"]["median_ms"] / times, 4)
    return d


def measure_model(model: nn.Module, input_shape: tuple[int, ...], s: Session,
                  convert: bool = False, plan: Any = None,
                  on_progress: Progress | None = None) -> dict[str, Any]:
    """Time a loaded model, and with ``convert`` its depthwise separable conversion too.

    Returns analytic numbers (engine, from a forward pass), ``measured`` for the model the
    budgets apply to (the converted one when converting) and, when converting, the
    original's measurement and the measured/theoretical speedup."""
    import copy

    from .convert import ConvertOptions, Loaded, convert_model, model_cost

    e = DTYPE_BYTES[s.options.dtype]
    before = model_cost(model, input_shape, e)
    check_memory(3 * (before.params + before.peak_activation_elems) * e, s, "model")

    def run(m: nn.Module, c: Cost, label: str) -> dict[str, Any]:
        if on_progress:
            on_progress(label)
        return measure_module(lambda: m, c.input_shape, c, s)["measured"]

    out: dict[str, Any] = {"analytic": {"params": before.params, "macs": before.macs,
                                        "memory_mb": None}}
    if not convert:
        out["measured"] = run(model, before, "model")
        return out
    converted = copy.deepcopy(model)
    decisions, rep = convert_model(Loaded(converted, "module", "profile"),
                                   ConvertOptions(plan, input_shape))
    after = model_cost(converted, input_shape, e)
    out["original"] = {"params": before.params, "macs": before.macs,
                       "measured": run(model, before, "original")}
    out["analytic"] = {"params": after.params, "macs": after.macs, "memory_mb": None}
    out["measured"] = run(converted, after, "converted")
    out["conversion"] = {"converted": rep["totals"]["converted"],
                         "layers": rep["totals"]["layers"],
                         "rel_output_diff": rep["verification"].get("rel_diff")}
    out["speedup"] = {
        "measured": round(out["original"]["measured"]["median_ms"]
                          / out["measured"]["median_ms"], 4),
        "theoretical": round(before.macs / after.macs, 4) if after.macs else None,
    }
    return out
