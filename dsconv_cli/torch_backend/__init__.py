"""The only code that imports torch. Commands import it lazily.

This module holds what every backend module shares: how an out-of-memory error looks,
how much memory is free, and what a failed forward pass means.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..errors import BackendError, InputError
from ..quiet import rehold

rehold()  # torch just installed its log handlers: keep its noise held while a command runs

__all__ = ["forward_error", "free_memory", "is_oom"]


def is_oom(e: BaseException) -> bool:
    """Whether an exception means the device ran out of memory (an environment failure,
    exit 1, not bad input)."""
    msg = str(e).lower()
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in msg or (
        "can't allocate" in msg) or "not enough memory" in msg


def free_memory() -> int | None:
    """Bytes of physical memory free to this process: the machine's free pages, or what
    its cgroup's limit leaves when that is less (a container); None where neither can be
    read."""
    try:
        host: int | None = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        host = None
    left = _cgroup_left()
    return left if host is None else host if left is None else min(host, left)


#: cgroup v2, then v1: (limit file, usage file)
CGROUP_FILES = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                 "/sys/fs/cgroup/memory/memory.usage_in_bytes"))


def _cgroup_left() -> int | None:
    """The cgroup memory limit minus its usage; None without a limit (``max``, or v1's
    huge "unlimited" value) or where the files cannot be read."""
    for limit_file, usage_file in CGROUP_FILES:
        try:
            with open(limit_file) as f:
                limit = f.read().strip()
            with open(usage_file) as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 1 << 60:
            return None
        return max(0, int(limit) - usage)
    return None


def forward_error(model: nn.Module, stack: list[str], input_shape: tuple[int, ...],
                  e: BaseException) -> Exception:
    """A forward failed: where (the innermost module running, from ``stack``) and why;
    out of memory is the environment (exit 1), anything else the input (exit 2)."""
    where = ""
    if stack:
        kind = type(model.get_submodule(stack[-1])).__name__
        where = f" in {stack[-1] or 'the model'} ({kind})"
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    shape = ",".join(map(str, input_shape))
    if is_oom(e):
        return BackendError(f"out of memory running the model on input {shape}{where}: {first}")
    return InputError(f"--input-shape {shape}: the forward pass failed{where}: "
                      f"{type(e).__name__}: {first}")
