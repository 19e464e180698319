"""Services: the orchestration under the commands. They run the core and the backend and
return typed results (:mod:`dsconv_cli.results`); they never print and never exit. The
backend (torch) is imported inside the functions that measure, so a service that only
analyses starts without torch.

Progress and diagnostics go through :class:`Hooks`, which the commands fill with their
stderr writers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

__all__ = ["Hooks"]


def _nothing(message: str) -> None:
    return None


@contextlib.contextmanager
def _no_progress(total: int, what: str) -> Iterator[Callable[[str], None]]:
    yield _nothing


@dataclass(frozen=True)
class Hooks:
    """Where a service reports what it is doing: status lines, warnings, a progress bar
    (``progress(total, what)`` is a context manager yielding ``advance(label)``)."""

    status: Callable[[str], None] = _nothing
    warn: Callable[[str], None] = _nothing
    progress: Callable[[int, str], AbstractContextManager[Callable[[str], None]]] = _no_progress
