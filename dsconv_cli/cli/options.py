"""Options shared by several commands, defined once and spelled the same everywhere.

Each alias is an ``Annotated`` type; commands give the default after ``=``. Choices come
from the registries (devices and layouts from :mod:`dsconv_cli.options`, element types
from :data:`dsconv_cli.cost.DTYPE_BYTES`, runtimes from :mod:`dsconv_cli.names`, formats
and report extensions from :mod:`dsconv_cli.render`); a test checks the enums here agree.
Metavars read as values (``INT``, ``SHAPE``, ``PATH``); where an option does not set one,
:mod:`.app` derives it from the type.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import InputError
from ..names import RUNTIME_HELP, RUNTIME_NAMES
from ..options import MEMORY_FORMAT_NAMES, MeasureOptions, choose
from ..render import OutputFormat
from ..render.formats import report_extensions


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"
    auto = "auto"


class Dtype(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"
    int8 = "int8"


class MemoryFormat(str, Enum):
    nchw = "nchw"
    channels_last = "channels_last"
    both = "both"


MEASURE = "Measurement"
OUTPUT = "Output"

DeviceOpt = Annotated[Device, typer.Option(
    "--device", help="Where to time layers (auto = cuda if available).",
    rich_help_panel=MEASURE)]
ThreadsOpt = Annotated[Optional[int], typer.Option(
    "--threads", help="CPU threads for measurement (default: torch's current setting).",
    rich_help_panel=MEASURE)]
MemoryFormatOpt = Annotated[MemoryFormat, typer.Option(
    "--memory-format", help="Tensor layout to measure; 'both' times each and names the "
    "winner.", rich_help_panel=MEASURE)]
MinTimeOpt = Annotated[float, typer.Option(
    "--min-time", metavar="SECONDS", help="Seconds of timed runs per layer (at least).",
    rich_help_panel=MEASURE)]
WarmupOpt = Annotated[int, typer.Option(
    "--warmup", help="Untimed calls before timing, on top of the timer's own.",
    rich_help_panel=MEASURE)]
RoundsOpt = Annotated[int, typer.Option(
    "--rounds", help="Interleaved A/B rounds (blocks per side, 10 to 10,000) wherever two "
    "things are timed against each other.", rich_help_panel=MEASURE)]
RuntimeOpt = Annotated[str, typer.Option(
    "--runtime", metavar="NAME[,NAME]", help="Where to time: "
    + ", ".join(f"{name} ({what})" for name, what in RUNTIME_HELP.items())
    + "; a comma list times each (onnxruntime needs dsconv\\[onnx]).",
    rich_help_panel=MEASURE)]
class QuantizeScheme(str, Enum):
    per_channel = "per-channel"
    per_tensor = "per-tensor"


QuantizeSchemeOpt = Annotated[QuantizeScheme, typer.Option(
    "--quantize-scheme", help="int8 weights: one range per output channel, or one per "
    "tensor (depthwise filters' ranges differ widely: per-tensor loses more).",
    rich_help_panel=MEASURE)]
RecalibrateOpt = Annotated[bool, typer.Option(
    "--recalibrate", help="Re-measure peak FLOP/s and bandwidth instead of using the cache.",
    rich_help_panel=MEASURE)]
FormatOpt = Annotated[OutputFormat, typer.Option(
    "--format", "-f", help="Format of the report on stdout.", rich_help_panel=OUTPUT)]
JsonOpt = Annotated[bool, typer.Option(
    "--json", help="Short for --format json (refused with another --format).",
    rich_help_panel=OUTPUT)]
ReportOpt = Annotated[Optional[list[Path]], typer.Option(
    "--report", metavar="PATH", help=f"Also write the report to PATH ({report_extensions()}"
    "); repeatable.", rich_help_panel=OUTPUT, dir_okay=False)]
WideOpt = Annotated[bool, typer.Option(
    "--wide", help="Show every column, however wide (by default a table fits the terminal "
    "and names the columns it hid).", rich_help_panel=OUTPUT)]
ColumnsOpt = Annotated[Optional[str], typer.Option(
    "--columns", metavar="NAME[,NAME]", help="Only these table columns (the first, the "
    "row's name, is always shown), e.g. params,macs,speedup; JSON keeps everything.",
    rich_help_panel=OUTPUT, show_default=False)]


class SortBy(str, Enum):
    saving = "saving"
    macs = "macs"
    time = "time"


SortOpt = Annotated[Optional[SortBy], typer.Option(
    "--sort", help="A model's table: its innermost shown modules, largest first, by MACs a "
    "DS conversion saves, MACs, or measured time (needs --measure).", rich_help_panel=OUTPUT,
    show_default=False)]
TopOpt = Annotated[Optional[int], typer.Option(
    "--top", metavar="N", help="A model's table: only the first N modules (says how many "
    "more).", rich_help_panel=OUTPUT, show_default=False)]

# ------------------------------------------------------------- loading a model (compare, convert)

LOAD = "Loading a model (safe by default)"
PICK = "Which convs (as convert takes them)"

InputShapeOpt = Annotated[Optional[str], typer.Option(
    "--input-shape", metavar="SHAPE", help="The whole input, batch included (e.g. "
    "1,3,224,224).", rich_help_panel=LOAD)]
MapLocationOpt = Annotated[str, typer.Option(
    "--map-location", metavar="DEVICE", help="Device the file's tensors load onto.",
    rich_help_panel=LOAD)]
TrustPickleOpt = Annotated[bool, typer.Option(
    "--trust-pickle", help="Allow a pickled nn.Module. DANGER: unpickling runs code from "
    "the file; use it only for files you trust.", rich_help_panel=LOAD)]
StateDictKeyOpt = Annotated[Optional[str], typer.Option(
    "--state-dict-key", metavar="KEY", help="Key of the state_dict inside a checkpoint dict.",
    rich_help_panel=LOAD)]
ArchOpt = Annotated[Optional[str], typer.Option(
    "--arch", metavar="CALLABLE", help="Builds the model: package.module:callable, "
    "path/file.py:callable, or a preset name (needed for a state_dict; alone, analyses the "
    "architecture without weights).", rich_help_panel=LOAD)]
ArchKwargsOpt = Annotated[Optional[str], typer.Option(
    "--arch-kwargs", metavar="JSON", help="JSON object of keyword arguments for --arch.",
    rich_help_panel=LOAD)]
MinChannelsOpt = Annotated[int, typer.Option(
    "--min-channels", help="Skip convs with fewer input channels.", rich_help_panel=PICK)]
IncludeOpt = Annotated[Optional[list[str]], typer.Option(
    "--include", metavar="GLOB", help="Only layers whose name matches this glob "
    "(repeatable).", rich_help_panel=PICK)]
ExcludeOpt = Annotated[Optional[list[str]], typer.Option(
    "--exclude", metavar="GLOB", help="Skip layers whose name matches this glob "
    "(repeatable).", rich_help_panel=PICK)]


#: how deep ``--arch-kwargs`` may nest (a builder's options, not a data structure)
MAX_KWARGS_DEPTH = 32


def _depth(value: Any) -> int:
    """How deep lists and objects nest in a JSON value (iterative: no recursion)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        v, d = todo.pop()
        deepest = max(deepest, d)
        if isinstance(v, dict):
            todo.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            todo.extend((x, d + 1) for x in v)
    return deepest


def parse_arch_kwargs(text: str | None, option: str = "--arch-kwargs") -> dict[str, Any]:
    """``--arch-kwargs``: a JSON object, or exit 2 saying what is wrong."""
    import json

    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{option}: not valid JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise InputError(f"{option}: nested deeper than {MAX_KWARGS_DEPTH} levels") from None
    if _depth(value) > MAX_KWARGS_DEPTH:
        raise InputError(f"{option}: nested deeper than {MAX_KWARGS_DEPTH} levels")
    if not isinstance(value, dict):
        raise InputError(f"{option}: must be a JSON object like '{{\"num_classes\": 10}}'")
    return value


def parse_runtimes(text: str) -> tuple[str, ...]:
    """``--runtime``: one name or a comma list of :data:`RUNTIME_NAMES`, each once."""
    names = tuple(dict.fromkeys(r.strip() for r in text.split(",") if r.strip()))
    if not names:
        raise InputError(f"--runtime: give at least one of {', '.join(RUNTIME_NAMES)}")
    return tuple(choose("--runtime", name, RUNTIME_NAMES) for name in names)


def measure_options(device: Device, dtype: Dtype, threads: int | None,
                    memory_format: MemoryFormat, min_time: float, warmup: int,
                    rounds: int = 10, runtime: str = "eager",
                    quantize_scheme: QuantizeScheme = QuantizeScheme.per_channel,
                    calibration_data: Path | None = None) -> MeasureOptions:
    """The measurement options of the command line, checked (``--dtype int8``: ONNX
    Runtime installed and asked for)."""
    from ..options import check_int8

    if not 10 <= rounds <= 10_000:
        raise InputError(f"--rounds must be 10 to 10,000, got {rounds}")
    fmts = (MEMORY_FORMAT_NAMES if memory_format is MemoryFormat.both
            else (memory_format.value,))
    opts = MeasureOptions(device.value, dtype.value, threads, fmts, min_time, warmup,
                          rounds=rounds, runtimes=parse_runtimes(runtime),
                          quantize_scheme=quantize_scheme.value,
                          calibration_data=None if calibration_data is None
                          else str(calibration_data))
    check_int8(opts)
    return opts
