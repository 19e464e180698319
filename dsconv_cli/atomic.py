"""Atomic file writes: a temp file in the same folder, then a rename. Never a partial file,
and an existing file is untouched until the new one is complete."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["write_atomic", "write_all_atomic"]


def write_all_atomic(files: Sequence[tuple[Path, bytes | str]]) -> None:
    """Write every file to a temp file first; rename them only when all are written."""
    temps: list[tuple[str, Path]] = []
    try:
        for path, data in files:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            temps.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
        for tmp, path in temps:
            os.replace(tmp, path)
    finally:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)


def write_atomic(path: Path, data: bytes | str) -> None:
    write_all_atomic([(path, data)])
