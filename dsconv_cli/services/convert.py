"""``convert`` orchestration: load -> convert -> calibrate -> fidelity -> refuse -> write.

The command parses its options into a :class:`ConvertRequest` and calls :func:`convert`;
this module imports torch (through the backend) only inside its functions, so the command
line starts without it. Every step below is one function: a new option adds a field to
the request and, where it does work, one step.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import InputError, user_code
from ..options import MeasureOptions
from ..plan import PlanOptions, plan_path
from ..results import (
    ConvertChoices,
    ConvertExport,
    ConvertInt8,
    ConvertLayer,
    ConvertResult,
    ConvertSource,
    ConvertTiming,
    Distillation,
    Fidelity,
    LatencyForm,
    LatencyLayer,
    LatencyReport,
    LatencyRound,
    LayerOutputError,
    OpTime,
    Verification,
)
from . import Hooks

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..plan import Decision
    from ..torch_backend.convert import Conversion
    from ..torch_backend.loading import Loaded

__all__ = ["LOW_AGREEMENT", "HIGH_OUTPUT_ERROR", "ConvertRequest", "Converted", "convert",
           "convert_kept", "environment", "export_converted", "fidelity_refusal",
           "fidelity_warnings"]

#: below this top-1 agreement (or above this relative output error) a conversion warns
LOW_AGREEMENT = 0.9
HIGH_OUTPUT_ERROR = 0.1
#: at this share of the inputs in one class, the original's agreement says little
MAJORITY = 0.9


@dataclass(frozen=True)
class ConvertRequest:
    """Everything ``dsconv convert`` was asked to do, checked for range by the command."""

    #: the model file (with ``module``: the name messages and the report give it)
    model: Path
    #: where to write (None only with ``dry_run``)
    output: Path | None = None
    plan: PlanOptions = PlanOptions()
    #: ``--input-shape`` as typed ("1,3,224,224"); else taken from the data, if any
    input_shape: str | None = None
    map_location: str = "cpu"
    trust_pickle: bool = False
    state_dict_key: str | None = None
    arch: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    #: a fraction of the model's MACs (<= 1) or a count
    target_macs: float | None = None
    seed: int = 0
    dry_run: bool = False
    force: bool = False
    write_unchanged: bool = False
    #: a file, or (the Python API) a tensor of inputs
    calibration_data: Path | torch.Tensor | None = None
    eval_data: Path | torch.Tensor | None = None
    refine_steps: int = 0
    #: train the converted layers end to end this many steps after the refit
    distill_steps: int = 0
    calibration_batch: int = 32
    min_agreement: float | None = None
    max_output_error: float | None = None
    #: ``--export``: also write a deployable artifact (.pt2 or .onnx), checked first
    export: Path | None = None
    #: ``--target-latency``: the converted model's latency as a fraction (0, 1) of the
    #: original's, measured in ``measure.runtimes[0]`` (issue 29)
    target_latency: float | None = None
    #: how the latency table and the end-to-end check are measured (device, threads,
    #: layout, runtime); used with ``target_latency`` only
    measure: MeasureOptions = MeasureOptions()
    #: re-measure the cached per-layer latency table
    recalibrate: bool = False
    # --- int8 and export shapes (issue 28)
    #: ``--quantize int8``: the ``--export`` .onnx quantized statically (ONNX Runtime,
    #: QDQ) after conversion, calibrated on ``calibration_data``
    quantize: str | None = None
    quantize_scheme: str = "per-channel"
    #: cross-layer equalisation of the converted depthwise/pointwise pairs first
    equalise: bool = False
    #: keep this many of the most int8-sensitive weighted nodes in fp32
    keep_fp32: int = 0
    #: ``--static-shape``: the export pinned to its input's batch size
    static_shape: bool = False
    #: a live ``nn.Module`` (the Python API) converted instead of loading ``model``: a deep
    #: copy of it, so the caller's module is left as it was
    module: nn.Module | None = None


@dataclass(frozen=True)
class _Inputs:
    """The data the request names, loaded, and the input shape in use."""

    cal: torch.Tensor | None
    held: torch.Tensor | None
    shape: tuple[int, ...] | None
    #: the option the shape was taken from, when not --input-shape
    from_data: str | None


@dataclass(frozen=True)
class _Fit:
    """What calibration and the fidelity check gave."""

    layers: list[ConvertLayer]
    verification: Verification
    calibrated: frozenset[str] = frozenset()
    fidelity: Fidelity | None = None
    fidelity_on_calibration: Fidelity | None = None
    seconds: float | None = None
    distillation: Distillation | None = None


@dataclass(frozen=True)
class Converted:
    """A conversion with what writing it again needs (the Python API's ``Conversion``):
    the converted model (``loaded.model``), the decisions, the calibrated layers and the
    input shape of the output check."""

    result: ConvertResult
    loaded: Loaded
    decisions: list[Decision]
    calibrated: frozenset[str]
    input_shape: tuple[int, ...] | None


def convert(request: ConvertRequest, hooks: Hooks = Hooks()) -> ConvertResult:
    """Convert the model the request names; write it unless refused or a dry run."""
    return convert_kept(request, hooks).result


def convert_kept(request: ConvertRequest, hooks: Hooks = Hooks()) -> Converted:
    """:func:`convert`, keeping the converted model and its plan."""
    given, request = request, _absolute(request)  # before user code (--arch may chdir)
    check_quantize(request)
    data = _inputs(request)
    t0 = time.perf_counter()
    loaded = _load(request, hooks)
    t_load = round(time.perf_counter() - t0, 4)
    original = _keep_original(request, loaded, data)
    lat = _latency(request, loaded, data, hooks) if request.target_latency is not None else None
    if lat is not None:
        request = dataclasses.replace(request, plan=lat.plan)
    conv = _convert(request, loaded, data)
    if lat is not None and lat.refusal:  # missed: nothing is written, so nothing to fit
        fit = _Fit(conv.layers, conv.verification)
    else:
        fit = _fit(request, data, original, loaded.model, conv, hooks)
    result = _result(request, loaded, conv, fit, t_load)
    if lat is not None:
        result = dataclasses.replace(result, latency=lat.report)
    warnings = fidelity_warnings(result)
    for w in warnings:
        hooks.warn(w)
    result = dataclasses.replace(result, warnings=warnings or None)
    refusal = (lat.refusal if lat is not None else None) or fidelity_refusal(
        result, request.min_agreement, request.max_output_error)
    if request.quantize:
        result, artifact, refusal = _quantize(request, loaded, original, data, result,
                                              refusal, hooks)
    else:
        result, artifact = _export(request, loaded, data, result, refusal)
    result = _write(request, loaded, conv, fit, result, refusal, artifact, given)
    return Converted(result, loaded, conv.decisions, fit.calibrated, data.shape)


def _absolute(r: ConvertRequest) -> ConvertRequest:
    """The request's outputs as absolute paths (against the folder dsconv started in):
    user code that calls ``os.chdir`` cannot move an output. The inputs (model, data) are
    read before any user code runs, and keep the names the user gave."""
    def ab(p: Path | None) -> Path | None:
        return None if p is None else p.absolute()

    return dataclasses.replace(r, output=ab(r.output), export=ab(r.export))


def environment(map_location: str) -> dict[str, Any]:
    """The report's environment: the device and the torch that converted."""
    import torch

    return {"device": map_location, "torch": torch.__version__}


# --------------------------------------------------------------------------- the steps

def _inputs(r: ConvertRequest) -> _Inputs:
    from ..torch_backend.calibrate import load_inputs
    from ..torch_backend.loading import parse_input_shape

    if r.export is not None and not (r.input_shape or r.calibration_data or r.eval_data):
        raise InputError(f"--export {r.export}: an export is made for one input shape: "
                         "give --input-shape (or --calibration-data)")
    cal = None if r.calibration_data is None else load_inputs(r.calibration_data,
                                                               "--calibration-data")
    held = None if r.eval_data is None else load_inputs(r.eval_data, "--eval-data")
    shape = parse_input_shape(r.input_shape) if r.input_shape else None
    first = cal if cal is not None else held
    if shape is not None or first is None:
        return _Inputs(cal, held, shape, None)
    return _Inputs(cal, held, (1, *first.shape[1:]),
                   "--calibration-data" if cal is not None else "--eval-data")


def _load(r: ConvertRequest, hooks: Hooks) -> Loaded:
    import copy

    from ..atomic import check_writable
    from ..torch_backend.loading import Loaded, load_model

    if r.module is not None:
        with user_code(f"{r.model}: copying the model (deepcopy)"):
            return Loaded(copy.deepcopy(r.module), "module", "in memory")
    with user_code(f"loading {r.model}"):
        loaded = load_model(r.model, map_location=r.map_location, trust_pickle=r.trust_pickle,
                            state_dict_key=r.state_dict_key, arch=r.arch,
                            arch_kwargs=r.arch_kwargs, warn=hooks.warn)
    for note in loaded.notes:
        hooks.status(f"note: {note}")
    if loaded.kind == "state_dict" and r.output is not None and not r.dry_run:
        check_writable(plan_path(r.output), "--output's plan", overwrite=r.force)
    return loaded


def _keep_original(r: ConvertRequest, loaded: Loaded, data: _Inputs) -> nn.Module | None:
    """The unconverted model, for calibration and the fidelity check (when there is data)."""
    import copy

    if data.cal is None and data.held is None:
        return None
    with user_code(f"{r.model}: copying the model (deepcopy)"):
        return copy.deepcopy(loaded.model)


def _convert(r: ConvertRequest, loaded: Loaded, data: _Inputs) -> Conversion:
    from ..torch_backend.convert import ConvertOptions, convert_model

    try:
        with user_code(f"{r.model}: the model's forward pass"):
            return convert_model(loaded, ConvertOptions(r.plan, data.shape, r.seed,
                                                        r.target_macs))
    except InputError as e:
        if data.from_data and e.message.startswith("--input-shape"):
            dims = tuple((data.shape or ())[1:])
            raise InputError(f"{data.from_data}: inputs of shape {dims} do not fit the model: "
                             f"{e.message.split(': ', 1)[1]}") from e
        raise


@dataclass(frozen=True)
class _Latency:
    """What ``--target-latency`` decided: the plan to convert with, its report, and why
    nothing may be written (the target missed), if so."""

    plan: PlanOptions
    report: LatencyReport
    refusal: str | None = None


#: choose -> convert -> measure rounds before a missed target is final
LATENCY_ROUNDS = 3


def _latency(r: ConvertRequest, loaded: Loaded, data: _Inputs, hooks: Hooks) -> _Latency:
    """``--target-latency F``: each eligible layer's conv and DS forms measured in the
    runtime (the cached table), the cheapest-error choice predicted to reach F, then the
    whole converted model timed against the original (interleaved A/B); while the measured
    ratio's interval is above F, the budget is tightened by what the prediction missed and
    the round repeated (at most :data:`LATENCY_ROUNDS`)."""
    import copy

    from ..latency import judge
    from ..torch_backend.convert import candidates
    from ..torch_backend.latency import layer_table, layout, time_model
    from ..torch_backend.measure import open_session

    assert r.target_latency is not None and data.shape is not None
    t0 = time.perf_counter()
    target, shape, model = r.target_latency, data.shape, loaded.model
    session = open_session(r.measure, False, on_status=hooks.status, on_warn=hooks.warn)
    with user_code(f"{r.model}: the model's forward pass"):
        found = candidates(model, r.plan, shape, r.seed)
    errors = _choice_errors(r, model, found, data, hooks)
    with hooks.progress(len(found), f"timing layers ({session.runtime.name})") as advance:
        table, stats = layer_table(found, session, errors, r.recalibrate,
                                   r.plan.allow_larger, hooks.warn, advance)
    times = [t.times for t in table]
    measured = {t.times.name for t in table}
    left_out = {f.name: ("not reached by the forward pass" if not calls else
                         "no DS form smaller than the conv: kept the conv")
                for f, calls in found if f.name not in measured}
    with user_code(f"{r.model}: the model's forward pass"):
        model_ms = time_model(copy.deepcopy(model), shape, session).median_ms
    rounds, plans = _latency_rounds(r, model, shape, session, times, left_out, model_ms)
    timed = [i for i, x in enumerate(rounds) if x.ci95 is not None]
    best = min(timed, key=lambda i: rounds[i].measured or math.inf) if timed else None
    last = rounds[-1]
    verdict: Literal["met", "met within its interval", "missed", "too noisy"] = (
        "missed" if last.ci95 is None else judge(last.ci95, target))  # type: ignore[assignment]
    pick: int | None = len(rounds) - 1
    refusal = None
    if verdict in ("missed", "too noisy"):
        pick = best
        refusal = _latency_miss(target, rounds, best, session.runtime.name, plans[-1][1],
                                verdict)
    plan, lp = plans[pick if pick is not None else -1]
    chosen = {c.name: c for c in lp.choices}
    report = LatencyReport(
        target=target, runtime=session.runtime.name, device=session.device.type,
        threads=r.measure.threads or session.environment["threads"],
        memory_format=layout(session), dtype=r.measure.dtype, model_ms=round(model_ms, 4),
        verdict=verdict, rounds=rounds, chosen_round=None if pick is None else pick + 1,
        layers=[_latency_row(t, chosen[t.times.name]) for t in table],
        cache={"path": stats.path, "cached": stats.cached, "measured": stats.measured,
               "not_cached": stats.not_cached},
        seconds=round(time.perf_counter() - t0, 3), notes=lp.notes,
        error="refit" if data.cal is not None else "weight")
    return _Latency(plan, report, refusal)


def _choice_errors(r: ConvertRequest, model: nn.Module, found: list[Any], data: _Inputs,
                   hooks: Hooks) -> Any:
    """The error the chooser weighs per layer and multiplier: with --calibration-data the
    layer's output error after the pointwise refit on its own inputs, else the weight error
    of the best rank-m factorisation."""
    from ..torch_backend.calibrate import refit_errors
    from ..torch_backend.latency import candidate_multipliers, weight_error

    if data.cal is None:
        return weight_error
    want = {f.name: candidate_multipliers(f, r.plan.allow_larger) for f, calls in found
            if calls and f.input_shape}
    hooks.status(f"refit error of {len(want)} layer(s) at each candidate multiplier")
    with user_code(f"{r.model}: the model's forward pass while calibrating"):
        errs = refit_errors(model, {n: ms for n, ms in want.items() if ms}, data.cal,
                            r.calibration_batch)
    return lambda f, m: errs.get((f.name, m), weight_error(f, m))


def _latency_rounds(r: ConvertRequest, model: nn.Module, shape: tuple[int, ...],
                    session: Any, times: list[Any], left_out: dict[str, str],
                    model_ms: float) -> tuple[list[LatencyRound], list[tuple[PlanOptions, Any]]]:
    """Choose for the budget, convert a copy, time it against the original (interleaved);
    while the interval is above the target, tighten the budget by what the prediction
    missed (:func:`dsconv_cli.latency.adjusted_target`) and go again."""
    import copy

    from ..latency import adjusted_target, choose, judge, latency_ratio
    from ..torch_backend.convert import ConvertOptions, convert_model
    from ..torch_backend.latency import model_samples
    from ..torch_backend.loading import Loaded as _Loaded

    assert r.target_latency is not None
    target = budget = r.target_latency
    rounds: list[LatencyRound] = []
    plans: list[tuple[PlanOptions, Any]] = []
    for _ in range(LATENCY_ROUNDS):
        lp = choose(times, model_ms, budget)
        plans.append((dataclasses.replace(
            r.plan, ranks=tuple(sorted(lp.ranks().items())),
            keep=tuple(sorted({**lp.kept(), **left_out}.items()))), lp))
        if not lp.ranks():
            rounds.append(LatencyRound(round(budget, 4), round(lp.predicted_ratio, 4)))
            break
        converted = copy.deepcopy(model)
        with user_code(f"{r.model}: the model's forward pass"):
            conv = convert_model(_Loaded(converted, "module", "latency round"),
                                 ConvertOptions(plans[-1][0], shape, r.seed))
            a, b = model_samples(partial(copy.deepcopy, model),
                                 partial(copy.deepcopy, converted), shape, session)
        ratio, ci, p = latency_ratio(b, a)
        original_ms = statistics.median(a)
        rounds.append(LatencyRound(
            round(budget, 4), round(lp.predicted_ratio, 4), round(ratio, 4),
            [round(ci[0], 4), round(ci[1], 4)], float(f"{p:.4g}"), round(original_ms, 4),
            round(statistics.median(b), 4), conv.totals.converted,
            conv.totals.model_macs_after))
        if judge(ci, target) != "missed" or not lp.met:
            break
        model_ms = original_ms  # the same conditions as the converted model's time
        budget = adjusted_target(target, lp.predicted_ratio, ratio, budget)
        if budget <= 0:
            break
    return rounds, plans


def _latency_row(t: Any, choice: Any) -> LatencyLayer:
    la = t.times

    def form(m: int | None) -> LatencyForm:
        timed = la.conv if m is None else la.ds[m]
        lo, hi = timed.ci95
        return LatencyForm(m, round(timed.median_ms, 5), [round(lo, 5), round(hi, 5)],
                           None if m is None else la.faster(m),
                           None if m is None else round(la.errors[m], 5))

    return LatencyLayer(la.name, list(t.input_shape), la.calls, form(None),
                        [form(m) for m in sorted(la.ds)], choice.multiplier,
                        choice.reason, t.cached, t.problem)


def _latency_miss(target: float, rounds: list[LatencyRound], best: int | None, runtime: str,
                  lp: Any, verdict: str) -> str:
    if verdict == "too noisy":
        r = rounds[-1]
        assert r.ci95 is not None
        return (f"--target-latency {target}: the end-to-end check is too noisy to verify "
                f"anything (latency ratio {r.measured:.3f}, 95% interval [{r.ci95[0]:.3f}, "
                f"{r.ci95[1]:.3f}]): is the machine busy? Re-run when it is quieter")
    if best is None:
        return (f"--target-latency {target}: no layer's DS form is measurably faster than "
                f"its conv in {runtime}; the model would stay at its own latency")
    b = rounds[best]
    assert b.ci95 is not None
    why = f" ({lp.notes[0]})" if lp.notes else ""
    return (f"--target-latency {target}: missed after {len(rounds)} round(s); the best "
            f"measured latency ratio {b.measured:.3f} [{b.ci95[0]:.3f}, {b.ci95[1]:.3f}] "
            f"(round {best + 1}) is above it{why}")


def _fit(r: ConvertRequest, data: _Inputs, original: nn.Module | None, model: nn.Module,
         conv: Conversion, hooks: Hooks) -> _Fit:
    """Refit the converted layers on --calibration-data, then measure fidelity."""
    from ..torch_backend.calibrate import fidelity, refit
    from ..torch_backend.convert import output_check

    fit = _Fit(conv.layers, conv.verification)
    if original is None:
        return fit
    t0 = time.perf_counter()
    names = [d.facts.name for d in conv.decisions if d.convert]
    batch = r.calibration_batch
    if data.cal is not None and names:
        with user_code(f"{r.model}: the model's forward pass while calibrating"):
            with hooks.progress(len(names), "calibrating") as advance:
                errs = refit(original, model, names, data.cal, batch, advance, r.refine_steps)
        fit = dataclasses.replace(fit, calibrated=frozenset(errs), layers=[
            dataclasses.replace(la, output_error=LayerOutputError(**errs[la.name]))
            if la.name in errs else la for la in conv.layers])
        if r.distill_steps:
            fit = _distill(r, data.cal, original, model, names, fit, hooks)
        if data.shape is not None:
            with user_code(f"{r.model}: the model's forward pass checking the output"):
                fit = dataclasses.replace(fit, verification=output_check(
                    original, model, data.shape, r.seed))
    with user_code(f"{r.model}: the model's forward pass measuring fidelity"):
        on_cal = None
        if data.held is not None:
            fid = fidelity(original, model, data.held, "eval", batch)
            if data.cal is not None:
                on_cal = fidelity(original, model, data.cal, "calibration", batch)
        else:
            assert data.cal is not None
            fid = fidelity(original, model, data.cal, "calibration", batch)
    return dataclasses.replace(fit, fidelity=fid, fidelity_on_calibration=on_cal,
                               seconds=round(time.perf_counter() - t0, 4))


def _distill(r: ConvertRequest, cal: torch.Tensor, original: nn.Module, model: nn.Module,
             names: list[str], fit: _Fit, hooks: Hooks) -> _Fit:
    """--distill-steps: the converted layers trained end to end on --calibration-data."""
    from ..torch_backend.calibrate import distill

    with user_code(f"{r.model}: the model's forward pass while distilling"):
        with hooks.progress(r.distill_steps, "distilling") as advance:
            d = distill(original, model, names, cal, r.distill_steps, r.calibration_batch,
                        seed=r.seed, advance=advance)
    return dataclasses.replace(fit, distillation=Distillation(**d))


def _result(r: ConvertRequest, loaded: Loaded, conv: Conversion, fit: _Fit,
            t_load: float) -> ConvertResult:
    p = r.plan
    return ConvertResult(
        name=str(r.model), source=ConvertSource(str(r.model), loaded.kind),
        options=ConvertChoices(p.init, p.depth_multiplier, p.energy, p.max_error,
                               p.min_channels, p.allow_larger, r.target_macs,
                               r.target_latency),
        layers=fit.layers, totals=conv.totals, verification=fit.verification,
        timing_s=ConvertTiming(conv.convert_s, conv.verify_s, t_load, fit.seconds,
                               distill=fit.distillation.seconds if fit.distillation else None),
        fidelity=fit.fidelity, fidelity_on_calibration=fit.fidelity_on_calibration,
        distillation=fit.distillation)


def _export(r: ConvertRequest, loaded: Loaded, data: _Inputs, result: ConvertResult,
            refusal: str | None) -> tuple[ConvertResult, bytes | None]:
    """``--export``: the converted model exported and checked against itself on the
    verification input (a dry run too); a failure raises (exit 1) before anything is
    written. Nothing to write (refused, no layer converted): no export."""
    if r.export is None or refusal or (result.totals.converted == 0
                                        and not r.write_unchanged):
        return result, None
    assert data.shape is not None
    info, artifact = export_converted(loaded.model, data.shape, r.seed, r.export, str(r.model),
                                      dynamic=not r.static_shape)
    return dataclasses.replace(result, export=info), artifact


def export_converted(model: nn.Module, input_shape: tuple[int, ...], seed: int, path: Path,
                     label: str, dynamic: bool = True) -> tuple[ConvertExport, bytes]:
    """The converted model exported for ``input_shape`` in the format ``path``'s suffix
    picks, checked against the model on the seeded input first: its record and bytes."""
    from ..torch_backend.export import export_model
    from ..torch_backend.loading import forward_once

    with user_code(f"{label}: exporting the converted model"):
        x, _ = forward_once(model, input_shape, seed)
        artifact = export_model(model, x, path, dynamic=dynamic)
    return ConvertExport(**artifact.info), artifact.data


def _write(r: ConvertRequest, loaded: Loaded, conv: Conversion, fit: _Fit,
           result: ConvertResult, refusal: str | None,
           artifact: bytes | None = None, given: ConvertRequest | None = None
           ) -> ConvertResult:
    """Write the model (its export, its plan) atomically, unless refused, a dry run, or
    unchanged; "wrote" only once what is on disk was read back (``check_written``).
    ``given``: the request as given, whose paths the note names."""
    from ..atomic import write_all_atomic
    from ..torch_backend.convert import serialise
    from ..torch_backend.loading import check_written

    if refusal:
        return dataclasses.replace(result, output_note=f"nothing written: {refusal}",
                                   refusal=refusal)
    if r.dry_run:
        return dataclasses.replace(result, output_note="dry run: nothing written")
    if result.totals.converted == 0 and not r.write_unchanged:
        return dataclasses.replace(result, output_note="no layer converted: nothing written "
                                   "(--write-unchanged writes it)")
    assert r.output is not None
    t0 = time.perf_counter()
    arch_doc = {"arch": r.arch, "arch_kwargs": r.arch_kwargs} if r.arch else None
    files = serialise(loaded, conv.decisions, r.output, fit.calibrated, arch_doc)
    if artifact is not None and r.export is not None:  # the plan stays last
        files.insert(1, (r.export, artifact))
    check_written(files, loaded.model, before=True)  # user code may have replaced torch.save
    write_all_atomic(files, overwrite=r.force)
    check_written(files, loaded.model)
    shown = _as_given(r, given or r)
    written = [shown.get(p, str(p)) for p, _ in files]
    timing = dataclasses.replace(result.timing_s, write=round(time.perf_counter() - t0, 4))
    return dataclasses.replace(result, timing_s=timing, written=written,
                               output_note="wrote " + ", ".join(written))


def _as_given(r: ConvertRequest, given: ConvertRequest) -> dict[Path, str]:
    """Each absolute output path -> the path as the user gave it (what notes show)."""
    out = {p: str(g) for p, g in ((r.output, given.output), (r.export, given.export))
           if p is not None and g is not None}
    if r.output is not None and given.output is not None:
        out[plan_path(r.output)] = str(plan_path(given.output))
    return out


# --------------------------------------------------------------------------- int8

def check_quantize(r: ConvertRequest) -> None:
    """``--quantize``: int8 only, into an ``--export`` .onnx, calibrated on
    ``--calibration-data``, with ONNX Runtime installed. Exit 2 before any work."""
    import importlib.util

    from ..options import QUANTIZE_SCHEMES

    if r.quantize is None:
        if r.equalise or r.keep_fp32:
            raise InputError(f"{'--equalise' if r.equalise else '--keep-fp32'} applies "
                             "with --quantize int8")
        return
    if r.quantize != "int8":
        raise InputError(f"--quantize {r.quantize!r}: only int8")
    if r.export is None or r.export.suffix.lower() != ".onnx":
        what = "a .pt2 export" if r.export is not None else "no --export"
        raise InputError(f"--quantize int8 quantizes an ONNX export (ONNX Runtime): give "
                         f"--export MODEL.onnx, not {what}")
    if r.calibration_data is None:
        raise InputError("--quantize int8 calibrates the activation ranges on real inputs: "
                         "give --calibration-data")
    if r.quantize_scheme not in QUANTIZE_SCHEMES:
        raise InputError(f"--quantize-scheme {r.quantize_scheme!r}: choose from "
                         f"{', '.join(QUANTIZE_SCHEMES)}")
    if not 0 <= r.keep_fp32 <= 10_000:
        raise InputError(f"--keep-fp32 must be 0 to 10000, got {r.keep_fp32}")
    if importlib.util.find_spec("onnxruntime") is None:
        raise InputError("--quantize int8 needs ONNX Runtime: pip install 'dsconv[onnx]'")


def _quantize(r: ConvertRequest, loaded: Loaded, original: nn.Module | None, data: _Inputs,
              result: ConvertResult, refusal: str | None, hooks: Hooks
              ) -> tuple[ConvertResult, bytes | None, str | None]:
    """``--quantize int8``: the converted model exported to ONNX, quantized, checked
    against the converted fp32 model at two batch sizes (one with --static-shape); its
    fidelity against the original fp32 model on --eval-data (else the calibration
    inputs), gated like the fp32 conversion; the sizes of the original fp32, converted
    fp32 and converted int8 graphs, and their latencies in ONNX Runtime, interleaved."""
    import copy

    from ..torch_backend.calibrate import fidelity
    from ..torch_backend.export import export_model, export_onnx
    from ..torch_backend.measure import int8_why, ort_latencies
    from ..torch_backend.quantize import OrtModule, equalise, quantize, ran_ops, sensitivity

    if refusal or (result.totals.converted == 0 and not r.write_unchanged):
        return result, None, refusal
    assert data.shape is not None and data.cal is not None and original is not None
    assert r.export is not None
    cal = data.cal
    model = loaded.model
    pairs = 0
    if r.equalise:
        model = copy.deepcopy(loaded.model)
        pairs = equalise(model)
    keep: list[tuple[str, float]] = []

    def make(fp32: bytes) -> Any:
        nonlocal keep
        if r.keep_fp32:
            hooks.status(f"int8: the int8 error of each weighted node alone ({r.model})")
            keep = sensitivity(fp32, cal, r.quantize_scheme)[:r.keep_fp32]
        return quantize(fp32, cal, r.quantize_scheme, keep_fp32=[n for n, _ in keep],
                        batch=r.calibration_batch)

    with user_code(f"{r.model}: exporting and quantizing the converted model"):
        held = data.held if data.held is not None else data.cal
        # checked on real inputs (random ones fall outside the calibrated ranges)
        n = data.shape[0]
        x = held[:n].clone().float()
        artifact = export_model(model, x, r.export, dynamic=not r.static_shape, int8=make,
                                x2=held[n:2 * n + 2].clone().float() if len(held) > n else None)
        q = OrtModule(artifact.data, r.measure.threads)
        batch = r.calibration_batch if artifact.info["dynamic_dims"] else n
        fid = fidelity(original, q, held, "eval" if data.held is not None else "calibration",
                       batch)
        x = x.contiguous()
        graphs = {"original_fp32": export_onnx(original, x)[0],
                  "converted_fp32": export_onnx(model, x)[0],
                  "converted_int8": artifact.data}
        hooks.status("int8: timing the original fp32, converted fp32 and int8 graphs in "
                     "ONNX Runtime")
        latency = ort_latencies(graphs, x, r.measure)
        ops = [OpTime(**o) for o in ran_ops(artifact.data, x.detach().cpu().numpy(),
                                            r.measure.threads)]
    info = dict(artifact.info)
    int8_info = info.pop("int8")
    q8 = ConvertInt8(
        scheme=r.quantize_scheme, format=int8_info["format"],
        calibration_inputs=int8_info["calibration_inputs"], equalised_pairs=pairs,
        fp32_nodes=[{"node": n, "rel_error_alone": round(e, 6)} for n, e in keep],
        rel_error_vs_converted=int8_info["rel_error"], fidelity=fid,
        fidelity_fp32=result.fidelity,
        bytes={k: len(v) for k, v in graphs.items()}, **latency, ops=ops)
    verdict = q8.speedups["converted_int8_vs_converted_fp32"].verdict
    if verdict != "faster":
        q8 = dataclasses.replace(q8, why=int8_why(ops, verdict))
    result = dataclasses.replace(result, export=ConvertExport(**info, int8=int8_info),
                                 int8=q8)
    gated = fidelity_refusal(dataclasses.replace(result, fidelity=fid), r.min_agreement,
                             r.max_output_error)
    if gated:
        return result, None, f"the int8 model: {gated}"
    return result, artifact.data, None


# --------------------------------------------------------------------------- the gates

def _not_finite(what: str, value: float | None, option: str) -> str:
    return f"{what} is {value} (not finite): {option} cannot pass"


def fidelity_refusal(result: ConvertResult, min_agreement: float | None,
                     max_output_error: float | None) -> str | None:
    """Why the conversion must not be written (--min-agreement, --max-output-error). A
    figure that is NaN or infinite never passes."""
    fid = result.fidelity
    if min_agreement is not None and fid is not None:
        agreement = fid.agreement
        if agreement is None:
            return "--min-agreement: the model's output is not (N, classes) logits"
        if not math.isfinite(agreement):
            return _not_finite(f"top-1 agreement on the {fid.on} inputs", agreement,
                               "--min-agreement")
        if agreement < min_agreement:
            return (f"top-1 agreement {agreement:.4f} on the {fid.on} inputs is below "
                    f"--min-agreement {min_agreement}")
    if max_output_error is not None:
        if fid is None and not result.verification.verified:
            return "--max-output-error needs --input-shape, --calibration-data or --eval-data"
        err = fid.rel_output_error if fid is not None else result.verification.rel_diff
        if err is None or not math.isfinite(err):
            return _not_finite("the relative output error", err, "--max-output-error")
        if err > max_output_error:
            return f"relative output error {err:.4f} is above --max-output-error {max_output_error}"
    return None


def fidelity_warnings(result: ConvertResult) -> list[str]:
    """What may make the converted model quietly differ from the original."""
    out = []
    low = [la.name for la in result.layers if la.status == "converted"
           and la.energy is not None and la.energy < 0.5 and la.output_error is None]
    if low:
        out.append(f"{len(low)} converted layer(s) keep less than half their spectral energy "
                   f"({', '.join(low[:3])}{' ...' if len(low) > 3 else ''}): the output will "
                   "change; --calibration-data refits them")
    fid = result.fidelity
    if fid is None:
        rel = result.verification.rel_diff
        if rel is not None and not rel <= HIGH_OUTPUT_ERROR:
            out.append(f"the output check's relative error is {_high(rel)}")
        return out
    return out + _eval_warnings(fid)


def _eval_warnings(fid: Fidelity) -> list[str]:
    out = []
    on = f"on the {fid.on} inputs (n={fid.n})"
    if fid.agreement_meaningful is False:
        out.append(f"top-1 agreement {on} is not meaningful: the original model puts "
                   f"{100 * (fid.majority_class_share or 0):.0f}% of them in one class")
    elif fid.agreement is not None and fid.agreement < LOW_AGREEMENT:
        out.append(f"top-1 agreement {on} is {100 * fid.agreement:.1f}% (< "
                   f"{100 * LOW_AGREEMENT:.0f}%): the converted model often predicts another "
                   "class")
    err = fid.rel_output_error
    if err is None or not err <= HIGH_OUTPUT_ERROR:  # NaN included
        out.append(f"the relative output error {on} is {_high(err)}")
    return out


def _high(err: float | None) -> str:
    if err is None or not math.isfinite(err):
        return f"{err} (not finite: the converted model's output holds NaN or inf)"
    return f"{err:.3f} (> {HIGH_OUTPUT_ERROR})"
