"""``dsconv convert``: replace eligible Conv2d layers of a saved model with depthwise
separable pairs initialised from the original weights, verify, and write atomically.

The command checks and parses its options into a :class:`ConvertRequest`; the work is
:func:`dsconv_cli.services.convert.convert`."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ..errors import InputError
from ..render import OutputFormat, bind, convert_view, layout_for
from ..results import envelope
from ..services.convert import ConvertRequest, environment
from ..services.convert import convert as convert_service
from .common import (
    HOOKS,
    arch_file,
    check_distinct,
    check_format,
    check_reports,
    emit,
    fail,
    finite,
    handle_errors,
)
from .options import (
    PICK,
    ArchKwargsOpt,
    ArchOpt,
    ColumnsOpt,
    Device,
    DeviceOpt,
    Dtype,
    ExcludeOpt,
    FormatOpt,
    IncludeOpt,
    InputShapeOpt,
    JsonOpt,
    MapLocationOpt,
    MemoryFormat,
    MemoryFormatOpt,
    MinChannelsOpt,
    MinTimeOpt,
    QuantizeScheme,
    QuantizeSchemeOpt,
    RecalibrateOpt,
    ReportOpt,
    RoundsOpt,
    StateDictKeyOpt,
    ThreadsOpt,
    TrustPickleOpt,
    WarmupOpt,
    WideOpt,
    measure_options,
    parse_arch_kwargs,
)

if TYPE_CHECKING:
    from ..options import MeasureOptions
    from ..plan import PlanOptions

WRITE = "Writing"
FIT = "Keeping the model working (calibration, fidelity)"
LATENCY = "Converting for latency (--target-latency)"


class Init(str, Enum):
    svd = "svd"
    random = "random"


ModelArg = Annotated[Path, typer.Argument(
    help="A saved model: a state_dict or checkpoint (with --arch), or a pickled nn.Module "
    "(with --trust-pickle).", show_default=False)]
OutputOpt = Annotated[Optional[Path], typer.Option(
    "--output", "-o", help="Where to write the converted model.", rich_help_panel=WRITE)]
DepthMultiplierOpt = Annotated[Optional[int], typer.Option(
    help="Depthwise filters per input channel (the rank of the factorisation; default 1).",
    rich_help_panel=PICK, show_default=False)]
TargetMacsOpt = Annotated[Optional[float], typer.Option(
    "--target-macs", help="Fit the model in this many MACs: a fraction of its MACs (<= 1) "
    "or a count. Multipliers are raised per layer where they remove the most error per MAC "
    "added.", rich_help_panel=PICK)]
InitOpt = Annotated[Init, typer.Option(
    help="svd: best rank-m factorisation of the original weights; random: fresh weights "
    "(needs retraining).", rich_help_panel=PICK)]
EnergyOpt = Annotated[Optional[float], typer.Option(
    help="Pick per layer the smallest multiplier keeping this fraction of the spectral "
    "energy (0-1].", rich_help_panel=PICK)]
MaxErrorOpt = Annotated[Optional[float], typer.Option(
    help="Skip layers whose relative weight error would exceed this.", rich_help_panel=PICK)]
AllowLargerOpt = Annotated[bool, typer.Option(
    "--allow-larger", help="Convert layers even when the DS form is not smaller.",
    rich_help_panel=PICK)]
SeedOpt = Annotated[int, typer.Option(help="Seed of the verification input and of "
                                      "--init random.")]
DryRunOpt = Annotated[bool, typer.Option(
    "--dry-run", help="Report only; write nothing.", rich_help_panel=WRITE)]
ForceOpt = Annotated[bool, typer.Option(
    "--force", help="Overwrite an existing output.", rich_help_panel=WRITE)]
CalibrationDataOpt = Annotated[Optional[Path], typer.Option(
    "--calibration-data", help="N unlabelled inputs (a torch.save'd tensor or .npy): refit "
    "each converted layer on them, in forward order, by least squares.", rich_help_panel=FIT,
    dir_okay=False)]
EvalDataOpt = Annotated[Optional[Path], typer.Option(
    "--eval-data", help="Held-out inputs for the fidelity check (top-1 agreement, output "
    "error), reported apart from the calibration inputs.", rich_help_panel=FIT,
    dir_okay=False)]
RefineStepsOpt = Annotated[int, typer.Option(
    "--refine-steps", help="After the pointwise refit, alternate this many depthwise and "
    "pointwise refits per layer.", rich_help_panel=FIT)]
DistillStepsOpt = Annotated[int, typer.Option(
    "--distill-steps", help="After the refit, train the converted layers this many Adam "
    "steps to match the original's outputs and each layer's on --calibration-data (no "
    "labels; half of each batch mixed, inputs near a decision boundary weighted up).",
    rich_help_panel=FIT)]
CalibrationBatchOpt = Annotated[int, typer.Option(
    "--calibration-batch", help="Inputs per forward while calibrating (bounds memory).",
    rich_help_panel=FIT)]
MinAgreementOpt = Annotated[Optional[float], typer.Option(
    "--min-agreement", help="Top-1 agreement with the original below this: exit 1, nothing "
    "written.", rich_help_panel=FIT)]
MaxOutputErrorOpt = Annotated[Optional[float], typer.Option(
    "--max-output-error", help="Relative output error above this: exit 1, nothing written.",
    rich_help_panel=FIT)]
WriteUnchangedOpt = Annotated[bool, typer.Option(
    "--write-unchanged", help="Write the output even when no layer was converted.",
    rich_help_panel=WRITE)]
TargetLatencyOpt = Annotated[Optional[float], typer.Option(
    "--target-latency", metavar="F", help="Make the model this fraction (0-1) of its "
    "latency in --runtime: each layer's conv and DS forms are timed there, the least-error "
    "choice reaching F is taken, and the whole model is timed against the original to "
    "check it (exit 1, nothing written, if missed). Needs --input-shape.",
    rich_help_panel=LATENCY, show_default=False)]
LatencyRuntimeOpt = Annotated[str, typer.Option(
    "--runtime", metavar="NAME", help="Where --target-latency times: eager, compile "
    "(torch.compile) or onnxruntime (needs dsconv\\[onnx]).", rich_help_panel=LATENCY)]
ExportOpt = Annotated[Optional[Path], typer.Option(
    "--export", help="Also write a model that deploys without dsconv or your code: .pt2 "
    "(torch.export) or .onnx (ONNX Runtime), by suffix; its output is checked against the "
    "converted model first.", rich_help_panel=WRITE, dir_okay=False)]


# ------------------------------------------------------------- int8 and export shapes (28)
INT8 = "int8 (ONNX Runtime static quantization of the --export .onnx)"


class Quantize(str, Enum):
    int8 = "int8"


PER_CHANNEL = QuantizeScheme.per_channel


QuantizeOpt = Annotated[Optional[Quantize], typer.Option(
    "--quantize", help="Quantize the --export .onnx statically after conversion (QDQ, "
    "calibrated on --calibration-data); its fidelity against the original fp32 model is "
    "reported and gated by --min-agreement / --max-output-error.", rich_help_panel=INT8,
    show_default=False)]
EqualiseOpt = Annotated[bool, typer.Option(
    "--equalise", help="Cross-layer equalisation of each depthwise/pointwise pair before "
    "quantizing (same fp32 function, per-channel ranges made alike).", rich_help_panel=INT8)]
KeepFp32Opt = Annotated[int, typer.Option(
    "--keep-fp32", metavar="N", help="Keep the N weighted nodes whose int8 error alone is "
    "largest in fp32 (one quantization per node to find them).", rich_help_panel=INT8)]
StaticShapeOpt = Annotated[bool, typer.Option(
    "--static-shape", help="Pin the export to its input's batch size (by default the batch "
    "dimension is dynamic, checked at two sizes).", rich_help_panel=WRITE)]


@handle_errors
def convert(
    model: ModelArg, output: OutputOpt = None, input_shape: InputShapeOpt = None,
    map_location: MapLocationOpt = "cpu", trust_pickle: TrustPickleOpt = False,
    state_dict_key: StateDictKeyOpt = None, arch: ArchOpt = None,
    arch_kwargs: ArchKwargsOpt = None, min_channels: MinChannelsOpt = 32,
    include: IncludeOpt = None, exclude: ExcludeOpt = None,
    depth_multiplier: DepthMultiplierOpt = None, target_macs: TargetMacsOpt = None,
    init: InitOpt = Init.svd, energy: EnergyOpt = None, max_error: MaxErrorOpt = None,
    allow_larger: AllowLargerOpt = False, seed: SeedOpt = 0, dry_run: DryRunOpt = False,
    force: ForceOpt = False, calibration_data: CalibrationDataOpt = None,
    eval_data: EvalDataOpt = None, refine_steps: RefineStepsOpt = 0,
    distill_steps: DistillStepsOpt = 0, calibration_batch: CalibrationBatchOpt = 32,
    min_agreement: MinAgreementOpt = None,
    max_output_error: MaxOutputErrorOpt = None, write_unchanged: WriteUnchangedOpt = False,
    export: ExportOpt = None,
    target_latency: TargetLatencyOpt = None, runtime: LatencyRuntimeOpt = "eager",
    device: DeviceOpt = Device.cpu, threads: ThreadsOpt = None,
    memory_format: MemoryFormatOpt = MemoryFormat.nchw, min_time: MinTimeOpt = 0.2,
    warmup: WarmupOpt = 3, rounds: RoundsOpt = 10, recalibrate: RecalibrateOpt = False,
    quantize: QuantizeOpt = None, quantize_scheme: QuantizeSchemeOpt = PER_CHANNEL,
    equalise: EqualiseOpt = False, keep_fp32: KeepFp32Opt = 0, static_shape: StaticShapeOpt = False,
    fmt: FormatOpt = OutputFormat.table, as_json: JsonOpt = False, report: ReportOpt = None,
    wide: WideOpt = False, columns: ColumnsOpt = None,
) -> None:
    """Replace a saved model's Conv2d layers with depthwise separable pairs.

    Eligible layers become depthwise + pointwise pairs initialised from the original
    weights (per-channel SVD), verified and written atomically, with a per-layer report.
    """
    check_format(fmt, as_json)
    view = bind(convert_view, layout_for([convert_view], wide, columns))
    reports = check_reports(report, overwrite=force)  # an output: kept unless --force
    _check_fit(calibration_data, eval_data, refine_steps, calibration_batch, min_agreement,
               max_output_error, distill_steps)
    _check_budget(target_macs, energy, depth_multiplier, init)
    measure = _check_latency(target_latency, target_macs, energy, depth_multiplier, init,
                             input_shape, runtime, device, threads, memory_format, min_time,
                             warmup, rounds)
    _check_seed(seed)
    request = ConvertRequest(
        model=model, output=output, input_shape=input_shape,
        plan=_plan_options(min_channels, include, exclude,
                           1 if depth_multiplier is None else depth_multiplier, init, energy,
                           max_error, allow_larger),
        map_location=map_location, trust_pickle=trust_pickle, state_dict_key=state_dict_key,
        arch=arch, arch_kwargs=parse_arch_kwargs(arch_kwargs), target_macs=target_macs,
        seed=seed, dry_run=dry_run, force=force, write_unchanged=write_unchanged,
        calibration_data=calibration_data, eval_data=eval_data, refine_steps=refine_steps,
        distill_steps=distill_steps, calibration_batch=calibration_batch,
        min_agreement=min_agreement, max_output_error=max_output_error, export=export,
        target_latency=target_latency, measure=measure, recalibrate=recalibrate,
        **_int8(quantize, quantize_scheme, equalise, keep_fp32, static_shape))
    _check_output(model, output, dry_run, force, reports, export,
                  [("--calibration-data", calibration_data), ("--eval-data", eval_data),
                   arch_file("--arch", arch)])
    result = convert_service(request, HOOKS)
    emit(envelope([result], environment=environment(map_location)), view, fmt, as_json,
         reports)
    if result.refusal:
        raise fail(result.refusal, 1)


def _check_seed(seed: int) -> None:
    if not 0 <= seed < 1 << 64:  # torch's seeds are 64-bit
        raise InputError(f"--seed must be 0 to 2**64 - 1, got {seed}")


def _int8(quantize: Quantize | None, scheme: QuantizeScheme, equalise: bool, keep_fp32: int,
          static_shape: bool) -> dict[str, Any]:
    """The request's int8 and export-shape fields (issue 28), checked by the service
    before any work."""
    return {"quantize": quantize.value if quantize else None, "quantize_scheme": scheme.value,
            "equalise": equalise, "keep_fp32": keep_fp32, "static_shape": static_shape}


def _check_fit(calibration_data: Path | None, eval_data: Path | None, refine_steps: int,
               calibration_batch: int, min_agreement: float | None,
               max_output_error: float | None, distill_steps: int = 0) -> None:
    """The calibration and fidelity options, before any work."""
    finite("--min-agreement", min_agreement, hi=1, lo_open=False)
    finite("--max-output-error", max_output_error, lo_open=False)
    if not 1 <= calibration_batch <= 1 << 16:
        raise InputError(f"--calibration-batch must be 1 to 65536, got {calibration_batch}")
    if not 0 <= refine_steps <= 100:
        raise InputError(f"--refine-steps must be 0 to 100, got {refine_steps}")
    if refine_steps and calibration_data is None:
        raise InputError("--refine-steps refits on data: give --calibration-data")
    if not 0 <= distill_steps <= 100_000:
        raise InputError(f"--distill-steps must be 0 to 100000, got {distill_steps}")
    if distill_steps and calibration_data is None:
        raise InputError("--distill-steps trains on data: give --calibration-data")
    if min_agreement is not None and calibration_data is None and eval_data is None:
        raise InputError("--min-agreement needs inputs to agree on: --calibration-data or "
                         "--eval-data")


def _check_budget(target_macs: float | None, energy: float | None,
                  depth_multiplier: int | None, init: Init) -> None:
    if target_macs is None:
        return
    finite("--target-macs", target_macs, hi=1e18)
    if energy is not None or depth_multiplier is not None:
        raise InputError("give --target-macs, --energy or --depth-multiplier, one of them")
    if init is not Init.svd:
        raise InputError("--target-macs needs --init svd (it reads the weights' spectrum)")


def _check_latency(target: float | None, target_macs: float | None, energy: float | None,
                   depth_multiplier: int | None, init: Init, input_shape: str | None,
                   runtime: str, device: Device, threads: int | None,
                   memory_format: MemoryFormat, min_time: float, warmup: int,
                   rounds: int) -> MeasureOptions:
    """``--target-latency`` and how it measures, before any work: F in (0, 1), no other
    budget, an input shape, one installed runtime, one layout."""
    import importlib.util

    from ..options import MeasureOptions

    opts = measure_options(device, Dtype.fp32, threads, memory_format, min_time, warmup,
                           rounds, runtime)
    if target is None:
        return MeasureOptions()
    finite("--target-latency", target, hi=1, hi_open=True)
    other = [o for o, v in (("--target-macs", target_macs), ("--energy", energy),
                            ("--depth-multiplier", depth_multiplier)) if v is not None]
    if other:
        raise InputError(f"--target-latency picks the multipliers itself: drop {other[0]}")
    if init is not Init.svd:
        raise InputError("--target-latency needs --init svd (it weighs the weights' error)")
    if input_shape is None:
        raise InputError("--target-latency times each layer at the input it sees: give "
                         "--input-shape")
    if len(opts.runtimes) != 1:
        raise InputError("--runtime: --target-latency times in one runtime, got "
                         f"{','.join(opts.runtimes)}")
    if opts.runtimes[0] == "onnxruntime" and importlib.util.find_spec("onnxruntime") is None:
        raise InputError("--runtime onnxruntime needs ONNX Runtime: pip install "
                         "'dsconv[onnx]'")
    if memory_format is MemoryFormat.both:
        raise InputError("--memory-format: --target-latency times in one layout: nchw or "
                         "channels_last")
    return opts


def _plan_options(min_channels: int, include: list[str] | None, exclude: list[str] | None,
                  m: int, init: Init, energy: float | None, max_error: float | None,
                  allow_larger: bool) -> PlanOptions:
    from ..plan import MAX_MULTIPLIER, PlanOptions

    if min_channels < 1:
        raise InputError(f"--min-channels must be >= 1, got {min_channels}")
    if m < 1:
        raise InputError(f"--depth-multiplier must be >= 1, got {m}")
    if m > MAX_MULTIPLIER:
        raise InputError(f"--depth-multiplier must be at most {MAX_MULTIPLIER}, got {m}")
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
                  reports: list[tuple[Path, Any]], export: Path | None = None,
                  data: list[tuple[str, Path | None]] | None = None) -> None:
    """Every output checked before any work: writable, not a special file, not an input
    (the model, ``data``: calibration and eval files), not another output of this run,
    not existing without --force."""
    from ..atomic import check_writable
    from ..plan import plan_path

    outputs = [("--report", p) for p, _ in reports]
    if output is None:
        if not dry_run:
            raise InputError("Missing option '--output' / '-o'", hint="or use --dry-run")
    else:
        outputs += [("--output", output), ("--output's plan", plan_path(output))]
    if export is not None:
        outputs.append(("--export", export))
    # the plan beside the model is an input too (applied when it loads), whatever --force
    check_distinct(outputs, [("MODEL", model), ("MODEL's plan", plan_path(model)),
                             *(data or [])])
    if export is not None:
        from ..names import export_format

        export_format(export)
    if output is None or dry_run:
        return
    check_writable(output, "--output", overwrite=force)
    if export is not None:
        check_writable(export, "--export", overwrite=force)
    plan = plan_path(output)
    if os.path.lexists(plan) and not plan.is_file():
        check_writable(plan, "--output's plan", overwrite=True)
