"""The ``dsconv`` entry point (also ``python -m dsconv_cli``).

Wraps the Typer app so that what reaches the user keeps dsconv's contract: a usage error
(an unknown ``--kind``, a bad ``--format``) is one ``Error:`` line and exit 2, not a framed
box; Ctrl-C while Python is still importing is "Interrupted." and exit 130, not a
traceback; a closed pipe (``dsconv ... | head``) ends quietly with 141 (128 + SIGPIPE,
what a C tool killed by the pipe gives); stdout that cannot be written (``>/dev/full``)
is one line and exit 1; a closed stdout (``>&-``) is refused before anything runs.
"""

from __future__ import annotations

import contextlib
import os
import sys


def main(argv: list[str] | None = None, *, install_signals: bool = False) -> int:
    """Run the command line; ``install_signals``: dsconv's SIGINT/SIGTERM handlers while it
    runs (the entry point only: called in-process, dsconv leaves the caller's alone)."""
    try:
        import typer
        from typer._click import exceptions as click_exceptions

        from .cli import app
        from .cli.common import signals
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    try:
        with signals() if install_signals else contextlib.nullcontext():
            rv = app(args=argv, prog_name="dsconv", standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError as e:
        return e.exit_code  # the help was printed
    except click_exceptions.UsageError as e:
        path = e.ctx.command_path.split(" ", 1)[-1] if e.ctx is not None and " " in (
            e.ctx.command_path) else ""
        try_help = f" (try 'dsconv {path + ' ' if path else ''}--help')"
        if getattr(e, "hint", None):  # cli.app.UsageHint: its message ends with the hint
            try_help = ""
        print(f"Error: {e.format_message()}{try_help}", file=sys.stderr)
        return 2
    except click_exceptions.ClickException as e:
        print(f"Error: {e.format_message()}", file=sys.stderr)
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("Interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _closed_pipe()
    return rv if isinstance(rv, int) else 0


#: exit code after the reader closed the pipe (128 + SIGPIPE)
PIPE_CLOSED = 141


def _closed_pipe() -> int:
    """stdout was closed by the reader: point it at /dev/null so the interpreter's final
    flush is silent."""
    _silence_stdout()
    return PIPE_CLOSED


def _silence_stdout() -> None:
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _flush_stdout(code: int) -> int:
    """The last of stdout written now, so that a full disk or a closed pipe is an exit
    code and one line, not Python's "Exception ignored" at shutdown."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return _closed_pipe()
    except OSError as e:
        _silence_stdout()
        if code == 0:
            print(f"Error: stdout: cannot be written ({e.strerror or e})", file=sys.stderr)
            return 1
    return code


def _entry() -> None:
    if sys.stdout is None:  # started with stdout closed (>&-)
        if sys.stderr is not None:
            print("Error: stdout is closed; dsconv prints its report there (redirect it to "
                  "a file or /dev/null instead)", file=sys.stderr)
        sys.exit(2)
    try:
        code = main(install_signals=True)
    except SystemExit as e:  # Rich and click turn a closed pipe into SystemExit(1)
        code = e.code if isinstance(e.code, int) else 1
        if code == 1:
            code = _closed_pipe()
    sys.exit(_flush_stdout(code))


if __name__ == "__main__":
    _entry()
