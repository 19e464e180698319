"""An exact resume cache for the ``nn.Sequential`` containers of a converted model, used
only by :func:`calibrate.refit`'s per-layer passes (never by distillation, fidelity, the
original's targets or anything after ``refit`` returns).

``refit`` refits the converted layers one at a time, in forward order; the pass for layer
i runs the converted model on each batch from its input until layer i's depthwise conv (a
hook raises ``_Stop``). Without this cache the network's prefix up to layer i is computed
again for every layer: the cost is the sum of all the prefixes.

While :func:`sequential_cache` is active, every ``nn.Sequential`` S of the model whose
forward is ``nn.Sequential.forward`` gets an instance-level ``forward`` (removed on exit,
whatever happened). Inside :meth:`SequentialCache.batch` (one forward on batch b), S's
first call of the forward looks up the entry (S, b): when it holds ``(k, t)``, S starts at
child k+1 from a copy of ``t``, else at child 0 from its input. Each child that completes
replaces the entry with ``(k, a copy of its output)``, within a byte budget.

Why a resumed S computes exactly what it would have (bit for bit, up to float
nondeterminism):

- The pass for layer i stops at layer i's first call. Every converted layer called before
  that point comes earlier in forward order: it has been refitted already and never changes
  again (the passes for later layers, and layer i's own refine passes, change layer i or
  later layers only). Everything a pass computes before it stops is therefore final, and a
  later pass on the same batch computes the same values up to that point; this assumes the
  forward is a function of the weights and the batch (eval mode, no randomness, no state
  the forward keeps and changes).
- An entry is stored when a child *completes*, before the stop: it holds final values. S's
  input in that pass came from final code too, so in any later pass the same call of S gets
  the same input, and children 0..k would give the same output again. The depthwise refine
  passes stop at a pre-hook of layer i's pair, before it runs: the same holds.
- Calls are matched across passes by rank: an entry belongs to S's *first* call in a
  forward. Later calls of S in the same forward (a shared Sequential) run plainly and never
  read or write the cache. Skipping children can make a later call of a Sequential T the
  first one (T called inside the skipped children and again after): so when S stores child
  k's output, the entries of every Sequential whose first call in this forward began inside
  S (in children 0..k: S is still running) are dropped, in the same step. Nothing else
  drops an entry while the cache is active (a store over the budget is just not made; the
  older entry stays valid), so what a pass skips only grows, and a call that is a
  Sequential's first one stays its first one until its entry is dropped.
- Copies in and out: a child that writes its input in place (``ReLU(inplace=True)``) or a
  caller that writes S's output never changes an entry. An output whose copy would get a
  different layout (an expanded or strided view) is not stored.
- Writes to S's own input: a resumed S skips children 0..k, so a write they made to the
  tensor S was given (``Sequential(ReLU(inplace=True), ...)`` in a block that adds its
  input back) would be lost to the caller. The input's version counter is read before and
  after each child (the passes run under ``no_grad``, whose tensors keep one), and its
  storage is compared with each child's output: an S that writes its input or hands it on
  is forgotten (its entries dropped) and always runs plainly.
- Hooks: an S with forward hooks on it or inside it (a U-Net that keeps features with
  hooks) is never patched, nor anything while global forward hooks are set: a skipped
  child would not call them. A forward that keeps state on a module by other means (an
  attribute set in one child, read elsewhere later) is not seen: for such a model the
  refit solves on stale inputs, which the fidelity measured afterwards (always plainly)
  shows.

Plain computing is always the fallback, and caching never raises: an input that is not a
plain dense tensor (a tuple, a tensor subclass, a sparse one) runs plainly, such an output
ends caching for the rest of that call, a forward outside :meth:`SequentialCache.batch`
runs plainly, Sequential subclasses with a forward of their own are left alone, and a model
whose forward indexes a Sequential's children never calls S's forward at all. Should a copy
fail (out of memory) or a resumed call's input ever differ in shape, strides, dtype or
device from the one stored, the cache drops everything and turns itself off for the rest
of the run (all calls plain: always exact).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["SequentialCache", "budget", "sequential_cache"]

#: the cache may hold this share of the memory left free after calibration's own estimate
SHARE = 0.5
#: and never more than this many bytes
CAP = 2 << 30
#: what it may hold where the free memory cannot be read
UNKNOWN = 256 << 20

_PLAIN = nn.Sequential.forward


def budget(free: int | None, needed: int, device: torch.device) -> int:
    """Bytes the cache may hold on ``device`` (where the model is): ``SHARE`` of what is
    left of ``free`` (host bytes, for a CPU model; the accelerator's own, read here, for a
    CUDA one) after the ``needed`` bytes calibration is estimated to allocate, at most
    ``CAP``; ``UNKNOWN`` where the free memory cannot be read, 0 on other devices."""
    if device.type == "cuda":
        try:
            free = torch.cuda.mem_get_info(device)[0]
        except Exception:  # noqa: BLE001 - an optimisation: no cache rather than an error
            return 0
    elif device.type != "cpu":
        return 0
    if free is None:
        return UNKNOWN
    return max(0, min(CAP, int((free - needed) * SHARE)))


def _version(t: torch.Tensor) -> int | None:
    """``t``'s version counter (bumped by every in-place write to it or a view of it);
    None for an inference tensor, which keeps none."""
    try:
        return int(t._version)
    except RuntimeError:
        return None


def _shares(a: Any, b: torch.Tensor) -> bool:
    """Whether ``a`` is a tensor on ``b``'s memory (``b`` itself or a view of it)."""
    return (isinstance(a, torch.Tensor) and a.device == b.device
            and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr())


def _hooked(m: nn.Module) -> bool:
    """Whether ``m`` or a module inside it has forward hooks (a hook that keeps a feature
    for later, as U-Nets built with hooks do, must see every call)."""
    return any(x._forward_hooks or x._forward_pre_hooks for x in m.modules())


def _layout(t: torch.Tensor) -> tuple[Any, ...]:
    return tuple(t.shape), t.stride(), t.dtype, t.device


def _plain(t: Any) -> bool:
    """A plain dense tensor (not a subclass, sparse, nested or quantized one)."""
    return (type(t) is torch.Tensor and t.layout == torch.strided and not t.is_nested
            and not t.is_quantized)


def _dense(t: torch.Tensor) -> bool:
    """Whether a copy of ``t`` keeps its strides: contiguous, or channels_last."""
    return t.is_contiguous() or (t.ndim == 4 and t.is_contiguous(
        memory_format=torch.channels_last)) or (t.ndim == 5 and t.is_contiguous(
            memory_format=torch.channels_last_3d))


@dataclass
class _Entry:
    #: the last child completed, and a copy of its output
    k: int
    out: torch.Tensor
    #: the layout of the Sequential's input when it was stored
    given: tuple[Any, ...]
    size: int


class SequentialCache:
    """The entries, by (Sequential, batch index), and what one forward has called so far."""

    def __init__(self, budget: int, device: torch.device | None = None) -> None:
        self.budget = max(0, budget)
        self.device = device or torch.device("cpu")
        #: bytes held now, and at most
        self.used = 0
        self.peak = 0
        #: entries stored, calls resumed, children skipped
        self.stores = 0
        self.resumes = 0
        self.skipped = 0
        self.off = False
        #: Sequentials seen writing their input in place or returning it (a view of it):
        #: a resumed call would skip that write, so they always run plainly
        self._never: set[int] = set()
        self._entries: dict[tuple[int, int], _Entry] = {}
        self._batch: int | None = None
        #: this forward: calls per Sequential, and the rank of each one's first call
        self._calls: dict[int, int] = {}
        self._began: dict[int, int] = {}

    @contextlib.contextmanager
    def batch(self, index: int) -> Iterator[None]:
        """One forward of the model on batch ``index``: the cache is read and written only
        inside."""
        self._batch, self._calls, self._began = index, {}, {}
        try:
            yield
        finally:
            self._batch = None

    def close(self) -> None:
        """Drop every entry; from now on every call runs plainly."""
        self.off = True
        self._entries.clear()
        self.used = 0

    def forward(self, seq: nn.Sequential, *args: Any, **kwargs: Any) -> Any:
        """``seq``'s forward: resumed after its last completed child where the cache
        holds it, each completed child's output stored."""
        key = id(seq)
        calls = self._calls.get(key, 0) + 1
        self._calls[key] = calls
        if (calls > 1 or self._batch is None or self.off or kwargs or len(args) != 1
                or not _plain(args[0]) or key in self._never):
            return _PLAIN(seq, *args, **kwargs)
        x: Any = args[0]
        given_t, v0 = x, _version(x)
        if v0 is None:  # an inference tensor keeps no version: writes cannot be seen
            return _PLAIN(seq, x)
        self._began[key] = len(self._began)
        slot = (key, self._batch)
        given = _layout(x)
        start = 0
        entry = self._entries.get(slot)
        if entry is not None:
            try:
                if entry.given != given:  # cannot happen when the reasoning above holds
                    raise ValueError(entry.given)
                start, x = entry.k + 1, entry.out.clone()
            except Exception:  # noqa: BLE001 - out of memory, say: plain from here on
                self.close()
                return _PLAIN(seq, x)
            self.resumes += 1
            self.skipped += start
        children = list(seq)
        caching = True
        for k in range(start, len(children)):
            x = children[k](x)
            if caching and (_version(given_t) != v0 or _shares(x, given_t)):
                self._forget(key)  # it wrote its input, or hands it on: never resumed
                caching = False
            caching = caching and _plain(x)
            if caching:
                self._store(slot, k, x, given)
        return x

    def _forget(self, key: int) -> None:
        """Drop every entry of the Sequential ``key``; it runs plainly from now on."""
        self._never.add(key)
        for s in [s for s in self._entries if s[0] == key]:
            self.used -= self._entries.pop(s).size

    def _store(self, slot: tuple[int, int], k: int, out: torch.Tensor,
               given: tuple[Any, ...]) -> None:
        """Keep ``(k, a copy of out)`` for ``slot`` in place of its entry, dropping the
        entries of the Sequentials first called inside this call; nothing when over the
        budget (or off, or on another device)."""
        if self.off or out.device != self.device or not _dense(out):
            return
        mine = self._began[slot[0]]
        inner = [s for s in self._entries
                 if s[1] == slot[1] and self._began.get(s[0], -1) > mine]
        old = self._entries.get(slot)
        freed = (old.size if old else 0) + sum(self._entries[s].size for s in inner)
        size = out.numel() * out.element_size()
        if self.used - freed + size > self.budget:
            return
        for s in [*inner, *([slot] if old else [])]:
            del self._entries[s]
        self.used -= freed
        try:
            copy = out.detach().clone()
        except Exception:  # noqa: BLE001 - out of memory, say: no cache rather than an error
            self.close()
            return
        if copy.stride() != out.stride():  # never for a dense tensor: off, to stay safe
            self.close()
            return
        self._entries[slot] = _Entry(k, copy, given, size)
        self.used += size
        self.peak = max(self.peak, self.used)
        self.stores += 1


@contextlib.contextmanager
def sequential_cache(model: nn.Module, budget: int,
                     device: torch.device | None = None) -> Iterator[SequentialCache]:
    """Give every plain ``nn.Sequential`` of ``model`` the cache's forward while active;
    each gets its own forward back, and the entries are dropped, on exit (an exception, a
    ``BaseException`` included, as well)."""
    cache = SequentialCache(budget, device)
    patched: list[tuple[nn.Module, Any]] = []
    hooks = nn.modules.module
    global_hooks = bool(hooks._global_forward_hooks or hooks._global_forward_pre_hooks)
    try:
        for m in () if global_hooks else model.modules():
            if (isinstance(m, nn.Sequential) and type(m).forward is _PLAIN
                    and "forward" not in vars(m) and not _hooked(m)):
                fn = functools.partial(cache.forward, m)
                vars(m)["forward"] = fn
                patched.append((m, fn))
        yield cache
    finally:
        for m, fn in patched:
            if vars(m).get("forward") is fn:
                del vars(m)["forward"]
        cache.close()
