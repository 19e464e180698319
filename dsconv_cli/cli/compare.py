"""``dsconv compare``: a standard conv against a depthwise separable block (or another
kind), analytically, and with ``--measure`` on real layers."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated, Any, Optional

import typer

from ..cases import FIELDS, MAX_CASES, LayerCase, expand_grid, parse_value, resolve_layer
from ..errors import FieldError, InputError
from ..kinds import KINDS
from ..presets import PRESETS, get_preset
from ..render import OutputFormat, compare_view, preset_view
from ..results import envelope
from ..specs import ACTIVATIONS
from .common import HOOKS, check_format, check_reports, emit, fail, finite, handle_errors
from .options import (
    ArchKwargsOpt,
    ArchOpt,
    Device,
    DeviceOpt,
    Dtype,
    DtypeOpt,
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
    RecalibrateOpt,
    ReportOpt,
    RoundsOpt,
    RuntimeOpt,
    StateDictKeyOpt,
    ThreadsOpt,
    TrustPickleOpt,
    WarmupOpt,
    parse_arch_kwargs,
)

# choices derived from the kind registry and the spec module: one spelling each
Kind = Enum("Kind", {k.replace("-", "_"): k for k in KINDS}, type=str)  # type: ignore[misc]
Activation = Enum("Activation", {a: a for a in ACTIVATIONS}, type=str)  # type: ignore[misc]


class Versus(str, Enum):
    """What a preset is compared with (a model's --vs is a string: ds, a preset, a file)."""

    full_conv = "full-conv"


LAYER = "Layer (comma lists sweep)"
MODEL = "Whole networks (presets, saved models, architectures)"
NETWORK = "A saved model or --arch"
BLOCK = "Block kinds"
NumOpt = Optional[str]


def option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def build_cases(values: dict[str, Any], dtype: str, max_cases: int) -> list[LayerCase]:
    """Parse command-line values (comma lists) into validated layer cases."""
    lists: dict[str, Any] = {}
    try:
        for field, raw in values.items():
            if raw is None:
                continue
            if FIELDS[field] in ("str", "bool"):
                lists[field] = raw
            else:
                items = [parse_value(field, t) for t in str(raw).split(",")]
                lists[field] = items if len(items) > 1 else items[0]
        kind = lists.get("kind", "separable")
        return [resolve_layer(vals, name, dtype)
                for name, vals in expand_grid(kind, lists, max_cases)]
    except FieldError as e:
        raise InputError(f"Invalid value for '{option_name(e.field)}': {e.message}",
                         e.hint) from None


@handle_errors
def compare(
    in_: Annotated[NumOpt, typer.Option("--in", help="Input channels.",
                                        rich_help_panel=LAYER)] = None,
    out: Annotated[NumOpt, typer.Option(help="Output channels (default: --in).",
                                        rich_help_panel=LAYER)] = None,
    kernel: Annotated[NumOpt, typer.Option("--kernel", "-k", help="Kernel: 3 or 3x5.",
                                           rich_help_panel=LAYER)] = None,
    hw: Annotated[NumOpt, typer.Option(help="Input size: 14 or 14x28.",
                                       rich_help_panel=LAYER)] = None,
    stride: Annotated[NumOpt, typer.Option(help="Stride: 1 or 2x1.",
                                           rich_help_panel=LAYER)] = None,
    padding: Annotated[NumOpt, typer.Option(
        help="Padding: 1, 1x2 or 'same' (default d*(K-1)//2).", rich_help_panel=LAYER)] = None,
    dilation: Annotated[NumOpt, typer.Option(help="Dilation: 1 or 2x1.",
                                             rich_help_panel=LAYER)] = None,
    groups: Annotated[NumOpt, typer.Option(help="Groups of the standard conv.",
                                           rich_help_panel=LAYER)] = None,
    bias: Annotated[Optional[bool], typer.Option(
        "--bias/--no-bias", help="Bias on the standard and the pointwise conv "
        "(never on a depthwise conv). Default: no bias.", rich_help_panel=LAYER)] = None,
    batch: Annotated[NumOpt, typer.Option(help="Batch size; counts are per batch.",
                                          rich_help_panel=LAYER)] = None,
    dtype: DtypeOpt = Dtype.fp32,
    kind: Annotated[Kind, typer.Option(
        help="Candidate block kind: " + "; ".join(f"{k}: {e.help}" for k, e in KINDS.items())
        + ".", rich_help_panel=BLOCK)] = Kind.separable,  # type: ignore[attr-defined]
    depth_multiplier: Annotated[NumOpt, typer.Option(
        help="separable: depthwise output channels per input channel.",
        rich_help_panel=BLOCK)] = None,
    expansion: Annotated[NumOpt, typer.Option(
        help="inverted-residual/mbconv: expanded = round(in * ratio); default 6.",
        rich_help_panel=BLOCK)] = None,
    expanded_channels: Annotated[NumOpt, typer.Option(
        help="inverted-residual/mbconv: expanded channels, given directly.",
        rich_help_panel=BLOCK)] = None,
    se: Annotated[Optional[bool], typer.Option(
        "--se/--no-se", help="mbconv: squeeze-excitation (default on).",
        rich_help_panel=BLOCK)] = None,
    squeeze_channels: Annotated[NumOpt, typer.Option(
        help="mbconv: SE squeeze channels (default make_divisible(expanded/4)).",
        rich_help_panel=BLOCK)] = None,
    activation: Annotated[Optional[Activation], typer.Option(
        help="inverted-residual/mbconv activation (default relu6 / hswish).",
        rich_help_panel=BLOCK)] = None,
    eca_k: Annotated[NumOpt, typer.Option(
        help="eca: kernel size (default: adaptive, from the channel count).",
        rich_help_panel=BLOCK)] = None,
    max_cases: Annotated[int, typer.Option(help="Cap on sweep cases.",
                                           rich_help_panel=LAYER)] = MAX_CASES,
    model: Annotated[Optional[str], typer.Option(
        help="Analyse a whole network: a saved model FILE (loaded as convert loads it) or a "
        "preset: " + ", ".join(PRESETS) + ".", rich_help_panel=MODEL)] = None,
    arch: ArchOpt = None,
    arch_kwargs: ArchKwargsOpt = None,
    trust_pickle: TrustPickleOpt = False,
    state_dict_key: StateDictKeyOpt = None,
    map_location: MapLocationOpt = "cpu",
    input_shape: InputShapeOpt = None,
    depth: Annotated[int, typer.Option(
        "--depth", help="Module depth shown in a model's table.", rich_help_panel=NETWORK)] = 3,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Exit 1 if any op of the model is uncounted.",
        rich_help_panel=NETWORK)] = False,
    min_channels: MinChannelsOpt = 32,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    width: Annotated[Optional[float], typer.Option(
        help="Width multiplier (alpha) of --model.", rich_help_panel=MODEL)] = None,
    resolution: Annotated[Optional[int], typer.Option(
        help="Input resolution of --model (default 224).", rich_help_panel=MODEL)] = None,
    classes: Annotated[Optional[int], typer.Option(
        help="Classifier classes of --model (default 1000).", rich_help_panel=MODEL)] = None,
    vs: Annotated[Optional[str], typer.Option(
        "--vs", help="full-conv (presets): every depthwise+pointwise pair replaced by a dense "
        "conv. For a model: ds (converted in memory), a preset name, or a model FILE (loaded "
        "like --model; a state_dict needs --vs-arch): per-layer differences and, with "
        "--measure, an interleaved A/B.", rich_help_panel=MODEL)] = None,
    vs_arch: Annotated[Optional[str], typer.Option(
        "--vs-arch", help="Builds --vs FILE when it holds a state_dict.",
        rich_help_panel=MODEL)] = None,
    vs_arch_kwargs: Annotated[Optional[str], typer.Option(
        "--vs-arch-kwargs", help="JSON keyword arguments for --vs-arch.",
        rich_help_panel=MODEL)] = None,
    per_layer: Annotated[bool, typer.Option(
        "--per-layer", help="List every layer of --model.", rich_help_panel=MODEL)] = False,
    measure: Annotated[bool, typer.Option(
        "--measure", help="Time real layers with PyTorch (imports torch).",
        rich_help_panel="Measurement")] = False,
    device: DeviceOpt = Device.cpu,
    threads: ThreadsOpt = None,
    memory_format: MemoryFormatOpt = MemoryFormat.nchw,
    min_time: MinTimeOpt = 0.2,
    warmup: WarmupOpt = 3,
    rounds: RoundsOpt = 10,
    runtime: RuntimeOpt = "eager",
    recalibrate: RecalibrateOpt = False,
    fmt: FormatOpt = OutputFormat.table,
    as_json: JsonOpt = False,
    report: ReportOpt = None,
) -> None:
    """Standard conv vs depthwise separable (or another block): costs and timings.

    Params, MACs, FLOPs, memory traffic and the reductions of a depthwise separable
    block (or inverted residual, MBConv, ECA) against the layer it replaces; with
    --measure, real layers timed next to the theory; with --model, whole networks.

    Counts: MACs = multiply-accumulates of conv/linear (bias excluded), FLOPs = 2 x MACs.
    """
    check_format(fmt, as_json)
    reports = check_reports(report)
    finite("--width", width)
    finite("--min-time", min_time, hi=3600)
    if max_cases < 1:
        raise InputError(f"--max-cases must be >= 1, got {max_cases}")
    model_opts: dict[str, Any] = {"width": width, "resolution": resolution,
                                  "classes": classes, "vs": vs, "per-layer": per_layer or None}
    values = {
        "in": in_, "out": out, "kernel": kernel, "hw": hw, "stride": stride,
        "padding": padding, "dilation": dilation, "groups": groups, "batch": batch,
        "depth_multiplier": depth_multiplier, "expansion": expansion,
        "expanded_channels": expanded_channels, "squeeze_channels": squeeze_channels,
        "eca_k": eca_k, "kind": kind.value, "bias": bias, "se": se,
        "activation": activation.value if activation else None,
    }
    network: dict[str, Any] = {"--arch-kwargs": arch_kwargs, "--trust-pickle": trust_pickle or None,
               "--state-dict-key": state_dict_key, "--input-shape": input_shape,
               "--include": include, "--exclude": exclude}
    if arch is not None or (model is not None and _looks_like_file(model)):
        given = [f for f, v in values.items()
                 if v is not None and f not in ("kind", "batch", "depth_multiplier")]
        if given or kind is not Kind.separable:  # type: ignore[attr-defined]
            what = option_name(given[0]) if given else "--kind"
            raise InputError(f"Invalid value for '{what}': layer options do not apply to a "
                             "model")
        preset_only: dict[str, Any] = {"--width": width, "--resolution": resolution,
                                       "--classes": classes, "--per-layer": per_layer or None}
        for opt_name, opt_value in preset_only.items():
            if opt_value is not None:
                raise InputError(f"Invalid value for '{opt_name}': applies to presets only")
        if vs == Versus.full_conv.value:
            raise InputError("Invalid value for '--vs': full-conv applies to presets; a "
                             "model takes ds, a preset name or a model file")
        opts = (measure_options(device, dtype, threads, memory_format, min_time, warmup, rounds,
                                runtime)
                if measure else None)
        return compare_network(
            model, arch, arch_kwargs, trust_pickle, state_dict_key, map_location, input_shape,
            batch, depth_multiplier, min_channels, include, exclude, depth, strict,
            vs, vs_arch, vs_arch_kwargs, opts, recalibrate, fmt, as_json, reports)
    for opt_name, opt_value in network.items():
        if opt_value is not None:
            raise InputError(f"Invalid value for '{opt_name}': needs --model FILE or --arch")
    for opt_name, opt_value in {"--vs-arch": vs_arch, "--vs-arch-kwargs": vs_arch_kwargs
                                }.items():
        if opt_value is not None:
            raise InputError(f"Invalid value for '{opt_name}': needs --vs FILE with a model")
    if model is not None:
        if vs not in (None, Versus.full_conv.value):
            raise InputError(f"Invalid value for '--vs': {vs!r}; a preset takes --vs "
                             "full-conv (ds, presets and files apply to a model)")
        given = [f for f, v in values.items() if v is not None and f not in ("kind", "batch")]
        if given or kind is not Kind.separable:  # type: ignore[attr-defined]
            what = option_name(given[0]) if given else "--kind"
            raise InputError(f"Invalid value for '{what}': layer options do not apply with "
                             "--model")
        opts = (measure_options(device, dtype, threads, memory_format, min_time, warmup, rounds,
                                runtime)
                if measure else None)
        return compare_model(model, width, resolution, classes,
                             Versus.full_conv if vs else None, per_layer, batch, dtype,
                             opts, recalibrate, fmt, as_json, reports)
    for opt_name, opt_value in model_opts.items():
        if opt_value is not None:
            raise InputError(f"Invalid value for '--{opt_name}': needs --model")
    if in_ is None:
        raise InputError("Missing option '--in' (input channels)",
                         hint="e.g. dsconv compare --in 256 --out 256 -k 3 --hw 14")
    cases = build_cases(values, dtype.value, max_cases)
    if not measure:
        emit(envelope([c.to_result() for c in cases]), compare_view, fmt, as_json, reports)
        return
    from ..services.compare import measure_layers

    opts = measure_options(device, dtype, threads, memory_format, min_time, warmup, rounds, runtime)
    run = measure_layers(cases, opts, recalibrate, HOOKS)
    extra: dict[str, Any] = {"interrupted": True} if run.failed == "interrupted" else {}
    if run.runtime_errors:
        extra["runtime_errors"] = run.runtime_errors
    emit(envelope(run.cases, environment=run.environment, **extra), compare_view, fmt,
         as_json, reports)
    for rt, why in run.runtime_errors.items():
        print(f"Error: runtime {rt}: {why}", file=sys.stderr)
    if run.failed:
        raise typer.Exit(130 if run.failed == "interrupted" else 1)


def measure_options(device: Device, dtype: Dtype, threads: int | None,
                    memory_format: MemoryFormat, min_time: float, warmup: int,
                    rounds: int = 10, runtime: str = "eager") -> Any:
    from ..torch_backend.timing import MeasureOptions

    if not 10 <= rounds <= 10_000:
        raise InputError(f"--rounds must be 10 to 10,000, got {rounds}")
    fmts = (("nchw", "channels_last") if memory_format is MemoryFormat.both
            else (memory_format.value,))
    names = tuple(dict.fromkeys(r.strip() for r in runtime.split(",") if r.strip()))
    if not names:
        raise InputError("--runtime: give at least one of eager, compile, onnxruntime")
    return MeasureOptions(device.value, dtype.value, threads, fmts, min_time, warmup,
                          rounds=rounds, runtimes=names)


def compare_model(name: str, width: float | None, resolution: int | None,
                  classes: int | None, vs: Versus | None, per_layer: bool, batch: str | None,
                  dtype: Dtype, opts: Any, recalibrate: bool,
                  fmt: OutputFormat, as_json: bool, reports: Any) -> None:
    from ..services.compare import analyse_preset, measure_preset

    try:
        preset = get_preset(name, 1.0 if width is None else width,
                            224 if resolution is None else resolution,
                            1000 if classes is None else classes)
        nbatch = 1 if batch is None else parse_value("batch", batch)
        if nbatch <= 0:
            raise FieldError("batch", f"must be positive, got {nbatch}")
    except FieldError as e:
        raise InputError(f"Invalid value for '{option_name(e.field)}': {e.message}",
                         e.hint) from None
    full = vs is Versus.full_conv
    if opts is None:
        d, environment = analyse_preset(preset, nbatch, dtype.value, per_layer, full), None
    else:
        d, environment = measure_preset(preset, nbatch, dtype.value, per_layer, full, opts,
                                        recalibrate, HOOKS)
    emit(envelope([d], environment=environment), preset_view, fmt, as_json, reports)


def _looks_like_file(value: str) -> bool:
    from ..services.analyse import looks_like_file

    return looks_like_file(value)


def compare_network(model: str | None, arch: str | None, arch_kwargs: str | None,
                    trust_pickle: bool, state_dict_key: str | None, map_location: str,
                    input_shape: str | None, batch: str | None, depth_multiplier: str | None,
                    min_channels: int, include: list[str] | None, exclude: list[str] | None,
                    depth: int, strict: bool, vs: str | None, vs_arch: str | None,
                    vs_arch_kwargs: str | None, opts: Any, recalibrate: bool,
                    fmt: OutputFormat, as_json: bool, reports: Any) -> None:
    """A saved model or an architecture: per-module counts, DS opportunity, measurements."""
    from pathlib import Path

    from ..plan import PlanOptions
    from ..render import model_view

    if input_shape is None:
        raise InputError("Missing option '--input-shape' (the whole input, batch included)",
                         hint="e.g. --input-shape 1,3,224,224")
    if depth < 0:
        raise InputError(f"Invalid value for '--depth': must be >= 0, got {depth}")
    if min_channels < 1:
        raise InputError(f"Invalid value for '--min-channels': must be >= 1, got {min_channels}")
    m = 1
    if depth_multiplier is not None:
        m = parse_value("depth_multiplier", depth_multiplier) if "," not in depth_multiplier \
            else 0
        if m < 1:
            raise InputError(f"Invalid value for '--depth-multiplier': one integer >= 1 for a "
                             f"model, got {depth_multiplier!r}")
    kwargs = parse_arch_kwargs(arch_kwargs)
    if model is not None and not Path(model).is_file():
        raise InputError(f"--model {model}: no such file",
                         hint=f"a preset is one of {', '.join(PRESETS)}")
    from ..services.analyse import ModelSource, analyse, load_source, measure
    from ..torch_backend.loading import parse_input_shape

    shape = parse_input_shape(input_shape)
    if batch is not None:
        nb = parse_value("batch", batch) if "," not in batch else 0
        if nb < 1:
            raise InputError(f"Invalid value for '--batch': one integer >= 1, got {batch!r}")
        shape = (nb, *shape[1:])
    src = ModelSource(Path(model) if model else None, arch, kwargs, trust_pickle,
                      state_dict_key, map_location)
    plan = PlanOptions(min_channels, tuple(include or ()), tuple(exclude or ()), m)
    net = load_source(src, weights=opts is not None, hooks=HOOKS)
    result = analyse(net, src, shape, plan)
    other = None
    if vs is not None:
        from ..services.analyse import versus

        other = versus(vs, net, src, shape, plan, vs_arch, parse_arch_kwargs(vs_arch_kwargs),
                       weights=opts is not None, hooks=HOOKS)
        result = other.annotate(result)
    environment = None
    if opts is not None:
        result, environment = measure(result, net, shape, plan, other, opts, recalibrate,
                                      depth, HOOKS)
    env = envelope([result], environment=environment)
    env["cases"][0]["depth_shown"] = depth
    emit(env, model_view, fmt, as_json, reports)
    if strict and result.uncounted:
        ops = ", ".join(u.op for u in result.uncounted)
        raise fail(f"--strict: {len(result.uncounted)} op(s) are not counted: {ops}", 1)
