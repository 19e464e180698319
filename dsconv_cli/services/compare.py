"""``compare`` orchestration: layer cases and presets, analysed and measured."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..cases import LayerCase
from ..cost import DTYPE_BYTES, cost_sequence
from ..fmt import fmt_x
from ..options import MeasureOptions
from ..presets import Preset, full_conv
from ..results import (
    ComparedCase,
    Measurement,
    PresetFullConv,
    PresetResult,
    Side,
    Speedup,
)
from . import Hooks

__all__ = ["MeasuredRun", "analyse_preset", "explain", "measure_layer", "measure_layers",
           "measure_preset", "measure_preset_in"]


@dataclass(frozen=True)
class MeasuredRun:
    """Measured cases, the environment they ran in, and why the run is not a success
    (``"skipped"``: a case could not run; ``"interrupted"``: Ctrl-C) or ``None``."""

    cases: list[ComparedCase]
    environment: dict[str, Any]
    failed: str | None = None
    #: runtime -> why it failed (the others ran)
    runtime_errors: dict[str, str] = dataclasses.field(default_factory=dict)


def _session(opts: MeasureOptions, recalibrate: bool, hooks: Hooks) -> Any:
    from ..torch_backend.measure import open_session

    return open_session(opts, recalibrate, on_status=hooks.status, on_warn=hooks.warn)


def measure_layers(cases: list[LayerCase], opts: MeasureOptions, recalibrate: bool,
                   hooks: Hooks = Hooks()) -> MeasuredRun:
    """Measure every case; a case that cannot run is reported and the rest go on; Ctrl-C
    keeps the cases measured so far."""
    from ..torch_backend.measure import SkipCase

    session = _session(opts, recalibrate, hooks)
    done: list[ComparedCase] = []
    failed: str | None = None
    per = 2 if opts.dtype == "int8" else 1
    steps = sum(1 + per * (2 + len(getattr(c.candidate, "parts", ()))) for c in cases)
    try:
        with hooks.progress(steps, "measuring") as advance:
            for case in cases:
                try:
                    done.append(measure_layer(case, session, advance))
                except SkipCase as e:
                    hooks.warn(f"skipped {e}")
                    done.append(dataclasses.replace(case.to_result(), skipped=str(e)))
                    failed = "skipped"
    except KeyboardInterrupt:
        hooks.warn(f"interrupted: reporting the {len(done)} case(s) measured so far")
        failed = "interrupted"
    if session.errors and failed is None:
        failed = "runtime"
    return MeasuredRun(done, session.environment, failed, dict(session.errors))


def measure_layer(case: LayerCase, session: Any,
                  advance: Any = None) -> ComparedCase:
    """One layer case timed: the standard side, the candidate block and each of its parts."""
    from ..stats import compare_samples, sig
    from ..torch_backend.build import build
    from ..torch_backend.measure import (
        SkipCase,
        ab_modules,
        check_memory,
        is_oom,
        measure_all,
    )

    base = case.to_result()
    std, cand = case.costs()
    e = DTYPE_BYTES[session.options.dtype]
    need = 3 * (std.params + std.peak_activation_elems + cand.params
                + cand.peak_activation_elems) * e
    check_memory(need, session, case.name)
    targets = [("standard", case.standard, std), (cand.kind, case.candidate, cand)]
    targets += [(name, part, cand.part(name)) for name, part in
                getattr(case.candidate, "parts", ())]
    timed: dict[str, Any] = {}
    try:
        for label, spec, c in targets:
            if advance:
                advance(f"{case.name}: {label}")
            timed[label] = measure_all(partial(build, spec), c.input_shape, c, session)
    except (RuntimeError, MemoryError) as err:
        if is_oom(err):
            raise SkipCase(f"{case.name}: out of memory on {session.device.type} "
                           f"(estimate {need / 1e9:.2f} GB)") from None
        raise
    q = _int8(targets, session, advance, case.name)
    parts = ({name: dataclasses.replace(side.timed(*timed[name]), int8=q.get(name))
              for name, side in base.candidate.parts.items()}
             if base.candidate.parts else None)
    standard = dataclasses.replace(base.standard.timed(*timed["standard"]),
                                   int8=q.get("standard"))
    candidate = dataclasses.replace(base.candidate.timed(*timed[cand.kind]), parts=parts,
                                    int8=q.get(cand.kind))
    assert standard.measured and candidate.measured
    if advance:
        advance(f"{case.name}: A/B")
    cand_ab, std_ab = ab_modules(partial(build, case.candidate), cand.input_shape,
                                 candidate.measured.memory_format, partial(build, case.standard),
                                 std.input_shape, standard.measured.memory_format, session)
    ab = compare_samples(cand_ab.samples_ms or [], std_ab.samples_ms or [])
    speedup = Speedup(
        measured=sig(standard.measured.median_ms / candidate.measured.median_ms),
        theoretical=base.reduction.macs, memory_format=candidate.measured.memory_format,
    ).with_ab(ab)
    out = dataclasses.replace(base, standard=standard, candidate=candidate, speedup=speedup,
                              speedup_by_runtime=_by_runtime(standard, candidate))
    flag = implausible_speedup(out)
    if flag:
        out = dataclasses.replace(out, speedup=dataclasses.replace(speedup, flag=flag))
    warnings = _flags(out) + ([f"speedup: {flag}"] if flag else [])
    return dataclasses.replace(out, why=explain(out), warnings=warnings or None)


def _int8(targets: list[tuple[str, Any, Any]], session: Any, advance: Any,
          name: str) -> dict[str, Any]:
    """``--dtype int8``: each side and part as int8 against its fp32 self (ORT)."""
    from ..torch_backend.build import build
    from ..torch_backend.measure import int8_versus_fp32

    if session.fp32 is None:
        return {}
    out = {}
    for label, spec, c in targets:
        if advance:
            advance(f"{name}: {label} int8 vs fp32")
        out[label] = int8_versus_fp32(partial(build, spec), c.input_shape, session)
    return out


def _by_runtime(std: Side, cand: Side) -> dict[str, float] | None:
    """Standard / candidate median in each runtime both ran in, and between the fastest
    runtime of each side."""
    if not std.measured_by_runtime or not cand.measured_by_runtime:
        return None
    s = {str(m.runtime): m.median_ms for m in std.measured_by_runtime}
    c = {str(m.runtime): m.median_ms for m in cand.measured_by_runtime}
    out = {rt: round(s[rt] / c[rt], 4) for rt in s if rt in c and c[rt]}
    if std.fastest and cand.fastest:
        out["fastest"] = round(std.fastest["median_ms"] / cand.fastest["median_ms"], 4)
    return out


def _measured_sides(case: ComparedCase) -> list[tuple[str, Side]]:
    sides = [("standard", case.standard), (case.candidate.kind, case.candidate)]
    sides += list((case.candidate.parts or {}).items())
    return [(n, s) for n, s in sides if s.measured is not None]


def _flags(case: ComparedCase) -> list[str]:
    """Every measurement flag of the case, named."""
    return [f"{name}: {s.measured.flag}" for name, s in _measured_sides(case)
            if s.measured and s.measured.flag]


def _noise(m: Measurement) -> float:
    """Relative spread of a measurement's blocks (IQR over median)."""
    return m.iqr_ms / m.median_ms if m.median_ms else 0.0


def implausible_speedup(case: ComparedCase) -> str | None:
    """A measured speedup above the theoretical one by more than the measurement noise:
    fewer MACs cannot make a block faster than that, so the run was noisy (on a 2-core
    machine one 32 ms outlier once made a "190x")."""
    return speedup_flag(case.speedup, case.standard.measured, case.candidate.measured)


def speedup_flag(sp: Speedup | None, std: Measurement | None, cand: Measurement | None
                 ) -> str | None:
    """:func:`implausible_speedup` on its parts (``profile`` judges its speedups here too):
    the speedup of ``cand`` over ``std`` against the theoretical one."""
    if sp is None or sp.measured is None or not sp.theoretical or std is None or cand is None:
        return None
    value = headline(sp)
    noise = max(0.1, _noise(std) + _noise(cand))
    above = sp.ci95[0] > sp.theoretical if sp.ci95 else value > sp.theoretical * (1 + noise)
    if above and value > sp.theoretical * (1 + noise):
        return (f"measured {value:.2f}x is above the theoretical {sp.theoretical:.2f}x "
                f"by more than the noise ({100 * noise:.0f}%): implausible, likely a noisy "
                "run; re-run with a longer --min-time")
    return None


def headline(sp: Speedup) -> float:
    """The speedup to quote: the interleaved A/B estimate when there is one."""
    return sp.estimate if sp.estimate is not None else (sp.measured or 0.0)


def explain(case: ComparedCase) -> str:
    """One line on why the measured speedup differs from the MAC reduction: the part that
    took longest and why, the layout, the launch overhead; an implausible speedup (beyond
    the theoretical one by more than the noise) is said to be one, not explained."""
    sp = case.speedup
    assert sp is not None and sp.measured is not None
    std, cand = case.standard.measured, case.candidate.measured
    assert std is not None and cand is not None
    measured, theory = headline(sp), sp.theoretical or 0.0
    implausible = implausible_speedup(case)
    if implausible:
        return implausible
    reasons = []
    parts = [(n, s, s.measured) for n, s in (case.candidate.parts or {}).items()
             if s.measured is not None]
    if parts:
        name, slow, m = max(parts, key=lambda p: p[2].median_ms)
        share = m.median_ms / sum(pm.median_ms for _, _, pm in parts)
        why = (f"memory-bound ({slow.arithmetic_intensity:.1f} FLOP/B)" if m.bound == "memory"
               else f"compute-bound ({slow.arithmetic_intensity:.1f} FLOP/B)")
        reasons.append(f"the {name} conv takes {100 * share:.0f}% of the block's time: {why}, "
                       f"{m.gflops:.1f} GFLOP/s against {std.gflops:.1f} for the dense conv")
        by_fmt = slow.measured_by_format
        if by_fmt and len(by_fmt) > 1:
            worst = max(by_fmt.values(), key=lambda x: x.median_ms)
            ratio = worst.median_ms / m.median_ms
            if ratio > 1.2:
                reasons.append(f"layout: the {name} conv is {ratio:.1f}x faster in "
                               f"{m.memory_format} than in {worst.memory_format}")
        elif m.memory_format == "nchw":
            reasons.append("layout: try --memory-format both (depthwise convs are often much "
                           "faster channels_last)")
    if cand.median_ms < 0.05:
        reasons.append(f"launch overhead: the block takes only {cand.median_ms * 1e3:.0f} us, "
                       "so per-call overhead weighs as much as the arithmetic")
    if theory and abs(measured - theory) <= 0.2 * theory:
        head = f"measured {fmt_x(measured)} is close to the theoretical {fmt_x(theory)}"
        return head + ("; " + reasons[0] if reasons else "")
    head = f"measured {fmt_x(measured)} vs theoretical {fmt_x(theory)}"
    return head + (": " + "; ".join(reasons) if reasons else "")


# --------------------------------------------------------------------------- presets

def analyse_preset(preset: Preset, batch: int, dtype: str, per_layer: bool,
                   vs_full_conv: bool) -> PresetResult:
    d = preset.result(batch, dtype, per_layer)
    if vs_full_conv:
        fc = full_conv(preset).result(batch, dtype)
        d = dataclasses.replace(d, full_conv=PresetFullConv(fc.totals, fc.stages))
    return d


def measure_preset(preset: Preset, batch: int, dtype: str, per_layer: bool,
                   vs_full_conv: bool, opts: MeasureOptions, recalibrate: bool,
                   hooks: Hooks = Hooks()) -> tuple[PresetResult, dict[str, Any]]:
    """The preset case with the whole network and each stage timed. Returns the case and
    the environment."""
    session = _session(opts, recalibrate, hooks)
    with hooks.progress(1 + len(preset.stages), "measuring") as advance:
        d = measure_preset_in(preset, batch, dtype, session, advance, per_layer, vs_full_conv)
    return d, session.environment


def measure_preset_in(preset: Preset, batch: int, dtype: str, session: Any,
                      advance: Any = None, per_layer: bool = False,
                      vs_full_conv: bool = False) -> PresetResult:
    """Time the whole network and each stage in an open session; each stage gets its share
    of the summed stage times (stages are timed on their own)."""
    from ..torch_backend.build import build_preset, build_sequence
    from ..torch_backend.measure import check_memory, measure_all, measure_module

    d = analyse_preset(preset, batch, dtype, per_layer, vs_full_conv)
    total = preset.cost(batch, dtype)
    check_memory(3 * (total.params + total.peak_activation_elems) * DTYPE_BYTES[dtype],
                 session, preset.name)
    layer_costs = dict(total.parts)
    if advance:
        advance(f"{preset.name}: whole network")
    whole, _, by_rt = measure_all(partial(build_preset, preset), total.input_shape, total,
                                  session)
    stage_times: list[tuple[Measurement, dict[str, Measurement] | None]] = []
    for st in d.stages:
        layers = preset.stage_layers(st.stage)
        c = cost_sequence(layers, layer_costs[layers[0][0]].input_shape, DTYPE_BYTES[dtype])
        if advance:
            advance(f"{preset.name}: {st.stage}")
        stage_times.append(measure_module(partial(build_sequence, layers), c.input_shape,
                                          c, session))
    summed = sum(m.median_ms for m, _ in stage_times)
    stages = [dataclasses.replace(st, measured=m.with_share(m.median_ms / summed),
                                  measured_by_format=by_fmt or None)
              for st, (m, by_fmt) in zip(d.stages, stage_times, strict=True)]
    return dataclasses.replace(d, stages=stages, measured_by_runtime=by_rt or None,
                               measured=whole)
