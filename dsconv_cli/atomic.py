"""The one atomic file writer: models, plans, reports, the calibration cache and plots.

Each file is written to a temp file in its own folder (``.NAME.dsconv-PID-XXXX.tmp``),
flushed and fsynced, given the permissions a plain write would give (an existing file's
mode, else 0666 minus the umask), then moved into place and the folder fsynced. The
final step does not clobber: without ``overwrite`` it links the temp file into place,
which fails if the name exists (so two runs racing for one new name cannot both win).
On any failure, Ctrl-C or SIGTERM, the temp files are removed; temp files left by a
process that no longer runs (killed with SIGKILL) are removed on the next write there.

Several files written together (a model and its ``.plan.json``) are all complete on disk
before the first is moved into place, and are moved in the order given, back to back:
``convert`` gives the model first and its plan last, so a plan never describes a model
that is not there. If moving a later file fails, the files this call created are
removed again.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .errors import BackendError, InputError

__all__ = ["append_text", "check_writable", "write_all_atomic", "write_atomic"]

#: what the temp file adds to a name (``.NAME.dsconv-PID-XXXXXXXX.tmp``)
_TEMP_EXTRA = 40


def _temp_prefix(path: Path, pid: int | None = None) -> str:
    return f".{path.name}.dsconv-{os.getpid() if pid is None else pid}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, not ours
    return True


def _remove_stale(path: Path) -> None:
    """Temp files of this name left by dsconv processes that are gone."""
    head = f".{path.name}.dsconv-"
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            if not (entry.name.startswith(head) and entry.name.endswith(".tmp")):
                continue
            pid = entry.name[len(head):].split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def check_writable(path: Path, what: str, overwrite: bool) -> None:
    """Refuse, before any work, an output that cannot be written or must not be replaced:
    a missing folder or one that is a file, a directory, a device, FIFO or socket, a
    symlink (dangling ones too), a name too long for the folder (with the temp file's
    additions), or an existing file without ``overwrite``."""
    try:
        _check_writable(path, what, overwrite)
    except OSError as e:
        raise InputError(f"{what} {_short(path)}: cannot be written there "
                         f"({e.strerror or e})") from None


def _short(path: Path) -> str:
    text = str(path)
    return text if len(text) <= 80 else f"{text[:40]}...{text[-30:]} ({len(text)} characters)"


def _check_writable(path: Path, what: str, overwrite: bool) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    try:
        name_max = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    if len(os.fsencode(path.name)) + _TEMP_EXTRA > name_max:
        raise InputError(f"{what} {_short(path)}: the file name is too long (at most "
                         f"{name_max - _TEMP_EXTRA} bytes here)")
    if not parent.exists():
        raise InputError(f"{what} {path}: folder {parent} does not exist")
    if not parent.is_dir():
        raise InputError(f"{what} {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{what} {path}: folder {parent} is not writable")
    if os.path.islink(path):
        raise InputError(f"{what} {path}: is a symbolic link; give the real path")
    if path.exists():
        if path.is_dir():
            raise InputError(f"{what} {path}: is a folder")
        if not path.is_file():
            raise InputError(f"{what} {path}: exists and is not a regular file "
                             "(a device, FIFO or socket); dsconv never replaces one")
        if not overwrite:
            raise InputError(f"{what} {path}: exists; pass --force to overwrite it")


def write_all_atomic(files: Sequence[tuple[Path, bytes | str]], overwrite: bool = True) -> None:
    """Write every file to a temp file first; move them into place only when all are
    written, in the order given. Without ``overwrite`` an existing name is an
    ``InputError`` and nothing is replaced."""
    temps: list[tuple[str, Path]] = []
    created: list[Path] = []
    try:
        _write_all(files, overwrite, temps, created)
    except OSError as e:
        where = temps[-1][1] if temps else files[0][0]
        raise BackendError(f"{where}: cannot be written ({e.strerror or e})") from e
    finally:
        for tmp, _ in temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        for path in created:  # a later file failed: take back what this call created
            with contextlib.suppress(OSError):
                os.unlink(path)


def _write_all(files: Sequence[tuple[Path, bytes | str]], overwrite: bool,
               temps: list[tuple[str, Path]], created: list[Path]) -> None:
    for path, data in files:
        _remove_stale(path)
        mode = _mode_for(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path),
                                   suffix=".tmp")
        temps.append((tmp, path))
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
    for tmp, path in temps:
        if os.path.lexists(path) and not (path.is_file() and not path.is_symlink()):
            raise InputError(f"{path}: exists and is not a regular file; not replaced")
        if overwrite:
            existed = path.exists()
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the name exists: no clobbering
            except FileExistsError:
                raise InputError(f"{path}: exists (created by something else meanwhile); "
                                 "pass --force to overwrite it") from None
            except OSError:  # a filesystem without hard links
                if os.path.lexists(path):
                    raise InputError(f"{path}: exists; pass --force to overwrite it"
                                     ) from None
                os.replace(tmp, path)
            existed = False
        if not existed:
            created.append(path)
    for parent in {p.parent for _, p in temps}:
        _fsync_dir(parent)
    created.clear()


def write_atomic(path: Path, data: bytes | str, overwrite: bool = True) -> None:
    write_all_atomic([(path, data)], overwrite)


def append_text(path: Path, text: str, what: str) -> None:
    """Append to a file someone else owns (``$GITHUB_STEP_SUMMARY``): only a regular file
    (a FIFO would block, a device swallow it), opened non-blocking and checked on the open
    descriptor. ``OSError`` or ``InputError`` name ``what``."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags, 0o666)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"{what} {path}: not a regular file (a FIFO, device or socket); "
                             "nothing appended")
        data = text.encode()
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
