"""The one error handler and the one output path of every command."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import signal
import sys
import threading
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


class Terminated(KeyboardInterrupt):
    """SIGTERM (what CI timeouts send), handled like Ctrl-C: work stops, temp files go."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def handle_errors(fn: F) -> F:
    """The one error path of every command.

    - a dsconv error (bad input: exit 2; the environment failed: exit 1) -> one line;
    - Ctrl-C -> exit 130, SIGTERM -> exit 143, after the command has cleaned up;
    - anything else is a bug in dsconv: exit 1, "please report", the traceback with --debug.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        old = None
        if threading.current_thread() is threading.main_thread():
            old = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            return fn(*args, **kwargs)
        except DsconvError as e:
            if STATE.debug:
                raise
            raise fail(str(e), e.exit_code, e.hint) from None
        except Terminated:
            print("Terminated.", file=sys.stderr)
            raise typer.Exit(143) from None
        except KeyboardInterrupt:
            print("Interrupted.", file=sys.stderr)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except Exception as e:
            if STATE.debug:
                raise
            first = str(e).splitlines()[0] if str(e) else ""
            raise fail(f"internal error in dsconv: {type(e).__name__}: {first}", 1,
                       hint="this is a bug: please report it with the command line; "
                       "--debug shows the traceback") from None
        finally:
            if old is not None:
                signal.signal(signal.SIGTERM, old)

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
    from ..atomic import check_writable

    out = []
    for p in reports or []:
        fmt = format_from_path(str(p))
        if fmt is None or not RENDERERS[fmt].file_ok:
            raise InputError(f"--report {p}: unknown extension; use .json, .csv or .md")
        check_writable(p, "--report", overwrite=True)
        out.append((p, fmt))
    return out


def check_distinct(outputs: list[tuple[str, Path]], inputs: list[tuple[str, Path]]) -> None:
    """No two outputs of one run, and no output and input, may be the same file."""
    seen: dict[str, str] = {}
    for label, p in inputs:
        seen[os.path.realpath(p)] = f"the input {label} {p}"
    for label, p in outputs:
        key = os.path.realpath(p)
        if key in seen:
            raise InputError(f"{label} {p}: is also {seen[key]}; give each output its own "
                             "file")
        seen[key] = f"{label} {p}"


def check_format(fmt: OutputFormat, as_json: bool) -> OutputFormat:
    """``--json`` is short for ``--format json``; with another ``--format`` it is a conflict."""
    if as_json and fmt not in (OutputFormat.table, OutputFormat.json):
        raise InputError(f"--json conflicts with --format {fmt.value}; give one of them")
    return OutputFormat.json if as_json else fmt


def finite(name: str, value: float | None, lo: float = 0.0, hi: float = math.inf,
           lo_open: bool = True) -> None:
    """A float option must be a finite number in its range (NaN would turn checks off)."""
    if value is None:
        return
    ok = math.isfinite(value) and (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]" if math.isfinite(hi) else (
            f"> {lo:g}" if lo_open else f">= {lo:g}")
        raise InputError(f"{name} must be a finite number {rng}, got {value}")


def emit(env: dict[str, Any], view: View, fmt: OutputFormat, as_json: bool,
         reports: list[tuple[Path, OutputFormat]]) -> None:
    """The report to stdout in the chosen format, and to every --report file."""
    from ..atomic import write_atomic

    for path, rfmt in reports:
        write_atomic(path, render_text(env, rfmt, view))
    RENDERERS[OutputFormat.json if as_json else fmt].write(env, view, sys.stdout)


#: the commands' hooks for services: status and warnings on stderr, a progress bar there
HOOKS = Hooks(status=status, warn=warn, progress=lambda total, what: progress(total, what))
