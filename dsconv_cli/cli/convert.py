"""``dsconv convert``: replace eligible Conv2d layers of a saved model with depthwise
separable pairs initialised from the original weights, verify, and write atomically."""

from __future__ import annotations

import copy
import os
import time
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ..errors import InputError
from ..render import OutputFormat, convert_view
from ..results import envelope
from .common import (
    check_distinct,
    check_format,
    check_reports,
    emit,
    fail,
    finite,
    handle_errors,
    progress,
    status,
    warn,
)
from .options import (
    PICK,
    ArchKwargsOpt,
    ArchOpt,
    ExcludeOpt,
    FormatOpt,
    IncludeOpt,
    InputShapeOpt,
    JsonOpt,
    MapLocationOpt,
    MinChannelsOpt,
    ReportOpt,
    StateDictKeyOpt,
    TrustPickleOpt,
    parse_arch_kwargs,
)

if TYPE_CHECKING:
    from ..plan import PlanOptions

WRITE = "Writing"
FIT = "Keeping the model working (calibration, fidelity)"


class Init(str, Enum):
    svd = "svd"
    random = "random"


@handle_errors
def convert(
    model: Annotated[Path, typer.Argument(help="A saved model: a state_dict or checkpoint "
                                          "(with --arch), or a pickled nn.Module "
                                          "(with --trust-pickle).", show_default=False)],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Where to write the converted model.", rich_help_panel=WRITE)
    ] = None,
    input_shape: InputShapeOpt = None,
    map_location: MapLocationOpt = "cpu",
    trust_pickle: TrustPickleOpt = False,
    state_dict_key: StateDictKeyOpt = None,
    arch: ArchOpt = None,
    arch_kwargs: ArchKwargsOpt = None,
    min_channels: MinChannelsOpt = 32,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    depth_multiplier: Annotated[Optional[int], typer.Option(
        help="Depthwise filters per input channel (the rank of the factorisation; default "
        "1).", rich_help_panel=PICK, show_default=False)] = None,
    target_macs: Annotated[Optional[float], typer.Option(
        "--target-macs", help="Fit the model in this many MACs: a fraction of its MACs "
        "(<= 1) or a count. Multipliers are raised per layer where they remove the most "
        "error per MAC added.", rich_help_panel=PICK)] = None,
    init: Annotated[Init, typer.Option(
        help="svd: best rank-m factorisation of the original weights; random: fresh "
        "weights (needs retraining).", rich_help_panel=PICK)] = Init.svd,
    energy: Annotated[Optional[float], typer.Option(
        help="Pick per layer the smallest multiplier keeping this fraction of the spectral "
        "energy (0-1].", rich_help_panel=PICK)] = None,
    max_error: Annotated[Optional[float], typer.Option(
        help="Skip layers whose relative weight error would exceed this.",
        rich_help_panel=PICK)] = None,
    allow_larger: Annotated[bool, typer.Option(
        "--allow-larger", help="Convert layers even when the DS form is not smaller.",
        rich_help_panel=PICK)] = False,
    seed: Annotated[int, typer.Option(help="Seed of the verification input and of "
                                      "--init random.")] = 0,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Report only; write nothing.", rich_help_panel=WRITE)] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Overwrite an existing output.", rich_help_panel=WRITE)] = False,
    calibration_data: Annotated[Optional[Path], typer.Option(
        "--calibration-data", help="N unlabelled inputs (a torch.save'd tensor or .npy): "
        "refit each converted layer on them, in forward order, by least squares.",
        rich_help_panel=FIT, dir_okay=False)] = None,
    eval_data: Annotated[Optional[Path], typer.Option(
        "--eval-data", help="Held-out inputs for the fidelity check (top-1 agreement, "
        "output error), reported apart from the calibration inputs.", rich_help_panel=FIT,
        dir_okay=False)] = None,
    refine_steps: Annotated[int, typer.Option(
        "--refine-steps", help="After the pointwise refit, alternate this many depthwise and "
        "pointwise refits per layer.", rich_help_panel=FIT)] = 0,
    calibration_batch: Annotated[int, typer.Option(
        "--calibration-batch", help="Inputs per forward while calibrating (bounds memory).",
        rich_help_panel=FIT)] = 32,
    min_agreement: Annotated[Optional[float], typer.Option(
        "--min-agreement", help="Top-1 agreement with the original below this: exit 1, "
        "nothing written.", rich_help_panel=FIT)] = None,
    max_output_error: Annotated[Optional[float], typer.Option(
        "--max-output-error", help="Relative output error above this: exit 1, nothing "
        "written.", rich_help_panel=FIT)] = None,
    write_unchanged: Annotated[bool, typer.Option(
        "--write-unchanged", help="Write the output even when no layer was converted.",
        rich_help_panel=WRITE)] = False,
    fmt: FormatOpt = OutputFormat.table,
    as_json: JsonOpt = False,
    report: ReportOpt = None,
) -> None:
    """Replace a saved model's Conv2d layers with depthwise separable pairs.

    Eligible layers become depthwise + pointwise pairs initialised from the original
    weights (per-channel SVD), verified and written atomically, with a per-layer report.
    """
    check_format(fmt, as_json)
    reports = check_reports(report)
    finite("--min-agreement", min_agreement, hi=1, lo_open=False)
    finite("--max-output-error", max_output_error, lo_open=False)
    if not 1 <= calibration_batch <= 1 << 16:
        raise InputError(f"--calibration-batch must be 1 to 65536, got {calibration_batch}")
    if not 0 <= refine_steps <= 100:
        raise InputError(f"--refine-steps must be 0 to 100, got {refine_steps}")
    if refine_steps and calibration_data is None:
        raise InputError("--refine-steps refits on data: give --calibration-data")
    if min_agreement is not None and calibration_data is None and eval_data is None:
        raise InputError("--min-agreement needs inputs to agree on: --calibration-data or "
                         "--eval-data")
    if target_macs is not None:
        finite("--target-macs", target_macs, hi=1e18)
        if energy is not None or depth_multiplier is not None:
            raise InputError("give --target-macs, --energy or --depth-multiplier, one of them")
        if init is not Init.svd:
            raise InputError("--target-macs needs --init svd (it reads the weights' spectrum)")
    plan = _plan_options(min_channels, include, exclude,
                         1 if depth_multiplier is None else depth_multiplier, init, energy,
                         max_error, allow_larger)
    kwargs = parse_arch_kwargs(arch_kwargs)
    _check_output(model, output, dry_run, force, reports)

    from ..atomic import check_writable, write_all_atomic
    from ..plan import plan_path
    from ..torch_backend.calibrate import fidelity, load_inputs, refit
    from ..torch_backend.convert import (
        ConvertOptions,
        convert_model,
        output_check,
        serialise,
    )
    from ..torch_backend.loading import load_model, parse_input_shape

    cal = load_inputs(calibration_data, "--calibration-data") if calibration_data else None
    held = load_inputs(eval_data, "--eval-data") if eval_data else None
    shape = parse_input_shape(input_shape) if input_shape else None
    from_data = None
    if shape is None and (cal is not None or held is not None):
        first = cal if cal is not None else held
        assert first is not None
        shape = (1, *first.shape[1:])
        from_data = "--calibration-data" if cal is not None else "--eval-data"
    t0 = time.perf_counter()
    loaded = load_model(model, map_location=map_location, trust_pickle=trust_pickle,
                        state_dict_key=state_dict_key, arch=arch, arch_kwargs=kwargs, warn=warn)
    t_load = time.perf_counter() - t0
    for note in loaded.notes:
        status(f"note: {note}")
    if loaded.kind == "state_dict" and output is not None and not dry_run:
        check_writable(plan_path(output), "--output's plan", overwrite=force)
    original = copy.deepcopy(loaded.model) if cal is not None or held is not None else None
    try:
        decisions, rep = convert_model(loaded, ConvertOptions(plan, shape, seed, target_macs))
    except InputError as e:
        if from_data and e.message.startswith("--input-shape"):
            dims = tuple((shape or ())[1:])
            raise InputError(f"{from_data}: inputs of shape {dims} do not fit the model: "
                             f"{e.message.split(': ', 1)[1]}") from e
        raise
    rep["timing_s"]["load"] = round(t_load, 4)
    converted = rep["totals"]["converted"]
    names = [d.facts.name for d in decisions if d.convert]
    calibrated: frozenset[str] = frozenset()
    if original is not None:
        t2 = time.perf_counter()
        if cal is not None and names:
            with progress(len(names), "calibrating") as advance:
                errs = refit(original, loaded.model, names, cal, calibration_batch, advance,
                             refine_steps)
            calibrated = frozenset(errs)
            if shape is not None:
                rep["verification"] = output_check(original, loaded.model, shape, seed)
            for row in rep["layers"]:
                if row["name"] in errs:
                    row["output_error"] = errs[row["name"]]
        if held is not None:
            rep["fidelity"] = fidelity(original, loaded.model, held, "eval", calibration_batch)
            if cal is not None:
                rep["fidelity_on_calibration"] = fidelity(original, loaded.model, cal,
                                                          "calibration", calibration_batch)
        else:
            assert cal is not None
            rep["fidelity"] = fidelity(original, loaded.model, cal, "calibration",
                                       calibration_batch)
        rep["timing_s"]["calibrate"] = round(time.perf_counter() - t2, 4)
    refusal = _fidelity_refusal(rep, min_agreement, max_output_error)
    for w in _fidelity_warnings(rep):
        warn(w)
    written: list[str] = []
    if refusal:
        rep["output_note"] = f"nothing written: {refusal}"
    elif dry_run:
        rep["output_note"] = "dry run: nothing written"
    elif converted == 0 and not write_unchanged:
        rep["output_note"] = "no layer converted: nothing written (--write-unchanged writes it)"
    else:
        assert output is not None
        t1 = time.perf_counter()
        arch_doc = {"arch": arch, "arch_kwargs": kwargs} if arch else None
        files = serialise(loaded, decisions, output, calibrated, arch_doc)
        write_all_atomic(files, overwrite=force)
        rep["timing_s"]["write"] = round(time.perf_counter() - t1, 4)
        written = [str(p) for p, _ in files]
        rep["output_note"] = "wrote " + ", ".join(written)
    case = {"name": str(model), "source": {"path": str(model), "format": loaded.kind},
            "options": {"init": plan.init, "depth_multiplier": plan.depth_multiplier,
                        "energy": plan.energy, "max_error": plan.max_error,
                        "min_channels": plan.min_channels, "allow_larger": plan.allow_larger,
                        "target_macs": target_macs},
            **rep, "written": written}
    emit(envelope([case], environment=_environment(map_location)), convert_view, fmt, as_json,
         reports)
    if refusal:
        raise fail(refusal, 1)


def _fidelity_refusal(rep: dict[str, Any], min_agreement: float | None,
                      max_output_error: float | None) -> str | None:
    """Why the conversion must not be written (--min-agreement, --max-output-error)."""
    fid = rep.get("fidelity")
    if min_agreement is not None and fid is not None:
        agreement = fid.get("agreement")
        if agreement is None:
            return "--min-agreement: the model's output is not (N, classes) logits"
        if agreement < min_agreement:
            return (f"top-1 agreement {agreement:.4f} on the {fid['on']} inputs is below "
                    f"--min-agreement {min_agreement}")
    if max_output_error is not None:
        err = fid["rel_output_error"] if fid is not None else rep["verification"].get(
            "rel_diff")
        if err is None:
            return "--max-output-error needs --input-shape, --calibration-data or --eval-data"
        if err > max_output_error:
            return f"relative output error {err:.4f} is above --max-output-error {max_output_error}"
    return None


def _fidelity_warnings(rep: dict[str, Any]) -> list[str]:
    """Without calibration a conversion can quietly break a model: say so."""
    out = []
    low = [la["name"] for la in rep["layers"] if la["status"] == "converted"
           and la.get("energy") is not None and la["energy"] < 0.5 and "output_error" not in la]
    if low:
        out.append(f"{len(low)} converted layer(s) keep less than half their spectral energy "
                   f"({', '.join(low[:3])}{' ...' if len(low) > 3 else ''}): the output will "
                   "change; --calibration-data refits them")
    rel = rep["verification"].get("rel_diff")
    if rel is not None and rel > 0.1 and "fidelity" not in rep:
        out.append(f"the output check's relative error is {rel:.3f} (> 0.1)")
    return out


def _environment(map_location: str) -> dict[str, Any]:
    import torch

    return {"device": map_location, "torch": torch.__version__}


def _plan_options(min_channels: int, include: list[str] | None, exclude: list[str] | None,
                  m: int, init: Init, energy: float | None, max_error: float | None,
                  allow_larger: bool) -> PlanOptions:
    from ..plan import PlanOptions

    if min_channels < 1:
        raise InputError(f"--min-channels must be >= 1, got {min_channels}")
    if m < 1:
        raise InputError(f"--depth-multiplier must be >= 1, got {m}")
    if m > 1 << 10:
        raise InputError(f"--depth-multiplier must be at most {1 << 10}, got {m}")
    finite("--energy", energy, hi=1)
    finite("--max-error", max_error, lo_open=False)
    if energy is not None:
        if init is not Init.svd:
            raise InputError("--energy needs --init svd (it reads the weights' spectrum)")
        if m != 1:
            raise InputError("give --energy or --depth-multiplier, not both")
    return PlanOptions(min_channels, tuple(include or ()), tuple(exclude or ()), m, energy,
                       max_error, allow_larger, init.value)


def _check_output(model: Path, output: Path | None, dry_run: bool, force: bool,
                  reports: list[tuple[Path, Any]]) -> None:
    """Every output checked before any work: writable, not a special file, not the input,
    not another output of this run, not existing without --force."""
    from ..atomic import check_writable
    from ..plan import plan_path

    outputs = [("--report", p) for p, _ in reports]
    if output is None:
        if not dry_run:
            raise InputError("Missing option '--output' / '-o'", hint="or use --dry-run")
    else:
        outputs += [("--output", output), ("--output's plan", plan_path(output))]
    check_distinct(outputs, [("MODEL", model)])
    if output is None or dry_run:
        return
    check_writable(output, "--output", overwrite=force)
    plan = plan_path(output)
    if os.path.lexists(plan) and not plan.is_file():
        check_writable(plan, "--output's plan", overwrite=True)
