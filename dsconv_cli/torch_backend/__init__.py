"""The only code that imports torch. Commands import it lazily."""

from __future__ import annotations

import torch

__all__ = ["is_oom"]


def is_oom(e: BaseException) -> bool:
    """Whether an exception means the device ran out of memory (an environment failure,
    exit 1, not bad input)."""
    msg = str(e).lower()
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in msg or (
        "can't allocate" in msg) or "not enough memory" in msg
