"""The ``dsconv`` entry point (also ``python -m dsconv_cli``).

Wraps the Typer app so that what reaches the user keeps dsconv's contract: a usage error
(an unknown ``--kind``, a bad ``--format``) is one ``Error:`` line and exit 2, not a framed
box; Ctrl-C while Python is still importing is "Interrupted." and exit 130, not a
traceback; a closed pipe (``dsconv ... | head``) ends quietly.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    try:
        import typer
        from typer._click import exceptions as click_exceptions

        from .cli import app
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    try:
        rv = app(args=argv, prog_name="dsconv", standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError as e:
        return e.exit_code  # the help was printed
    except click_exceptions.UsageError as e:
        path = e.ctx.command_path.split(" ", 1)[-1] if e.ctx is not None and " " in (
            e.ctx.command_path) else ""
        print(f"Error: {e.format_message()} (try 'dsconv {path + ' ' if path else ''}--help')",
              file=sys.stderr)
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


def _closed_pipe() -> int:
    """stdout was closed by the reader: point it at /dev/null so the interpreter's final
    flush is silent."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError:
        pass
    return 1


def _entry() -> None:
    try:
        code = main()
    except SystemExit as e:  # Rich turns a broken pipe into SystemExit(1)
        code = e.code if isinstance(e.code, int) else 1
        if code == 1:
            _closed_pipe()
    sys.exit(code)


if __name__ == "__main__":
    _entry()
