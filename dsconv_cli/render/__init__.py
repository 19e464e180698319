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
from .views import (
    COUNTING_NOTE,
    Table,
    View,
    compare_view,
    convert_view,
    fmt_bytes,
    fmt_int,
    model_view,
    preset_view,
    profile_view,
)

__all__ = [
    "COUNTING_NOTE",
    "EXTENSIONS",
    "RENDERERS",
    "OutputFormat",
    "Renderer",
    "Table",
    "View",
    "compare_view",
    "convert_view",
    "fmt_bytes",
    "fmt_int",
    "format_from_path",
    "make_console",
    "model_view",
    "preset_view",
    "profile_view",
    "render_text",
]
