"""Quiet stderr: what torch (and the libraries it loads) would print while a command runs —
Python warnings and log records such as the CUDA probe's "No CUDA runtime is found" — is
held back and shown once each, as one-line dsconv warnings, after the command's own output
(``--debug`` lets them through untouched). Stdlib only: nothing here imports torch; torch
installs its own log handlers when it is imported, so the backend calls :func:`rehold` right
after ``import torch``."""

from __future__ import annotations

import contextlib
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

#: loggers whose records are held back (torch's own and what torch.onnx / export load)
NOISY_LOGGERS = ("torch", "onnxscript", "onnx_ir", "onnxruntime")

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def plain(text: str) -> str:
    """``text`` without terminal escapes (a library may colour its messages)."""
    return _ANSI.sub("", text)


def one_line(text: str, limit: int = 300) -> str:
    """A message as one line: escapes gone, whitespace collapsed; a long one is cut at the
    last sentence or clause end before ``limit``, never inside a word."""
    flat = " ".join(plain(text).split())
    if len(flat) <= limit:
        return flat
    head = flat[:limit]
    for stop in (". ", "; ", ": ", ", "):
        i = head.rfind(stop)
        if i > limit // 2:
            return head[: i + 1].rstrip(",;:") + " …"
    return head.rsplit(" ", 1)[0] + " …"


class _Held:
    """One command's hold: the messages held back and, once ``logging`` is in use (torch
    imports it), a handler on the noisy loggers and what they had before. A command that
    never imports torch never imports ``logging`` (start-up time)."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.handler: Any = None
        self.saved: list[tuple[Any, list[Any], bool]] = []

    def hold(self) -> None:
        import logging

        if self.handler is None:
            messages = self.messages

            class Hold(logging.Handler):
                def emit(self, record: logging.LogRecord) -> None:
                    messages.append(f"{record.name}: {record.getMessage()}")

            self.handler = Hold(logging.WARNING)
            self.saved = [(lg, lg.handlers[:], lg.propagate)
                          for lg in (logging.getLogger(n) for n in NOISY_LOGGERS)]
        for logger, _, _ in self.saved:
            if logger.handlers != [self.handler]:
                logger.handlers = [self.handler]
            logger.propagate = False

    def release(self) -> None:
        for logger, handlers, propagate in self.saved:
            if logger.handlers == [self.handler]:  # torch may have installed its own
                logger.handlers = handlers
                logger.propagate = propagate


#: the hold in force (None outside a command): what rehold() re-applies
_ACTIVE: list[_Held] = []


def rehold() -> None:
    """Re-apply the hold in force (a library that just configured its loggers, torch on
    import, would otherwise print past it)."""
    if _ACTIVE:
        _ACTIVE[-1].hold()


@contextlib.contextmanager
def held_noise(warn: Callable[[str], None], debug: bool = False) -> Iterator[None]:
    """Hold back library warnings and log records while the body runs; on the way out
    (error or not) show each distinct one once through ``warn``."""
    if debug:
        yield
        return
    hold = _Held()
    held = hold.messages
    _ACTIVE.append(hold)
    if "logging" in sys.modules:  # else nothing has logged yet: rehold() after torch
        hold.hold()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            try:
                yield
            finally:
                held.extend(f"{w.category.__name__}: {w.message}" for w in caught
                            if not issubclass(w.category, DeprecationWarning))
    finally:
        _ACTIVE.remove(hold)
        hold.release()
        for msg in dict.fromkeys(one_line(m) for m in held):
            warn(msg)
