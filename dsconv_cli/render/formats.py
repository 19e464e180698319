"""Format writers: one class per ``--format`` value behind the :class:`Renderer` protocol.

A renderer writes a report envelope through a command's view onto a text stream. Adding a
format is one class here and one entry in :data:`RENDERERS` (and, for ``--report`` files,
an extension in :data:`EXTENSIONS`). Rich is imported only to draw a table.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from enum import Enum
from typing import IO, Any, Protocol

from .views import Table, View

__all__ = [
    "EXTENSIONS",
    "RENDERERS",
    "OutputFormat",
    "Renderer",
    "format_from_path",
    "json_safe",
    "make_console",
    "render_text",
]


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


class Renderer(Protocol):
    """Writes an envelope, through a command's view, onto ``out``."""

    #: whether the format can go to a ``--report`` file (a table needs a console)
    file_ok: bool

    def write(self, env: dict[str, Any], view: View, out: IO[str]) -> None: ...


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by ``None``: JSON has no NaN."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


class JsonRenderer:
    file_ok = True

    def write(self, env: dict[str, Any], view: View, out: IO[str]) -> None:
        out.write(json.dumps(json_safe(env), indent=2, allow_nan=False) + "\n")


class CsvRenderer:
    """Every table, one after another; each row starts with its table's title."""

    file_ok = True

    def write(self, env: dict[str, Any], view: View, out: IO[str]) -> None:
        w = csv.writer(out, lineterminator="\n")
        for i, t in enumerate(view(env)):
            if i:
                out.write("\n")
            w.writerow(["table", *t.columns])
            w.writerows([t.title, *(getattr(c, "raw", c) for c in r)] for r in t.rows)


class MarkdownRenderer:
    file_ok = True

    def write(self, env: dict[str, Any], view: View, out: IO[str]) -> None:
        lines: list[str] = []
        for t in view(env):
            lines.append(f"### {t.title}\n")
            lines.append("| " + " | ".join(t.columns) + " |")
            lines.append("|" + "|".join("---" if i == 0 else "---:"
                                        for i in range(len(t.columns))) + "|")
            lines.extend("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |"
                         for r in t.rows)
            lines.append("")
            lines.extend(f"- {n}" for n in t.notes)
            lines.append("")
        out.write("\n".join(lines))


class TableRenderer:
    """Rich tables on a console; the width and colour follow the environment."""

    file_ok = False

    def write(self, env: dict[str, Any], view: View, out: IO[str]) -> None:
        console = make_console(file=None if out is sys.stdout else out)
        for t in view(env):
            console.print(_rich_table(t))
            for note in t.notes:
                console.print(note, markup=False, highlight=False)
            console.print()


RENDERERS: dict[OutputFormat, Renderer] = {
    OutputFormat.table: TableRenderer(),
    OutputFormat.json: JsonRenderer(),
    OutputFormat.csv: CsvRenderer(),
    OutputFormat.markdown: MarkdownRenderer(),
}

#: ``--report`` file extension -> format
EXTENSIONS = {".json": OutputFormat.json, ".csv": OutputFormat.csv,
              ".md": OutputFormat.markdown, ".markdown": OutputFormat.markdown}


def format_from_path(path: str) -> OutputFormat | None:
    return EXTENSIONS.get(os.path.splitext(path)[1].lower())


def render_text(env: dict[str, Any], fmt: OutputFormat, view: View) -> str:
    """The report as a string (what a ``--report`` file holds)."""
    import io

    buf = io.StringIO()
    RENDERERS[fmt].write(env, view, buf)
    return buf.getvalue()


def make_console(stderr: bool = False, file: IO[str] | None = None) -> Any:
    """A Rich console whose width and colour come from the environment at call time:
    ``DSCONV_WIDTH`` or ``COLUMNS`` fix the width, ``NO_COLOR`` turns colour off."""
    from rich.console import Console

    width: int | None = None
    for var in ("DSCONV_WIDTH", "COLUMNS"):  # a value that is not a width is ignored
        text = os.environ.get(var, "").strip()
        if text.isdigit() and 20 <= int(text) <= 10_000:
            width = int(text)
            break
    stream = file or (sys.stderr if stderr else sys.stdout)
    if width is None and not stream.isatty():
        width = 200  # piped or redirected: don't squeeze tables into 80 columns
    return Console(
        file=file, stderr=stderr, width=width,
        no_color="NO_COLOR" in os.environ, highlight=False, soft_wrap=False,
    )


def _rich_table(t: Table) -> Any:
    from rich import box
    from rich.table import Table as RichTable
    from rich.text import Text

    rt = RichTable(title=Text(t.title, style="bold"), box=box.SIMPLE_HEAVY, title_justify="left")
    for i, c in enumerate(t.columns):
        # fold, never ellipsis: a narrow terminal wraps a number, it never cuts one off
        rt.add_column(c, justify="left" if i == 0 else "right", overflow="fold")
    for i, row in enumerate(t.rows):
        rt.add_row(*(Text(c) for c in row), style=t.styles[i] if i < len(t.styles) else None)
    return rt
