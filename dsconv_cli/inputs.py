"""Reading the files a user names, safely (stdlib only, no torch).

Every file dsconv reads (a model, calibration or eval data, a config, a baseline, shard
reports for ``--merge``, the calibration cache) must be a regular file: a FIFO would
block forever, ``/dev/zero`` would be read until memory runs out. Each is checked here
(after following symlinks) and read with a size cap suited to its kind; a special file
gets one line naming the option that gave it, never "no such file".

The file is opened non-blocking and checked again on the open descriptor, so a FIFO
swapped in after the check cannot block either.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import InputError

__all__ = ["CAPS", "NoSuchFile", "cap_for", "check_input", "read_bytes", "read_text"]


class NoSuchFile(InputError):
    """The file named does not exist."""

_MB = 1 << 20
#: the largest file of each kind dsconv reads (bytes); a model or data file is also
#: capped by the memory available (torch.load holds all of it)
CAPS: dict[str, int] = {
    "config": 2 * _MB,
    "report": 256 * _MB,
    "cache": 4 * _MB,
    "plan": 64 * _MB,
    "model": 1 << 40,
    "data": 1 << 40,
}


def _kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def cap_for(kind: str) -> int:
    cap = CAPS[kind]
    if kind in ("model", "data"):
        free = _available_memory()
        if free is not None:
            cap = min(cap, free)
    return cap


def _label(option: str | None, path: Path) -> str:
    return f"{option} {path}" if option else str(path)


def _check_stat(st: os.stat_result, path: Path, option: str | None, kind: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{_label(option, path)}: is {_kind_of(st.st_mode)}, not a regular "
                         "file; dsconv reads only regular files")
    cap = cap_for(kind)
    if st.st_size > cap:
        raise InputError(f"{_label(option, path)}: {st.st_size / 1e6:,.1f} MB, more than "
                         f"the {cap / 1e6:,.1f} MB a {kind} file may be here")


def check_input(path: Path, option: str | None, kind: str) -> int:
    """The file exists, is a regular file (symlinks followed) and within the cap of its
    kind; returns its size. Otherwise one ``InputError`` naming ``option``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NoSuchFile(f"{_label(option, path)}: no such file") from None
    except OSError as e:
        raise InputError(f"{_label(option, path)}: cannot be read "
                         f"({e.strerror or e})") from None
    _check_stat(st, path, option, kind)
    return st.st_size


def read_bytes(path: Path, option: str | None, kind: str) -> bytes:
    """The whole file, checked and capped (``check_input``), never blocking."""
    check_input(path, option, kind)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise InputError(f"{_label(option, path)}: cannot be read "
                         f"({e.strerror or e})") from None
    with os.fdopen(fd, "rb") as f:
        _check_stat(os.fstat(fd), path, option, kind)  # the file actually opened
        data = f.read(cap_for(kind) + 1)
    if len(data) > cap_for(kind):
        raise InputError(f"{_label(option, path)}: grew past the "
                         f"{cap_for(kind) / 1e6:,.1f} MB a {kind} file may be")
    return data


def read_text(path: Path, option: str | None, kind: str) -> str:
    """The file as UTF-8 text (see ``read_bytes``)."""
    data = read_bytes(path, option, kind)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{_label(option, path)}: not UTF-8 text (byte {e.start})") from None
