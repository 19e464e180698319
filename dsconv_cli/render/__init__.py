"""Output: command views (:mod:`.views`) and format writers (:mod:`.formats`).

The only package that formats output, and the only user of Rich for it.
"""

from .formats import (
    EXTENSIONS,
    RENDERERS,
    OutputFormat,
    Renderer,
    format_from_path,
    make_console,
    render_text,
)
from .layout import Layout
from .views import (
    COUNTING_NOTE,
    Table,
    View,
    bind,
    compare_view,
    convert_view,
    fmt_bytes,
    fmt_int,
    layout_for,
    model_view,
    preset_view,
    profile_view,
)

__all__ = [
    "COUNTING_NOTE",
    "EXTENSIONS",
    "Layout",
    "RENDERERS",
    "OutputFormat",
    "Renderer",
    "Table",
    "View",
    "bind",
    "compare_view",
    "convert_view",
    "fmt_bytes",
    "fmt_int",
    "layout_for",
    "format_from_path",
    "make_console",
    "model_view",
    "preset_view",
    "profile_view",
    "render_text",
]
