"""``dsconv compare``: a standard conv against a depthwise separable block (or another
kind), analytically, and with ``--measure`` on real layers; with ``--model`` or ``--arch``,
whole networks.

The command has three uses: a layer (``--in``...), a preset (``--model NAME``) and a saved
model or architecture (``--model FILE``, ``--arch``). Every option sits in the help panel of
the use it applies to, and :func:`check_applies` refuses an option given for another use,
from the same panels: the help and the checks cannot disagree.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NamedTuple, Optional

import typer

from ..cases import FIELDS, MAX_CASES, LayerCase, expand_grid, parse_value, resolve_layer
from ..errors import FieldError, InputError, interrupt_exit_code
from ..inputs import check_input
from ..kinds import KINDS
from ..names import PRESET_NAMES
from ..options import MeasureOptions, parse_input_shape
from ..render import (
    Layout,
    OutputFormat,
    View,
    bind,
    compare_view,
    layout_for,
    model_view,
    preset_view,
)
from ..results import envelope
from ..specs import ACTIVATIONS
from .common import (
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
    LOAD,
    MEASURE,
    OUTPUT,
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
    RuntimeOpt,
    SortOpt,
    StateDictKeyOpt,
    ThreadsOpt,
    TopOpt,
    TrustPickleOpt,
    WarmupOpt,
    WideOpt,
    measure_options,
    parse_arch_kwargs,
)

# choices derived from the kind registry and the spec module: one spelling each
Kind = Enum("Kind", {k.replace("-", "_"): k for k in KINDS}, type=str)  # type: ignore[misc]
Activation = Enum("Activation", {a: a for a in ACTIVATIONS}, type=str)  # type: ignore[misc]


class Versus(str, Enum):
    """What a preset is compared with (a model's --vs is a string: ds, a preset, a file)."""

    full_conv = "full-conv"


# ------------------------------------------------------------------ help panels = uses

LAYER = "Layer (comma lists sweep)"
BLOCK = "Layer: block kinds"
SHARED = "Layer or model"
MODEL = "Model: a preset or a saved model"
PRESET = "Model: a preset only (--model NAME)"
NETWORK = "Model: a saved model (--model FILE) or --arch only"

#: the uses of compare, as messages name them
USES = {"layer": "a layer (--in ...)", "preset": "a preset (--model NAME)",
        "network": "a saved model (--model FILE) or --arch"}
_ALL = frozenset(USES)
#: what the options of each help panel apply to
PANEL_USES: dict[str, frozenset[str]] = {
    LAYER: frozenset({"layer"}), BLOCK: frozenset({"layer"}), SHARED: _ALL,
    MODEL: frozenset({"preset", "network"}), PRESET: frozenset({"preset"}),
    NETWORK: frozenset({"network"}), LOAD: frozenset({"network"}),
    PICK: frozenset({"network"}), MEASURE: _ALL, OUTPUT: _ALL,
}
#: the one option whose panel is not all it applies to (a layer's and a model's multiplier)
OPTION_USES = {"depth_multiplier": frozenset({"layer", "network"}),
               "sort": frozenset({"network"}), "top": frozenset({"network"})}

NumOpt = Optional[str]


def _layer(flag: str, help: str, panel: str = LAYER, metavar: str = "INT", *decls: str
           ) -> Any:
    """A layer option: text, so that a comma list sweeps; its default (shown in the help)
    counts only when the option is given (see :func:`given_values`)."""
    return typer.Option(flag, *decls, metavar=metavar, help=help, rich_help_panel=panel)


InOpt = Annotated[NumOpt, _layer("--in", "Input channels (needed for a layer).")]
OutOpt = Annotated[NumOpt, _layer("--out", "Output channels (default: --in).")]
KernelOpt = Annotated[str, _layer("--kernel", "Kernel: 3 or 3x5.", LAYER, "SIZE", "-k")]
HwOpt = Annotated[NumOpt, _layer("--hw", "Input size: 14 or 14x28 (needed for a layer).",
                                 metavar="SIZE")]
StrideOpt = Annotated[str, _layer("--stride", "Stride: 1 or 2x1.", metavar="SIZE")]
PaddingOpt = Annotated[NumOpt, _layer(
    "--padding", "Padding: 1, 1x2 or 'same' (default: d*(K-1)//2, the size kept at stride "
    "1).", metavar="PAD")]
DilationOpt = Annotated[str, _layer("--dilation", "Dilation: 1 or 2x1.", metavar="SIZE")]
GroupsOpt = Annotated[str, _layer("--groups", "Groups of the standard conv.")]
BiasOpt = Annotated[bool, typer.Option(
    "--bias/--no-bias", help="Bias on the standard and the pointwise conv (never on a "
    "depthwise conv).", rich_help_panel=LAYER)]
MaxCasesOpt = Annotated[int, typer.Option(help="Cap on sweep cases.", rich_help_panel=LAYER)]
KindOpt = Annotated[Kind, typer.Option(
    metavar="KIND", help="Candidate block: "
    + "; ".join(f"{k}: {e.help}" for k, e in KINDS.items()) + ".", rich_help_panel=BLOCK)]
ExpansionOpt = Annotated[str, _layer(
    "--expansion", "inverted-residual, mbconv: expanded = round(in * ratio).", BLOCK,
    "FLOAT")]
ExpandedOpt = Annotated[NumOpt, _layer(
    "--expanded-channels", "inverted-residual, mbconv: expanded channels, given directly.",
    BLOCK)]
SeOpt = Annotated[bool, typer.Option(
    "--se/--no-se", help="mbconv: squeeze-excitation.", rich_help_panel=BLOCK)]
SqueezeOpt = Annotated[NumOpt, _layer(
    "--squeeze-channels", "mbconv: SE squeeze channels (default: make_divisible(expanded / "
    "4)).", BLOCK)]
ActivationOpt = Annotated[Optional[Activation], typer.Option(
    metavar="NAME", help="inverted-residual, mbconv: the activation, "
    + ", ".join(ACTIVATIONS) + " (default: relu6, hswish).", rich_help_panel=BLOCK)]
EcaKOpt = Annotated[NumOpt, _layer("--eca-k", "eca: kernel size (default: adaptive, from "
                                   "the channel count).", BLOCK)]
BatchOpt = Annotated[str, _layer("--batch", "Batch size; counts are per batch (for a "
                                 "model: overrides --input-shape's first size).", SHARED)]
DtypeOpt = Annotated[Dtype, typer.Option(
    "--dtype", help="Element type: sizes the bytes moved; measured layers run in it (int8: "
    "ONNX Runtime's static quantization, with --runtime onnxruntime, timed beside fp32).",
    rich_help_panel=SHARED)]
Int8CalibrationOpt = Annotated[Optional[Path], typer.Option(
    "--calibration-data", metavar="PATH", help="--dtype int8 with a model: N inputs (a "
    "torch.save'd tensor or .npy) the activation ranges are calibrated on.",
    rich_help_panel=MEASURE, dir_okay=False)]
DepthMultOpt = Annotated[str, _layer(
    "--depth-multiplier", "Depthwise filters per input channel (separable layers; a model's "
    "convs, as convert).", SHARED)]
ModelOpt = Annotated[Optional[str], typer.Option(
    metavar="NAME|FILE", help="A whole network: a preset (" + ", ".join(PRESET_NAMES) + ") or a "
    "saved model file (loaded as convert loads it).", rich_help_panel=MODEL)]
VsOpt = Annotated[Optional[str], typer.Option(
    "--vs", metavar="NAME|FILE", help="A preset: full-conv (every depthwise+pointwise pair "
    "replaced by a dense conv). A saved model: ds (converted in memory), a preset name, or a "
    "model FILE (loaded like --model; a state_dict needs --vs-arch): per-layer differences "
    "and, with --measure, an interleaved A/B.", rich_help_panel=MODEL)]
WidthOpt = Annotated[float, typer.Option(
    help="Width multiplier (alpha).", rich_help_panel=PRESET)]
ResolutionOpt = Annotated[int, typer.Option(
    help="Input resolution.", rich_help_panel=PRESET)]
ClassesOpt = Annotated[int, typer.Option(
    help="Classifier classes.", rich_help_panel=PRESET)]
PerLayerOpt = Annotated[bool, typer.Option(
    "--per-layer", help="List every layer.", rich_help_panel=PRESET)]
DepthOpt = Annotated[int, typer.Option(
    "--depth", help="Module depth shown in the table.", rich_help_panel=NETWORK)]
StrictOpt = Annotated[bool, typer.Option(
    "--strict", help="Exit 1 if any op of the model is uncounted.", rich_help_panel=NETWORK)]
VsArchOpt = Annotated[Optional[str], typer.Option(
    "--vs-arch", metavar="CALLABLE", help="Builds --vs FILE when it holds a state_dict.",
    rich_help_panel=NETWORK)]
VsArchKwargsOpt = Annotated[Optional[str], typer.Option(
    "--vs-arch-kwargs", metavar="JSON", help="JSON keyword arguments for --vs-arch.",
    rich_help_panel=NETWORK)]
MeasureOpt = Annotated[bool, typer.Option(
    "--measure", help="Time real layers with PyTorch (imports torch).",
    rich_help_panel=MEASURE)]


class Output(NamedTuple):
    """Where the report goes: stdout in one format, and every ``--report`` file (a named
    tuple: a dataclass costs start-up time)."""

    fmt: OutputFormat
    as_json: bool
    reports: list[tuple[Path, OutputFormat]]
    #: --wide, --columns, --sort, --top
    layout: Layout = Layout()

    def emit(self, env: dict[str, Any], view: View) -> None:
        emit(env, bind(view, self.layout), self.fmt, self.as_json, self.reports)


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
    ctx: typer.Context,
    in_: InOpt = None,
    out: OutOpt = None,
    kernel: KernelOpt = "3",
    hw: HwOpt = None,
    stride: StrideOpt = "1",
    padding: PaddingOpt = None,
    dilation: DilationOpt = "1",
    groups: GroupsOpt = "1",
    bias: BiasOpt = False,
    max_cases: MaxCasesOpt = MAX_CASES,
    kind: KindOpt = Kind.separable,  # type: ignore[attr-defined]
    expansion: ExpansionOpt = "6",
    expanded_channels: ExpandedOpt = None,
    se: SeOpt = True,
    squeeze_channels: SqueezeOpt = None,
    activation: ActivationOpt = None,
    eca_k: EcaKOpt = None,
    batch: BatchOpt = "1",
    dtype: DtypeOpt = Dtype.fp32,
    depth_multiplier: DepthMultOpt = "1",
    model: ModelOpt = None,
    vs: VsOpt = None,
    width: WidthOpt = 1.0,
    resolution: ResolutionOpt = 224,
    classes: ClassesOpt = 1000,
    per_layer: PerLayerOpt = False,
    arch: ArchOpt = None,
    arch_kwargs: ArchKwargsOpt = None,
    input_shape: InputShapeOpt = None,
    trust_pickle: TrustPickleOpt = False,
    state_dict_key: StateDictKeyOpt = None,
    map_location: MapLocationOpt = "cpu",
    depth: DepthOpt = 3,
    strict: StrictOpt = False,
    vs_arch: VsArchOpt = None,
    vs_arch_kwargs: VsArchKwargsOpt = None,
    min_channels: MinChannelsOpt = 32,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    measure: MeasureOpt = False,
    device: DeviceOpt = Device.cpu,
    threads: ThreadsOpt = None,
    memory_format: MemoryFormatOpt = MemoryFormat.nchw,
    min_time: MinTimeOpt = 0.2,
    warmup: WarmupOpt = 3,
    rounds: RoundsOpt = 10,
    runtime: RuntimeOpt = "eager",
    quantize_scheme: QuantizeSchemeOpt = QuantizeScheme.per_channel,
    calibration_data: Int8CalibrationOpt = None,
    recalibrate: RecalibrateOpt = False,
    fmt: FormatOpt = OutputFormat.table,
    as_json: JsonOpt = False,
    report: ReportOpt = None,
    wide: WideOpt = False,
    columns: ColumnsOpt = None,
    sort: SortOpt = None,
    top: TopOpt = None,
) -> None:
    """Standard conv vs depthwise separable (or another block): costs and timings.

    Params, MACs, FLOPs, memory traffic and the reductions of a depthwise separable
    block (or inverted residual, MBConv, ECA) against the layer it replaces; with
    --measure, real layers timed next to the theory; with --model or --arch, whole networks.

    Counts: MACs = multiply-accumulates of conv/linear (bias excluded), FLOPs = 2 x MACs.
    """
    layout = layout_for([compare_view, preset_view, model_view], wide, columns,
                        sort.value if sort else None, top, measure)
    output = Output(check_format(fmt, as_json), as_json, check_reports(report), layout)
    finite("--width", width)
    finite("--min-time", min_time, hi=3600)
    use = use_of(model, arch)
    check_applies(ctx, use, measure)
    params = given_values(ctx)
    _check_int8(use, measure, dtype, ctx, calibration_data)
    opts = (measure_options(device, dtype, threads, memory_format, min_time, warmup, rounds,
                            runtime, quantize_scheme, calibration_data) if measure else None)
    if use == "network":
        check_network_options(params, output.reports)
        return compare_network(network_request(params), strict, opts, recalibrate, output)
    if use == "preset":
        return compare_preset(params, dtype, opts, recalibrate, output)
    if max_cases < 1:
        raise InputError(f"Invalid value for '--max-cases': must be >= 1, got {max_cases}")
    values = {field: params[_param(field)] for field in FIELDS}
    values["kind"] = kind.value
    values["activation"] = activation.value if activation else None
    compare_layers(values, dtype, max_cases, opts, recalibrate, output)


def _check_int8(use: str, measure: bool, dtype: Dtype, ctx: typer.Context,
                calibration: Path | None) -> None:
    """--quantize-scheme and --calibration-data are int8's; a model's int8 ranges come
    from real inputs (--calibration-data), a layer's from seeded random ones."""
    if not (measure and dtype is Dtype.int8):
        for name, flag in (("quantize_scheme", "--quantize-scheme"),
                           ("calibration_data", "--calibration-data")):
            if _given(ctx, name):
                raise InputError(f"Invalid value for '{flag}': applies with --measure "
                                 "--dtype int8")
        return
    if use != "network":
        if calibration is not None:
            raise InputError("Invalid value for '--calibration-data': applies to a model "
                             "(--model FILE or --arch); a layer is calibrated on random "
                             "inputs")
        return
    if calibration is None:
        raise InputError("--dtype int8 with a model calibrates its activation ranges on "
                         "real inputs: give --calibration-data")
    check_input(calibration, "--calibration-data", "data")


def _param(field: str) -> str:
    """The command's parameter name of a layer field (``in`` is a keyword)."""
    return "in_" if field == "in" else field


def given_values(ctx: typer.Context) -> dict[str, Any]:
    """The command's values, a layer field not given left None: its default (shown in the
    help) is the kind's to apply, and an option not given never "does not apply"."""
    layer = {_param(f) for f in FIELDS}
    return {name: value if name not in layer or _given(ctx, name) else None
            for name, value in ctx.params.items()}


def use_of(model: str | None, arch: str | None) -> str:
    """Which use of compare the command line asks for: network, preset or layer."""
    if model is None:
        return "layer" if arch is None else "network"
    from ..services.analyse import looks_like_file

    return "network" if arch is not None or looks_like_file(model) else "preset"


def _given(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def check_applies(ctx: typer.Context, use: str, measure: bool) -> None:
    """Every option given applies to ``use`` (from its help panel), measurement options
    only with --measure; the first that does not is exit 2, naming what it applies to."""
    for param in ctx.command.params:
        if param.name is None or not _given(ctx, param.name):
            continue
        panel = getattr(param, "rich_help_panel", None)
        uses = OPTION_USES.get(param.name, PANEL_USES.get(panel or "", _ALL))
        flag = param.opts[0]
        if use not in uses:
            where = " or ".join(USES[u] for u in USES if u in uses)
            raise InputError(f"Invalid value for '{flag}': applies to {where}, not to "
                             f"{USES[use]}")
        if panel == MEASURE and not measure and param.name != "measure":
            raise InputError(f"Invalid value for '{flag}': applies with --measure")


def missing(option: str, what: str, example: str) -> InputError:
    """The one wording of a missing option (exit 2)."""
    return InputError(f"Missing option '{option}' ({what})", hint=f"e.g. {example}")


def compare_layers(values: dict[str, Any], dtype: Dtype, max_cases: int,
                   opts: MeasureOptions | None, recalibrate: bool, output: Output) -> None:
    """Layer cases: analytic, or measured with --measure."""
    example = "dsconv compare --in 256 --out 256 -k 3 --hw 14"
    if values["in"] is None:
        raise missing("--in", "input channels", example)
    if values["hw"] is None:
        raise missing("--hw", "input size", example)
    cases = build_cases(values, dtype.value, max_cases)
    if opts is None:
        output.emit(envelope([c.to_result() for c in cases]), compare_view)
        return
    from ..services.compare import measure_layers
    from .common import HOOKS

    run = measure_layers(cases, opts, recalibrate, HOOKS)
    extra: dict[str, Any] = {"interrupted": True} if run.failed == "interrupted" else {}
    if run.runtime_errors:
        extra["runtime_errors"] = run.runtime_errors
    output.emit(envelope(run.cases, environment=run.environment, **extra), compare_view)
    for rt, why in run.runtime_errors.items():
        print(f"Error: runtime {rt}: {why}", file=sys.stderr)
    if run.failed:
        raise typer.Exit(interrupt_exit_code() if run.failed == "interrupted" else 1)


def _positive(field: str, text: str | None, default: int) -> int:
    """One integer >= 1 of a model's option (no comma list: a model is not swept)."""
    if text is None:
        return default
    value = parse_value(field, text) if "," not in text else 0
    if value < 1:
        raise InputError(f"Invalid value for '{option_name(field)}': one integer >= 1 for a "
                         f"model, got {text!r}")
    return int(value)


def compare_preset(params: dict[str, Any], dtype: Dtype, opts: MeasureOptions | None,
                   recalibrate: bool, output: Output) -> None:
    """An architecture preset: per-stage (or per-layer) costs, optionally vs full convs."""
    from ..presets import get_preset
    from ..services.compare import analyse_preset, measure_preset
    from .common import HOOKS

    vs = params["vs"]
    if vs not in (None, Versus.full_conv.value):
        raise InputError(f"Invalid value for '--vs': {vs!r}; a preset takes --vs full-conv "
                         "(ds, presets and files apply to a saved model or --arch)")
    width, resolution, classes = params["width"], params["resolution"], params["classes"]
    try:
        preset = get_preset(params["model"], 1.0 if width is None else width,
                            224 if resolution is None else resolution,
                            1000 if classes is None else classes)
    except FieldError as e:
        raise InputError(f"Invalid value for '{option_name(e.field)}': {e.message}",
                         e.hint) from None
    nbatch = _positive("batch", params["batch"], 1)
    full, per_layer = vs is not None, params["per_layer"]
    if opts is None:
        d, environment = analyse_preset(preset, nbatch, dtype.value, per_layer, full), None
    else:
        d, environment = measure_preset(preset, nbatch, dtype.value, per_layer, full, opts,
                                        recalibrate, HOOKS)
    output.emit(envelope([d], environment=environment), preset_view)


def check_network_options(params: dict[str, Any], reports: list[tuple[Path, Any]]) -> None:
    """An option that modifies another needs it (``--vs-arch`` builds the ``--vs`` file's
    model); no ``--report`` may be the model or the ``--vs`` file (by path or inode)."""
    for opt in ("vs_arch", "vs_arch_kwargs"):
        if params[opt] is not None and params["vs"] is None:
            raise InputError(f"Invalid value for '{option_name(opt)}': needs --vs FILE "
                             "(the model it builds)")
    from ..plan import plan_path

    files: list[tuple[str, Path | None]] = [
        (f"--{k}", Path(params[k])) for k in ("model", "vs")
        if params[k] is not None and Path(params[k]).exists()]
    files += [(f"{label}'s plan", plan_path(p)) for label, p in files if p is not None]
    files += [arch_file("--arch", params["arch"]), arch_file("--vs-arch", params["vs_arch"])]
    check_distinct([("--report", p) for p, _ in reports], files)


def network_request(params: dict[str, Any]) -> Any:
    """A saved model or an architecture, as the command line describes it."""
    from ..plan import PlanOptions
    from ..services.analyse import ModelSource, NetworkRequest

    if params["input_shape"] is None:
        raise missing("--input-shape", "the whole input, batch included",
                      "--input-shape 1,3,224,224")
    if params["vs"] == Versus.full_conv.value:
        raise InputError("Invalid value for '--vs': full-conv applies to presets; a saved "
                         "model takes ds, a preset name or a model file")
    if params["depth"] < 0:
        raise InputError(f"Invalid value for '--depth': must be >= 0, got {params['depth']}")
    if params["min_channels"] < 1:
        raise InputError("Invalid value for '--min-channels': must be >= 1, got "
                         f"{params['min_channels']}")
    m = _positive("depth_multiplier", params["depth_multiplier"], 1)
    kwargs = parse_arch_kwargs(params["arch_kwargs"])
    model = params["model"]
    if model is not None and not Path(model).exists():
        raise InputError(f"--model {model}: no such file",
                         hint=f"a preset is one of {', '.join(PRESET_NAMES)}")
    if model is not None:
        check_input(Path(model), "--model", "model")  # a FIFO or device: one line
    shape = parse_input_shape(params["input_shape"])
    if params["batch"] is not None:
        shape = (_positive("batch", params["batch"], 1), *shape[1:])
    src = ModelSource(Path(model) if model else None, params["arch"], kwargs,
                      params["trust_pickle"], params["state_dict_key"], params["map_location"])
    plan = PlanOptions(params["min_channels"], tuple(params["include"] or ()),
                       tuple(params["exclude"] or ()), m)
    return NetworkRequest(src, shape, plan, params["depth"], params["vs"], params["vs_arch"],
                          parse_arch_kwargs(params["vs_arch_kwargs"], "--vs-arch-kwargs"))


def compare_network(request: Any, strict: bool, opts: MeasureOptions | None,
                    recalibrate: bool, output: Output) -> None:
    """A saved model or an architecture: per-module counts, DS opportunity, measurements."""
    from ..services.analyse import analyse_network
    from .common import HOOKS

    result, environment = analyse_network(request, opts, recalibrate, HOOKS)
    env = envelope([result], environment=environment)
    env["cases"][0]["depth_shown"] = request.depth
    output.emit(env, model_view)
    if strict and result.uncounted:
        ops = ", ".join(u.op for u in result.uncounted)
        raise fail(f"--strict: {len(result.uncounted)} op(s) are not counted: {ops}", 1)
