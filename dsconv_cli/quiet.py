"""Quiet stderr: what torch (and the libraries it loads) would print while a command runs —
Python warnings and log records such as the CUDA probe's "No CUDA runtime is found" — is
held back and shown once each, as one-line dsconv warnings, after the command's own output
(``--debug`` lets them through untouched). Stdlib only: nothing here imports torch; torch
installs its own log handlers when it is imported, so the backend calls :func:`rehold` right
after ``import torch``."""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Callable, Iterator

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


class _Hold(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(f"{record.name}: {record.getMessage()}")


#: the hold in force (None outside a command): what rehold() re-applies
_ACTIVE: list[_Hold] = []


def _hold_loggers(hold: _Hold) -> None:
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if logger.handlers != [hold]:
            logger.handlers = [hold]
        logger.propagate = False


def rehold() -> None:
    """Re-apply the hold in force (a library that just configured its loggers, torch on
    import, would otherwise print past it)."""
    if _ACTIVE:
        _hold_loggers(_ACTIVE[-1])


@contextlib.contextmanager
def held_noise(warn: Callable[[str], None], debug: bool = False) -> Iterator[None]:
    """Hold back library warnings and log records while the body runs; on the way out
    (error or not) show each distinct one once through ``warn``."""
    if debug:
        yield
        return
    held: list[str] = []
    saved = [(lg, lg.handlers[:], lg.propagate)
             for lg in (logging.getLogger(n) for n in NOISY_LOGGERS)]
    hold = _Hold(held)
    _ACTIVE.append(hold)
    _hold_loggers(hold)
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
        for logger, handlers, propagate in saved:
            if logger.handlers == [hold]:  # torch may have installed its own meanwhile
                logger.handlers = handlers
                logger.propagate = propagate
        for msg in dict.fromkeys(one_line(m) for m in held):
            warn(msg)
