"""Options shared by several commands, defined once and spelled the same everywhere.

Each alias is an ``Annotated`` type; commands give the default after ``=``.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..render import OutputFormat


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
DtypeOpt = Annotated[Dtype, typer.Option(
    "--dtype", help="Element type: sizes the bytes moved; measured layers run in it "
    "(int8 is analytic only).")]
ThreadsOpt = Annotated[Optional[int], typer.Option(
    "--threads", help="CPU threads for measurement (default: torch's current setting).",
    rich_help_panel=MEASURE)]
MemoryFormatOpt = Annotated[MemoryFormat, typer.Option(
    "--memory-format", help="Tensor layout to measure; 'both' times each and names the "
    "winner.", rich_help_panel=MEASURE)]
MinTimeOpt = Annotated[float, typer.Option(
    "--min-time", help="Seconds of timed runs per layer (at least).",
    rich_help_panel=MEASURE)]
WarmupOpt = Annotated[int, typer.Option(
    "--warmup", help="Untimed calls before timing, on top of the timer's own.",
    rich_help_panel=MEASURE)]
RoundsOpt = Annotated[int, typer.Option(
    "--rounds", help="Interleaved A/B rounds (blocks per side, at least 10) wherever two "
    "things are timed against each other.", rich_help_panel=MEASURE)]
RuntimeOpt = Annotated[str, typer.Option(
    "--runtime", help="Where to time: eager, compile (torch.compile, inductor), onnxruntime "
    "(needs dsconv\\[onnx]); a comma list times each.", rich_help_panel=MEASURE)]
RecalibrateOpt = Annotated[bool, typer.Option(
    "--recalibrate", help="Re-measure peak FLOP/s and bandwidth instead of using the cache.",
    rich_help_panel=MEASURE)]
FormatOpt = Annotated[OutputFormat, typer.Option(
    "--format", "-f", help="Format of the report on stdout.", rich_help_panel=OUTPUT)]
JsonOpt = Annotated[bool, typer.Option(
    "--json", help="Short for --format json.", rich_help_panel=OUTPUT)]
ReportOpt = Annotated[Optional[list[Path]], typer.Option(
    "--report", help="Also write the report to PATH (.json, .csv or .md); repeatable.",
    rich_help_panel=OUTPUT, dir_okay=False)]

# ------------------------------------------------------------- loading a model (compare, convert)

LOAD = "Loading a model (safe by default)"
PICK = "Which convs (as convert takes them)"

InputShapeOpt = Annotated[Optional[str], typer.Option(
    "--input-shape", help="The whole input, batch included (e.g. 1,3,224,224).")]
MapLocationOpt = Annotated[str, typer.Option(
    "--map-location", help="Device the file's tensors load onto.", rich_help_panel=LOAD)]
TrustPickleOpt = Annotated[bool, typer.Option(
    "--trust-pickle", help="Allow a pickled nn.Module. DANGER: unpickling runs code from "
    "the file; use it only for files you trust.", rich_help_panel=LOAD)]
StateDictKeyOpt = Annotated[Optional[str], typer.Option(
    "--state-dict-key", help="Key of the state_dict inside a checkpoint dict.",
    rich_help_panel=LOAD)]
ArchOpt = Annotated[Optional[str], typer.Option(
    "--arch", help="Builds the model: package.module:callable, path/file.py:callable, or a "
    "preset name (needed for a state_dict; alone, analyses the architecture without "
    "weights).", rich_help_panel=LOAD)]
ArchKwargsOpt = Annotated[Optional[str], typer.Option(
    "--arch-kwargs", help="JSON object of keyword arguments for --arch.",
    rich_help_panel=LOAD)]
MinChannelsOpt = Annotated[int, typer.Option(
    "--min-channels", help="Skip convs with fewer input channels.", rich_help_panel=PICK)]
IncludeOpt = Annotated[Optional[list[str]], typer.Option(
    "--include", help="Only layers whose name matches this glob (repeatable).",
    rich_help_panel=PICK)]
ExcludeOpt = Annotated[Optional[list[str]], typer.Option(
    "--exclude", help="Skip layers whose name matches this glob (repeatable).",
    rich_help_panel=PICK)]


def parse_arch_kwargs(text: str | None) -> dict[str, Any]:
    """``--arch-kwargs``: a JSON object, or exit 2 saying what is wrong."""
    import json

    from ..errors import InputError

    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"--arch-kwargs: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(value, dict):
        raise InputError("--arch-kwargs: must be a JSON object like '{\"num_classes\": 10}'")
    return value
