"""Results that render themselves (the Python API: ``print(result)``, Rich, notebooks).

Each is a report envelope drawn through its command's view (named, as in
:mod:`.views`) by the format writers the command line uses: the table format for ``str``
and Rich, the Markdown format for notebooks (as Markdown, and as HTML made from it). Rich
and its Markdown parser are imported here only, when something is drawn.
"""

from __future__ import annotations

import io
import shutil
import sys
from typing import Any

from . import views
from .formats import MarkdownRenderer, env_width, table_parts
from .layout import View

__all__ = ["html_text", "markdown_text", "rich_renderable", "table_text", "terminal_width"]

#: the width a table is drawn at when neither the environment nor a terminal gives one
DESIGN_WIDTH = 80


def terminal_width() -> int:
    """``DSCONV_WIDTH`` or ``COLUMNS``, else the terminal's width when stdout is one, else
    80 (a notebook, a pipe, a test's captured output)."""
    width = env_width()
    if width is not None:
        return width
    try:
        if sys.stdout.isatty():
            return shutil.get_terminal_size((DESIGN_WIDTH, 24)).columns
    except (AttributeError, ValueError, OSError):  # a replaced or closed stdout
        pass
    return DESIGN_WIDTH


def _view(name: str) -> View:
    view: View = getattr(views, name)
    return view


def table_text(env: dict[str, Any], view: str, width: int | None = None) -> str:
    """The report as the table format prints it at ``width`` (default: the terminal's),
    without colour."""
    from rich.console import Console

    width = width or terminal_width()
    buf = io.StringIO()
    console = Console(file=buf, width=width, no_color=True, highlight=False, soft_wrap=False,
                      color_system=None)
    for item, need in table_parts(env, _view(view), width):
        console.width = max(width, need)
        console.print(item)
    return buf.getvalue().rstrip("\n")


class _Report:
    """A Rich renderable of a report, drawn at the width Rich offers it."""

    def __init__(self, env: dict[str, Any], view: str) -> None:
        self.env, self.view = env, view

    def __rich_console__(self, console: Any, options: Any) -> Any:
        for item, _ in table_parts(self.env, _view(self.view), options.max_width):
            yield item


def rich_renderable(env: dict[str, Any], view: str) -> Any:
    """What ``__rich__`` returns: the table format's tables and notes, drawn at the
    console's width (and in its colours) when Rich prints it."""
    return _Report(env, view)


def markdown_text(env: dict[str, Any], view: str) -> str:
    """The report in the Markdown format (what ``--format markdown`` prints)."""
    buf = io.StringIO()
    MarkdownRenderer().write(env, _view(view), buf)
    return buf.getvalue()


def html_text(env: dict[str, Any], view: str) -> str:
    """The Markdown format as HTML (tables as ``<table>``), for a notebook's display; its
    parser, markdown-it-py, comes with Rich."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": True}).enable("table")
    return str(md.render(markdown_text(env, view)))
