"""Options shared by several commands, defined once and spelled the same everywhere.

Each alias is an ``Annotated`` type; commands give the default after ``=``.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

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
