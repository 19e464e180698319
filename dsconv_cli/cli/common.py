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

from ..errors import (
    SIGNALS,
    BackendError,
    DsconvError,
    InputError,
    Terminated,
    describe,
    interrupt_exit_code,
    is_real_interrupt,
)
from ..names import safe_text
from ..quiet import held_noise, plain
from ..render import RENDERERS, OutputFormat, View, format_from_path, make_console, render_text
from ..render.formats import report_extensions

F = TypeVar("F", bound=Callable[..., Any])


class _State:
    debug = False
    #: the report's stream: stdout as the running command found it. While a command runs
    #: ``sys.stdout`` is stderr, so that what user code prints (an ``--arch`` constructor,
    #: a pickled forward) never reaches the report (``--json`` stays JSON)
    stdout: Any = None


STATE = _State()


def fail(message: str, code: int = 2, hint: str | None = None) -> typer.Exit:
    """Print one error line (and a hint) on stderr; return the Exit to raise."""
    msg = f"Error: {message}"
    if hint:
        msg += f" (hint: {hint})"
    # each line on its own (a merge refusing several fields says one line each)
    print("\n".join(map(safe_text, plain(msg).split("\n"))), file=sys.stderr)
    return typer.Exit(code)


def warn(message: str) -> None:
    print(f"Warning: {safe_text(plain(message))}", file=sys.stderr)


def _on_signal(signum: int, frame: Any) -> None:
    """Ctrl-C and SIGTERM: remembered (so a ``KeyboardInterrupt`` raised by user code is
    told apart from the user's own, and SIGTERM exits 143), then raised."""
    if signum == signal.SIGTERM:
        raise Terminated()  # records itself
    SIGNALS.last = signum
    raise KeyboardInterrupt


@contextlib.contextmanager
def signals() -> Iterator[None]:
    """dsconv's handlers for SIGINT (unless it is ignored, as in a background job) and
    SIGTERM while the body runs; the previous ones are restored after. Installed by the
    entry point (``__main__._entry``) only: a command called in-process (``CliRunner``
    inside pytest) leaves the harness's signals alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        if sig == signal.SIGINT and signal.getsignal(sig) is signal.SIG_IGN:
            continue
        old[sig] = signal.signal(sig, _on_signal)
    SIGNALS.armed, SIGNALS.last = True, None
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        SIGNALS.armed = False


def handle_errors(fn: F) -> F:
    """The one error path of every command.

    - a dsconv error (bad input: exit 2; the environment failed: exit 1) -> one line;
    - Ctrl-C -> exit 130, SIGTERM -> exit 143, after the command has cleaned up; a
      ``KeyboardInterrupt`` that no signal caused was raised by user code: exit 2;
    - whatever else user code raises (``GeneratorExit``, nesting too deep for Python)
      -> one line, exit 2;
    - any other ``Exception`` is a bug in dsconv: exit 1, "please report", the traceback
      with --debug;
    - what is neither an ``Exception`` nor user code's to raise (a test harness's timeout,
      the interpreter's own) passes through untouched.

    While the command runs, stdout is stderr (:attr:`_State.stdout` keeps the report's).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        outer, STATE.stdout = STATE.stdout, sys.stdout
        try:
            with contextlib.redirect_stdout(sys.stderr):
                with held_noise(warn, STATE.debug):  # torch's warnings: one line each
                    return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException, BrokenPipeError,
                SystemExit):  # SystemExit(1): Rich's or click's closed pipe
            raise
        except (Exception, KeyboardInterrupt, GeneratorExit) as e:
            if STATE.debug and not isinstance(e, KeyboardInterrupt):
                raise
            raise _exit_for(e) from None
        finally:
            STATE.stdout = outer

    return wrapper  # type: ignore[return-value]


def report_stream() -> Any:
    """Where a command's report goes: stdout as the command found it."""
    return STATE.stdout if STATE.stdout is not None else sys.stdout


def _exit_for(e: BaseException) -> typer.Exit:
    """The one line and the exit code for what ended a command."""
    if isinstance(e, DsconvError):
        return fail(str(e), e.exit_code, e.hint)
    if is_real_interrupt(e):
        code = interrupt_exit_code()
        print("Terminated." if code == 143 else "Interrupted.", file=sys.stderr)
        return typer.Exit(code)
    if isinstance(e, RecursionError):
        return fail(f"the input is nested too deeply for dsconv ({describe(e)})",
                    hint="a model or value nested thousands of levels deep")
    if isinstance(e, MemoryError):
        return fail("out of memory", 1)
    if not isinstance(e, Exception):  # dsconv raises neither: user code did
        what = "a KeyboardInterrupt that no Ctrl-C caused" if isinstance(
            e, KeyboardInterrupt) else describe(e)
        return fail(f"user code raised {what}")
    return fail(f"internal error in dsconv: {describe(e)}", 1,
                hint="this is a bug: please report it with the command line; "
                "--debug shows the traceback")


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


def check_reports(reports: list[Path] | None, overwrite: bool = True
                  ) -> list[tuple[Path, OutputFormat]]:
    """Validate --report paths before any work is done (``overwrite``: False where the
    command has ``--force`` and it was not given); they come back absolute, resolved
    against the folder the command started in."""
    out = []
    for p in reports or []:
        from ..atomic import check_writable

        fmt = format_from_path(str(p))
        if fmt is None or not RENDERERS[fmt].file_ok:
            raise InputError(f"--report {p}: unknown extension; use {report_extensions()}")
        check_writable(p, "--report", overwrite=overwrite)
        out.append((p.absolute(), fmt))  # user code that calls os.chdir moves no report
    return out


def _identity(p: Path) -> tuple[str, tuple[int, int] | None]:
    """A file's resolved path and, when it exists, its (device, inode): a hard link or a
    bind mount of an input is the input too."""
    try:
        st = os.stat(p)
        ino: tuple[int, int] | None = (st.st_dev, st.st_ino)
    except OSError:
        ino = None
    return os.path.realpath(p), ino


def check_distinct(outputs: list[tuple[str, Path]],
                   inputs: list[tuple[str, Path | None]]) -> None:
    """No two outputs of one run, and no output and input, may be the same file (by
    resolved path or by inode), whatever ``--force`` says. ``None`` inputs are skipped."""
    seen: dict[Any, str] = {}
    for label, p in inputs:
        if p is None:
            continue
        real, ino = _identity(p)
        seen[real] = f"the input {label} {p}"
        if ino is not None:
            seen[ino] = seen[real]
    for label, p in outputs:
        real, ino = _identity(p)
        clash = seen.get(real) or (seen.get(ino) if ino is not None else None)
        if clash:
            raise InputError(f"{label} {p}: is also {clash}; give each output its own file")
        seen[real] = f"{label} {p}"
        if ino is not None:
            seen[ino] = seen[real]


def arch_file(label: str, arch: str | None) -> tuple[str, Path | None]:
    """The file an ``--arch file.py:callable`` names: an input no output may be."""
    target = (arch or "").rpartition(":")[0]
    return label, Path(target) if target.endswith(".py") else None


def check_format(fmt: OutputFormat, as_json: bool) -> OutputFormat:
    """``--json`` is short for ``--format json``; with another ``--format`` given (the
    default table included, when it is written out) it is a conflict."""
    if as_json and fmt is not OutputFormat.json and (
            fmt is not OutputFormat.table or _given("fmt")):
        raise InputError(f"--json conflicts with --format {fmt.value}; give one of them")
    return OutputFormat.json if as_json else fmt


def _given(param: str) -> bool:
    """Whether the running command's option ``param`` was given on the command line (not
    left at its default)."""
    from typer._click.core import ParameterSource
    from typer._click.globals import get_current_context

    ctx = get_current_context(silent=True)
    return ctx is not None and ctx.get_parameter_source(param) not in (
        None, ParameterSource.DEFAULT)


def finite(name: str, value: float | None, lo: float = 0.0, hi: float = math.inf,
           lo_open: bool = True, hi_open: bool = False) -> None:
    """A float option must be a finite number in its range (NaN would turn checks off)."""
    if value is None:
        return
    ok = (math.isfinite(value) and (value > lo if lo_open else value >= lo)
          and (value < hi if hi_open else value <= hi))
    if not ok:
        rng = (f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
               if math.isfinite(hi) else (f"> {lo:g}" if lo_open else f">= {lo:g}"))
        raise InputError(f"{name} must be a finite number {rng}, got {value}")


def emit(env: dict[str, Any], view: View, fmt: OutputFormat, as_json: bool,
         reports: list[tuple[Path, OutputFormat]]) -> None:
    """The report to stdout in the chosen format first, then to every --report file: a
    full disk loses no output that could be written. A failed write names what failed
    (stdout or the file) and exits 1, after everything else was written."""
    failed: list[str] = []
    try:
        out = report_stream()
        RENDERERS[OutputFormat.json if as_json else fmt].write(env, view, out)
        out.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        failed.append(f"stdout: cannot be written ({e.strerror or e})")
    for path, rfmt in reports:
        from ..atomic import write_atomic

        try:
            write_atomic(path, render_text(env, rfmt, view))
        except BackendError as e:
            failed.append(str(e))
    if failed:
        more = f" (and {len(failed) - 1} more: {'; '.join(failed[1:])})" if len(
            failed) > 1 else ""
        raise BackendError(failed[0] + more)


def __getattr__(name: str) -> Any:
    """``HOOKS``, the commands' hooks for services (status and warnings on stderr, a
    progress bar there), built on first use: ``dsconv compare`` without ``--measure``
    never imports the services (start-up time)."""
    if name != "HOOKS":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from ..services import Hooks

    hooks = Hooks(status=status, warn=warn,
                  progress=lambda total, what: progress(total, what))
    globals()["HOOKS"] = hooks
    return hooks
