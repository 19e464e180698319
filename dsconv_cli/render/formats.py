"""Format writers: one class per ``--format`` value behind the :class:`Renderer` protocol.

A renderer writes a report envelope through a command's view onto a text stream. Adding a
format is one class here and one entry in :data:`RENDERERS` (and, for ``--report`` files,
an extension in :data:`EXTENSIONS`). Rich is imported only to draw a table.
"""

from __future__ import annotations

import math
import os
import sys
from enum import Enum
from typing import IO, Any, Protocol

from ..names import csv_cell, safe_text
from .layout import PRIORITY, Table, View

__all__ = [
    "EXTENSIONS",
    "RENDERERS",
    "OutputFormat",
    "Renderer",
    "env_width",
    "format_from_path",
    "report_extensions",
    "json_safe",
    "make_console",
    "render_text",
    "table_parts",
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
        import json

        out.write(json.dumps(json_safe(env), indent=2, allow_nan=False) + "\n")


def _picked(t: Table) -> list[int]:
    """The columns ``--columns`` picked (all without it); the first is always kept."""
    pick = set(t.layout.columns)
    return [i for i, c in enumerate(t.columns) if i == 0 or not pick or c in pick]


def _raw(c: str) -> Any:
    return getattr(c, "raw", c)


class CsvRenderer:
    """Every table, one after another (a blank line apart): a header row, then one row per
    table row with raw numbers; a hierarchy's names are bare, its levels in ``depth``.
    Like JSON it holds every column (``--columns`` picks for people, not machines)."""

    file_ok = True

    def write(self, env: dict[str, Any], view: View, out: IO[str]) -> None:
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        for k, t in enumerate(view(env)):
            if k:
                buf.write("\n")
            cols = list(range(len(t.columns)))
            nested = any(t.depths)
            head = [csv_cell(t.columns[i]) for i in cols]
            w.writerow(head[:1] + ["depth"] + head[1:] if nested else head)
            for r, row in enumerate(t.rows):
                cells = [csv_cell(_raw(row[i])) for i in cols]
                w.writerow(cells[:1] + [t.depth(r)] + cells[1:] if nested else cells)
        write_encodable(out, buf.getvalue())


def md_escape(text: str) -> str:
    """A Markdown table cell: made safe (escapes gone, controls shown), pipes escaped,
    HTML kept from breaking the row."""
    text = safe_text(text).replace("&", "&amp;").replace("<", "&lt;").replace("|", "\\|")
    return text.replace("\\r\\n", "<br>").replace("\\n", "<br>").replace("\\r", "<br>")


class MarkdownRenderer:
    """For a PR comment or a CI job summary: verdicts and failures first, the table (the
    hierarchy indented), notes, and the counting conventions folded away."""

    file_ok = True

    def write(self, env: dict[str, Any], view: View, out: IO[str]) -> None:
        lines: list[str] = []
        for t in view(env):
            lines.append(f"### {md_escape(t.title)}\n")
            if t.summary:
                lines += [f"**{md_escape(t.summary)}**", ""]
            if t.alerts:
                lines += [f"- {md_escape(a)}" for a in t.alerts] + [""]
            cols = _picked(t)
            lines.append("| " + " | ".join(md_escape(t.columns[i]) for i in cols) + " |")
            lines.append("|" + "|".join("---" if i == 0 else "---:" for i in cols) + "|")
            for r, row in enumerate(t.rows):
                cells = [md_escape(row[i]) for i in cols]
                cells[0] = "&emsp;" * t.depth(r) + cells[0]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
            if t.notes:
                lines += [f"- {md_escape(n)}" for n in t.notes] + [""]
            if t.conventions:
                lines += ["<details><summary>Counting conventions</summary>", "",
                          md_escape(t.conventions), "", "</details>", ""]
        write_encodable(out, "\n".join(lines))


class TableRenderer:
    """Rich tables on a console; the width and colour follow the environment. A table
    wider than the console drops its lowest-priority columns and says which."""

    file_ok = False

    def write(self, env: dict[str, Any], view: View, out: IO[str]) -> None:
        """The whole report is rendered before any of it is written (an encoding the
        stream lacks is never an error half-way through a table)."""
        global _ENCODING
        console = make_console(file=None if out is sys.stdout else out)
        _ENCODING = getattr(out, "encoding", None)  # cells escaped before the layout
        try:
            with console.capture() as captured:
                width = console.width
                for item, need in table_parts(env, view, width):
                    console.width = max(width, need)  # --wide: as wide as needed
                    console.print(item)
                console.width = width
        finally:
            _ENCODING = None
        write_encodable(out, captured.get())


def table_parts(env: dict[str, Any], view: View, width: int) -> list[tuple[Any, int]]:
    """What the table format prints at ``width``, in order: Rich renderables, each with
    the width it needs (wider than ``width`` only for ``--wide``). Every text a user file
    may have supplied goes through the sanitiser."""
    from rich.text import Text

    out: list[tuple[Any, int]] = []

    def line(text: str, style: str = "") -> None:
        out.append((Text(text, style=style), width))

    for t in view(env):
        for text in ([t.summary] if t.summary else []) + t.alerts:
            line(_cell_text(text))
        line(_cell_text(t.title), "bold")
        rt, hidden, need = _rich_table(t, width)
        out.append((rt, need))
        if hidden:
            line(f"hidden at {width} columns: {', '.join(hidden)} (--wide shows all)")
        conventions = t.brief or t.conventions
        for note in [*map(_cell_text, t.notes), *([conventions] if conventions else [])]:
            line(note)
        line("")
    return out


def write_encodable(out: IO[str], text: str) -> None:
    """``text`` to ``out`` in one write; what the stream's encoding cannot hold
    (``PYTHONIOENCODING=ascii``) shown as its escape (``\\xe9``), never an error."""
    encoding = getattr(out, "encoding", None)
    if encoding:
        try:
            text.encode(encoding)
        except UnicodeEncodeError:
            text = text.encode(encoding, "backslashreplace").decode(encoding)
        except LookupError:
            pass
    out.write(text)


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


def report_extensions() -> str:
    """The ``--report`` extensions as help texts and messages list them (from
    :data:`EXTENSIONS`): ``.json, .csv, .md or .markdown``."""
    names = [ext for ext, fmt in EXTENSIONS.items() if RENDERERS[fmt].file_ok]
    return ", ".join(names[:-1]) + " or " + names[-1]


def render_text(env: dict[str, Any], fmt: OutputFormat, view: View) -> str:
    """The report as a string (what a ``--report`` file holds)."""
    import io

    buf = io.StringIO()
    RENDERERS[fmt].write(env, view, buf)
    return buf.getvalue()


def env_width() -> int | None:
    """The width ``DSCONV_WIDTH`` or ``COLUMNS`` fixes (a value that is not a width is
    ignored), else None."""
    for var in ("DSCONV_WIDTH", "COLUMNS"):
        text = os.environ.get(var, "").strip()
        if text.isdigit() and 20 <= int(text) <= 10_000:
            return int(text)
    return None


def make_console(stderr: bool = False, file: IO[str] | None = None) -> Any:
    """A Rich console whose width and colour come from the environment at call time:
    ``DSCONV_WIDTH`` or ``COLUMNS`` fix the width, ``NO_COLOR`` turns colour off."""
    from rich.console import Console

    width = env_width()
    stream = file or (sys.stderr if stderr else sys.stdout)
    if width is None and not stream.isatty():
        width = 200  # piped or redirected: don't squeeze tables into 80 columns
    return Console(
        file=file, stderr=stderr, width=width,
        no_color="NO_COLOR" in os.environ, highlight=False, soft_wrap=False,
    )


#: the encoding of the stream a table is being rendered for (None: any)
_ENCODING: str | None = None


def _cell_text(text: str) -> str:
    """A cell on one line: escape sequences gone, control characters shown, never
    obeyed (:func:`dsconv_cli.names.safe_text`); what the stream's encoding lacks shown
    as its escape, before the columns are sized."""
    text = safe_text(text)
    if _ENCODING:
        try:
            text.encode(_ENCODING)
        except UnicodeEncodeError:
            text = text.encode(_ENCODING, "backslashreplace").decode(_ENCODING)
        except LookupError:
            pass
    return text


def _needs(t: Table, cols: list[int]) -> dict[int, int]:
    """Each column's natural width: its longest cell or header (the first column with its
    rows' indents)."""
    from rich.cells import cell_len

    need = {i: max([cell_len(t.columns[i])] + [cell_len(_cell_text(r[i])) for r in t.rows])
            for i in cols}
    need[0] = max([cell_len(t.columns[0])] + [2 * t.depth(k) + cell_len(_cell_text(r[0]))
                                              for k, r in enumerate(t.rows)])
    return need


def fit(t: Table, width: int) -> tuple[list[int], list[str], int, int]:
    """The columns shown at ``width``, the ones hidden for lack of room (lowest priority
    first; the first column is never hidden, only abbreviated), the first column's width
    and the table's. ``--wide`` hides nothing."""
    from rich.cells import cell_len

    cols = _picked(t)
    need = _needs(t, cols)
    hidden: list[int] = []

    def total(first: int) -> int:  # each column: its text, 2 of padding, 1 between two
        return first + 2 + sum(need[i] + 3 for i in cols[1:] if i not in hidden)

    if t.layout.wide:
        return cols, [], need[0], total(need[0])
    names = [_cell_text(r[0]) for r in t.rows]
    shared = len(_shared_prefix(names))
    first_min = min(need[0], max(12, cell_len(t.columns[0]),
                                 need[0] - shared + (1 if shared else 0)))
    # names stay whole while there is a column of lower priority than the key numbers to
    # drop; then names are abbreviated, and only then key numbers go
    for first, floor in ((need[0], 2), (first_min, 1)):
        while total(first) > width:
            left = [i for i in cols[1:] if i not in hidden
                    and PRIORITY.get(t.columns[i], 3) >= floor]
            if not left:
                break
            hidden.append(max(left, key=lambda i: (PRIORITY.get(t.columns[i], 3), i)))
    first = max(first_min, min(need[0], width - total(0)))
    shown = [i for i in cols if i not in hidden]
    return shown, [t.columns[i] for i in sorted(hidden)], first, min(width, total(first))


def _rich_table(t: Table, width: int) -> tuple[Any, list[str], int]:
    from rich import box
    from rich.table import Table as RichTable
    from rich.text import Text

    shown, hidden, first, total = fit(t, width)
    rt = RichTable(box=box.SIMPLE_HEAVY, show_edge=False)
    for i in shown:
        # never split: numbers always fit whole (columns are hidden first); only the
        # first column (a name) may be abbreviated with an ellipsis
        rt.add_column(t.columns[i], justify="left" if i == 0 else "right", no_wrap=True,
                      overflow="ellipsis", max_width=first if i == 0 else None)
    names = _abbreviate([_cell_text(r[0]) for r in t.rows],
                        [first - 2 * t.depth(r) for r in range(len(t.rows))])
    for r, row in enumerate(t.rows):
        cells = [names[r], *(_cell_text(row[i]) for i in shown[1:])]
        cells[0] = "  " * t.depth(r) + cells[0]
        rt.add_row(*(Text(c) for c in cells), style=t.styles[r] if r < len(t.styles) else None)
    return rt, hidden, max(width, total)


def _shared_prefix(names: list[str]) -> str:
    """What every name starts with, up to a separator (``separable[`` of a sweep's
    ``separable[in=32,kernel=3]``): the part an abbreviation can leave out."""
    import os.path

    if len(names) < 2:
        return ""
    common = os.path.commonprefix(names)
    cut = max(common.rfind(c) for c in "[.,_ /:(")
    return common[:cut + 1] if cut >= 0 else ""


def _abbreviate(names: list[str], room: list[int]) -> list[str]:
    """Names that fit their room, shortened from the left so the part that tells them
    apart stays: first the prefix they all share becomes ``…``, then any name still too
    long keeps its end."""
    from rich.cells import cell_len

    if all(cell_len(n) <= w for n, w in zip(names, room, strict=True)):
        return names
    shared = _shared_prefix(names)
    out = []
    for n, w in zip(names, room, strict=True):
        if shared and cell_len(n) > w:
            n = "…" + n[len(shared):]
        while cell_len(n) > max(w, 1):
            n = "…" + n[2:] if n.startswith("…") else "…" + n[1:]
        out.append(n)
    return out
