"""The error hierarchy. Commands turn these into one stderr line and an exit code.

Core code raises; it never prints and never exits.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BudgetError",
    "ConfigError",
    "DsconvError",
    "FieldError",
    "InputError",
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

