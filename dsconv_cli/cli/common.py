"""The one error handler and the one output path of every command."""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import typer

from ..errors import DsconvError, InputError
from ..render import RENDERERS, OutputFormat, View, format_from_path, make_console, render_text
from ..services import Hooks

F = TypeVar("F", bound=Callable[..., Any])


class _State:
    debug = False


STATE = _State()


def fail(message: str, code: int = 2, hint: str | None = None) -> typer.Exit:
    """Print one error line (and a hint) on stderr; return the Exit to raise."""
    msg = f"Error: {message}"
    if hint:
        msg += f" (hint: {hint})"
    print(msg, file=sys.stderr)
    return typer.Exit(code)


def warn(message: str) -> None:
    print(f"Warning: {message}", file=sys.stderr)


def handle_errors(fn: F) -> F:
    """Turn dsconv errors into one stderr line and their exit code; Ctrl-C into 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DsconvError as e:
            if STATE.debug:
                raise
            raise fail(str(e), e.exit_code, e.hint) from None
        except KeyboardInterrupt:
            print("Interrupted.", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def progress(total: int, what: str = "measuring") -> Iterator[Callable[[str], None]]:
    """A Rich progress bar on stderr (only on a terminal); yields ``advance(label)``."""
    console = make_console(stderr=True)
    if not console.is_terminal:
        yield lambda label: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(what, total=total)

        def advance(label: str) -> None:
            bar.update(task, advance=1, description=f"{what}: {label}")

        yield advance


def status(message: str) -> None:
    print(message, file=sys.stderr)


def check_reports(reports: list[Path] | None) -> list[tuple[Path, OutputFormat]]:
    """Validate --report paths before any work is done."""
    out = []
    for p in reports or []:
        fmt = format_from_path(str(p))
        if fmt is None:
            raise InputError(f"--report {p}: unknown extension; use .json, .csv or .md")
        if not p.parent.exists():
            raise InputError(f"--report {p}: folder {p.parent} does not exist")
        out.append((p, fmt))
    return out


def emit(env: dict[str, Any], view: View, fmt: OutputFormat, as_json: bool,
         reports: list[tuple[Path, OutputFormat]]) -> None:
    """The report to stdout in the chosen format, and to every --report file."""
    from ..atomic import write_atomic

    for path, rfmt in reports:
        write_atomic(path, render_text(env, rfmt, view))
    RENDERERS[OutputFormat.json if as_json else fmt].write(env, view, sys.stdout)


#: the commands' hooks for services: status and warnings on stderr, a progress bar there
HOOKS = Hooks(status=status, warn=warn, progress=lambda total, what: progress(total, what))
