"""``convert`` orchestration: load -> convert -> calibrate -> fidelity -> refuse -> write.

The command parses its options into a :class:`ConvertRequest` and calls :func:`convert`;
this module imports torch (through the backend) only inside its functions, so the command
line starts without it. Every step below is one function: a new option adds a field to
the request and, where it does work, one step.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, user_code
from ..options import MeasureOptions
from ..plan import PlanOptions, plan_path
from ..results import (
    ConvertChoices,
    ConvertExport,
    ConvertLayer,
    ConvertResult,
    ConvertSource,
    ConvertTiming,
    Distillation,
    Fidelity,
    LayerOutputError,
    Verification,
)
from . import Hooks

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..torch_backend.convert import Conversion
    from ..torch_backend.loading import Loaded

__all__ = ["LOW_AGREEMENT", "HIGH_OUTPUT_ERROR", "ConvertRequest", "convert", "environment",
           "fidelity_refusal", "fidelity_warnings"]

#: below this top-1 agreement (or above this relative output error) a conversion warns
LOW_AGREEMENT = 0.9
HIGH_OUTPUT_ERROR = 0.1
#: at this share of the inputs in one class, the original's agreement says little
MAJORITY = 0.9


@dataclass(frozen=True)
class ConvertRequest:
    """Everything ``dsconv convert`` was asked to do, checked for range by the command."""

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
    calibration_data: Path | None = None
    eval_data: Path | None = None
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


def convert(request: ConvertRequest, hooks: Hooks = Hooks()) -> ConvertResult:
    """Convert the model the request names; write it unless refused or a dry run."""
    data = _inputs(request)
    t0 = time.perf_counter()
    loaded = _load(request, hooks)
    t_load = round(time.perf_counter() - t0, 4)
    original = _keep_original(request, loaded, data)
    conv = _convert(request, loaded, data)
    fit = _fit(request, data, original, loaded.model, conv, hooks)
    result = _result(request, loaded, conv, fit, t_load)
    warnings = fidelity_warnings(result)
    for w in warnings:
        hooks.warn(w)
    result = dataclasses.replace(result, warnings=warnings or None)
    refusal = fidelity_refusal(result, request.min_agreement, request.max_output_error)
    result, artifact = _export(request, loaded, data, result, refusal)
    return _write(request, loaded, conv, fit, result, refusal, artifact)


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
    cal = load_inputs(r.calibration_data, "--calibration-data") if r.calibration_data else None
    held = load_inputs(r.eval_data, "--eval-data") if r.eval_data else None
    shape = parse_input_shape(r.input_shape) if r.input_shape else None
    first = cal if cal is not None else held
    if shape is not None or first is None:
        return _Inputs(cal, held, shape, None)
    return _Inputs(cal, held, (1, *first.shape[1:]),
                   "--calibration-data" if cal is not None else "--eval-data")


def _load(r: ConvertRequest, hooks: Hooks) -> Loaded:
    from ..atomic import check_writable
    from ..torch_backend.loading import load_model

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
                               p.min_channels, p.allow_larger, r.target_macs),
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
    from ..torch_backend.export import export_model
    from ..torch_backend.loading import forward_once

    if r.export is None or refusal or (result.totals.converted == 0
                                        and not r.write_unchanged):
        return result, None
    assert data.shape is not None
    with user_code(f"{r.model}: exporting the converted model"):
        x, _ = forward_once(loaded.model, data.shape, r.seed)
        artifact = export_model(loaded.model, x, r.export)
    return dataclasses.replace(result, export=ConvertExport(**artifact.info)), artifact.data


def _write(r: ConvertRequest, loaded: Loaded, conv: Conversion, fit: _Fit,
           result: ConvertResult, refusal: str | None,
           artifact: bytes | None = None) -> ConvertResult:
    """Write the model (its export, its plan) atomically, unless refused, a dry run, or
    unchanged."""
    from ..atomic import write_all_atomic
    from ..torch_backend.convert import serialise

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
    write_all_atomic(files, overwrite=r.force)
    written = [str(p) for p, _ in files]
    timing = dataclasses.replace(result.timing_s, write=round(time.perf_counter() - t0, 4))
    return dataclasses.replace(result, timing_s=timing, written=written,
                               output_note="wrote " + ", ".join(written))


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
