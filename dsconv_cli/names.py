"""Names the command line, the config and the torch backend share (stdlib only).

The CLI's ``--runtime`` choices and the config's ``runtime:`` validation come from
:data:`RUNTIME_NAMES`; :data:`dsconv_cli.torch_backend.runtimes.RUNTIMES` registers one
factory per name here (a test checks the two agree), so the CLI and config never import
torch to know them.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from .errors import InputError

__all__ = ["EXPORT_FORMATS", "PRESET_NAMES", "RUNTIME_HELP", "RUNTIME_NAMES", "csv_cell",
           "export_format", "safe_text", "short_name"]

#: runtime name -> one-line description, in the order help texts list them
RUNTIME_HELP: dict[str, str] = {
    "eager": "plain PyTorch",
    "compile": "torch.compile, inductor",
    "onnxruntime": "ONNX export timed in onnxruntime",
}
#: every runtime a case can be timed in
RUNTIME_NAMES: tuple[str, ...] = tuple(RUNTIME_HELP)

#: the presets' names, in :data:`dsconv_cli.presets.PRESETS`' order (a test checks the two
#: agree), so that the help lists them without building the presets' classes
PRESET_NAMES: tuple[str, ...] = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large",
                                 "mobilenet_v3_small", "efficientnet_b0")

#: what each suffix of ``convert --export`` writes
EXPORT_FORMATS: dict[str, str] = {".pt2": "torch.export", ".onnx": "onnx"}


def export_format(path: Path) -> str:
    """The format a ``--export`` path asks for, by its suffix."""
    fmt = EXPORT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"--export {path}: the suffix picks the format: .pt2 (torch.export) "
                         "or .onnx (ONNX Runtime)")
    return fmt


#: terminal escape sequences: CSI (``ESC [ ... final``), OSC / DCS / APC / PM / SOS strings
#: (ended by BEL or ``ESC \\``, or cut at the end), and two-byte ``ESC x`` ones
_ESCAPES = (r"\x1b\[[0-?]*[ -/]*[@-~]?"
                      r"|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\|$)"
                      r"|\x9b[0-?]*[ -/]*[@-~]?|[\x90\x9d\x9e\x9f][^\x07\x1b\x9c]*[\x07\x9c]?"
                      r"|\x1b[ -~]?")
#: what is left to show escaped: C0 and C1 controls, DEL, lone surrogates, and the
#: bidirectional overrides that reorder what a reader sees (Trojan Source)
_UNSAFE = "[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]"


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    """A pattern compiled on first use (start-up time: most names need none)."""
    return re.compile(pattern)


def safe_text(text: str) -> str:
    """A name a user file supplied (a case, layer or module name), safe to show: terminal
    escape sequences removed, every other control character, lone surrogate and bidi
    override shown as its escape (``\\n``, ``\\x07``, ``\\u202e``), never obeyed. The one
    sanitiser of every table, report and message."""
    text = str(text)
    if text.isprintable():  # no control, surrogate or format character: nothing to do
        return text
    text = _compiled(_ESCAPES).sub("", text)
    return _compiled(_UNSAFE).sub(_escaped, text)


def _escaped(m: re.Match[str]) -> str:
    c = m.group()
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if c in named:
        return named[c]
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


#: the longest name an error message echoes whole
NAME_MAX = 80


def short_name(text: str, limit: int = NAME_MAX) -> str:
    """``text`` made safe (:func:`safe_text`) and, when longer than ``limit``, cut in the
    middle with its length said: a 1 MB layer name is never echoed whole."""
    text = safe_text(text)
    if len(text) <= limit:
        return text
    half = max(1, (limit - 20) // 2)
    return f"{text[:half]}...{text[-half:]} ({len(text):,} characters)"


#: a cell a spreadsheet would read as a formula (OWASP's CSV injection list)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z"


def csv_cell(value: object) -> object:
    """A CSV cell: numbers as they are (``-3`` stays a number), text made safe
    (:func:`safe_text`) and, when it starts with ``=``, ``+``, ``-``, ``@``, a tab or a
    carriage return, prefixed with a single quote so that a spreadsheet shows it as text
    instead of running it (OWASP, CSV injection); a lone ``-`` (no value) stays."""
    if not isinstance(value, str):
        return value
    value = safe_text(value)  # first: an escape sequence may hide a leading "="
    if (value.startswith(_FORMULA_START) and value != "-"
            and not _compiled(_NUMBER).match(value)):
        value = "'" + value
    return value
