"""The error hierarchy. Commands turn these into one stderr line and an exit code.

Core code raises; it never prints and never exits.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator

__all__ = [
    "BackendError",
    "BudgetError",
    "ConfigError",
    "DsconvError",
    "FieldError",
    "InputError",
    "SIGNALS",
    "Terminated",
    "USER_RAISES",
    "UserCodeError",
    "interrupt_exit_code",
    "is_real_interrupt",
    "user_code",
]


class DsconvError(Exception):
    """A problem the user can fix. ``exit_code`` 2 = bad usage or input, 1 = runtime."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InputError(DsconvError):
    """Bad input: a number, a file, a flag combination. Exit 2."""


class FieldError(InputError):
    """A bad value of one named field of a layer description.

    ``field`` is the neutral name (``in``, ``kernel``...); the command line shows it as
    ``--in``, a config file as ``cases[0].layer.in``.
    """

    def __init__(self, field: str, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ConfigError(InputError):
    """A config file problem, located by file, line (when known) and key path."""

    def __init__(
        self, message: str, *, file: str, path: str = "", line: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.file = file
        self.path = path
        self.line = line

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line is not None else "")
        return f"{where}: {self.path + ': ' if self.path else ''}{self.message}"


class BackendError(DsconvError):
    """Something failed while running real layers (out of memory, device fault). Exit 1."""

    exit_code = 1


class BudgetError(DsconvError):
    """A budget the user set cannot be met (``--target-macs`` out of reach). Exit 1."""

    exit_code = 1



class UserCodeError(InputError):
    """Code the user handed dsconv (an ``--arch`` builder, a model's forward, an unpickled
    object) raised: an error of that input (exit 2), never dsconv's exit code."""


class _Signals:
    """Which signal the command's handlers saw (set by ``cli.common``'s handlers).

    ``armed``: the handlers are installed, so a ``KeyboardInterrupt`` that arrives while
    ``last`` is None was raised by code, not by the user's Ctrl-C."""

    armed = False
    last: int | None = None


SIGNALS = _Signals()


class Terminated(KeyboardInterrupt):
    """SIGTERM (what CI timeouts send), handled like Ctrl-C: work stops, temp files go,
    exit 143. Raising it records the SIGTERM (as the handler does)."""

    def __init__(self) -> None:
        super().__init__()
        SIGNALS.last = signal.SIGTERM


def is_real_interrupt(e: BaseException) -> bool:
    """Whether ``e`` is the user stopping dsconv (Ctrl-C, SIGTERM), as opposed to an
    exception raised by user code. Without dsconv's handlers (dsconv used as a library)
    every ``KeyboardInterrupt`` counts as real."""
    if not isinstance(e, KeyboardInterrupt):
        return False
    return not SIGNALS.armed or SIGNALS.last is not None


def interrupt_exit_code() -> int:
    """130 after Ctrl-C, 143 after SIGTERM."""
    return 143 if SIGNALS.last == signal.SIGTERM else 130


#: the longest exception text :func:`describe` keeps
DESCRIBE_MAX = 300


def describe(e: BaseException) -> str:
    """``Type: message`` of an exception on one line: its lines joined (a sentence that
    wraps is not cut at the wrap), a long one cut at the last sentence end within
    ``DESCRIBE_MAX`` characters, else marked with "..."."""
    text = " ".join(ln.strip() for ln in str(e).splitlines() if ln.strip())
    if len(text) > DESCRIBE_MAX:
        cut = max(text.rfind(". ", 0, DESCRIBE_MAX), text.rfind("; ", 0, DESCRIBE_MAX))
        text = text[:cut + 1] if cut >= DESCRIBE_MAX // 4 else text[:DESCRIBE_MAX - 3] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


#: what code the user handed dsconv can raise that is its own failure: everything but the
#: exceptions of a test harness or the interpreter (pytest-timeout's ``Failed``, anything
#: not derived from these), which pass through untouched
USER_RAISES = (Exception, SystemExit, KeyboardInterrupt, GeneratorExit)


@contextlib.contextmanager
def user_code(what: str) -> Iterator[None]:
    """Run user code: whatever it raises (``SystemExit``, ``GeneratorExit``, a
    ``KeyboardInterrupt`` of its own, any ``Exception``) becomes a :class:`UserCodeError`
    naming ``what``; the user's real Ctrl-C or SIGTERM, dsconv's own errors and what is
    not user code's to raise (:data:`USER_RAISES`) pass through. What it prints goes to
    stderr: stdout holds dsconv's report (``--json``) alone."""
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    except (DsconvError, MemoryError):
        raise
    except USER_RAISES as e:
        if is_real_interrupt(e):
            raise
        raise UserCodeError(f"{what}: {describe(e)}") from e
