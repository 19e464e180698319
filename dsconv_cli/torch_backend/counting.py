"""Counting a whole model at the ATen dispatch level (a ``TorchDispatchMode``).

One forward runs on meta tensors (no arithmetic, no activation memory; the model's own
weights are swapped for meta stand-ins with ``functional_call``, never copied). Each
ATen op is sorted by one table:

- **MACs**: the ops torch's own ``FlopCounterMode`` counts (its ``flop_registry``, /2):
  every convolution (1d/2d/3d, grouped, transposed), mm/addmm/bmm/baddbmm (what linear,
  matmul and einsum dispatch to) and scaled_dot_product_attention's kernels (QK^T and
  AV), plus the CPU flash-attention kernel the registry lacks;
- **elementwise**: pointwise ops (activations, adds, ...) and norms, pooling, softmax,
  reductions, copies and concatenation: one op per output element, counted apart;
- **free**: views and in-place restrides (``as_strided_``, ``transpose_``: metadata only),
  shape ops, tensor creation;
- **uncounted**: every other op with a non-empty output, listed with its calls and the
  modules it ran in (never silently zero).

Bytes are per op: its tensor inputs read once and its outputs written once (unfused, no
cache reuse), so FLOP/B is a lower bound on a fused runtime's intensity. Every op is
attributed to each module on the call stack (a module's row includes its children).
Where an op cannot run on meta, the forward is repeated on real zeros (``counted_on``
says so), with PyTorch's fused attention fast path off so the count does not depend on it.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry, sdpa_flop_count

from ..cost import Cost
from ..errors import InputError
from . import forward_error, free_memory
from .loading import module_stack

__all__ = ["ModelCount", "ModuleCount", "check_forward_fits", "count_model", "meta_copy",
           "model_cost"]

aten = torch.ops.aten


def _sdpa_cpu(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    return int(sdpa_flop_count(query.shape, key.shape, value.shape))


#: op -> FLOPs from (args, kwargs, out); torch's registry plus what it lacks
_MAC_OPS: dict[Any, Any] = dict(flop_registry)
_MAC_OPS[aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_cpu

_ELEMENTWISE_OPS = {
    aten.native_batch_norm, aten._native_batch_norm_legit_no_training,
    aten._native_batch_norm_legit, aten.native_layer_norm, aten.native_group_norm,
    aten.avg_pool1d, aten.avg_pool2d, aten.avg_pool3d, aten.max_pool2d_with_indices,
    aten.max_pool3d_with_indices, aten.max_pool1d, aten.max_pool2d,
    aten._adaptive_avg_pool2d, aten._adaptive_avg_pool3d, aten.adaptive_max_pool2d,
    aten.mean, aten.sum, aten.amax, aten.amin, aten.max, aten.min, aten.var_mean, aten.var,
    aten.std, aten.norm, aten.linalg_vector_norm, aten.prod, aten.cumsum, aten.argmax,
    aten._softmax, aten._log_softmax, aten._safe_softmax,
    aten.cat, aten.stack, aten.clone, aten._to_copy, aten.copy_, aten.copy,
    aten.constant_pad_nd, aten.reflection_pad2d, aten.replication_pad2d, aten.index,
    aten.index_select, aten.gather, aten.embedding, aten.upsample_nearest2d,
    aten.upsample_bilinear2d, aten.roll, aten.flip, aten.masked_fill, aten.where,
    aten.topk, aten.sort, aten.repeat, aten.tril, aten.triu,
    # activations PyTorch does not tag as pointwise
    aten.hardswish, aten.hardswish_, aten.glu, aten.prelu, aten._prelu_kernel,
    aten.log_sigmoid_forward, aten.native_dropout, aten.dropout, aten.gelu_,
}
_FREE_OPS = {
    aten.detach, aten.alias, aten.lift_fresh, aten.lift_fresh_copy, aten._unsafe_view,
    aten.empty, aten.empty_like, aten.empty_strided, aten.zeros, aten.zeros_like, aten.ones,
    aten.ones_like, aten.full, aten.full_like, aten.new_empty, aten.new_empty_strided,
    aten.new_zeros, aten.new_ones, aten.new_full, aten.arange, aten.scalar_tensor,
    aten.randn, aten.rand, aten.randn_like, aten.rand_like, aten.normal_, aten.uniform_,
    aten.fill_, aten.zero_, aten.linspace, aten.eye, aten._local_scalar_dense,
    aten.sym_size, aten.sym_stride, aten.sym_numel, aten.is_same_size, aten.dim,
    aten.size, aten.stride, aten.is_nonzero, aten.item,
}


def _numel(x: Any) -> int:
    return sum(t.numel() for t in tree_flatten(x)[0] if isinstance(t, torch.Tensor))


def _nbytes(x: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tree_flatten(x)[0]
               if isinstance(t, torch.Tensor))


def kind_of(func: Any) -> str:
    """``macs``, ``elementwise``, ``free`` or ``uncounted``: the one sorting table."""
    packet = func._overloadpacket
    if packet in _MAC_OPS:
        return "macs"
    tags = getattr(func, "tags", ())
    # views and in-place restrides (as_strided_, transpose_, resize_, ...) change metadata
    # only: no arithmetic, never "uncounted"
    if getattr(func, "is_view", False) or torch.Tag.inplace_view in tags or packet in _FREE_OPS:
        return "free"
    # a view's *_copy twin (view_copy, permute_copy, ...) is a copy: one op per element
    if torch.Tag.view_copy in tags or packet in _ELEMENTWISE_OPS or _pointwise(packet):
        return "elementwise"
    return "uncounted"


_POINTWISE: dict[Any, bool] = {}


def _pointwise(packet: Any) -> bool:
    """Whether any overload of the op is tagged pointwise (``add.Tensor`` is,
    ``add.out`` is not: the op is the same)."""
    if packet not in _POINTWISE:
        _POINTWISE[packet] = any(torch.Tag.pointwise in getattr(packet, o).tags
                                 for o in packet.overloads())
    return _POINTWISE[packet]


@dataclass
class ModuleCount:
    name: str
    type: str
    depth: int
    params: int
    calls: int = 0
    macs: int = 0
    bytes: int = 0
    elementwise: int = 0
    output_shape: tuple[int, ...] | None = None
    input_shape: tuple[int, ...] | None = None


@dataclass
class ModelCount:
    modules: dict[str, ModuleCount]
    uncounted: dict[str, tuple[int, list[str]]]
    counted_on: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    macs: int
    bytes: int
    elementwise: int
    dtype_bytes: int = 4
    conv_shapes: dict[str, list[tuple[int, ...]]] = field(default_factory=dict)


class _Counter(TorchDispatchMode):
    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        """Not wrapped in ``torch._disable_dynamo``: this mode never runs under
        ``torch.compile``, and the wrapper's first call imports all of dynamo (~0.8 s of a
        ~1 s analysis; see the docstring of ``TorchDispatchMode._should_skip_dynamo``)."""
        return False

    def __init__(self, stack: list[str], rows: dict[str, ModuleCount]) -> None:
        super().__init__()
        self.stack = stack
        self.rows = rows
        self.uncounted: dict[str, list[Any]] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        kind = kind_of(func)
        if kind == "free":
            return out
        where = list(dict.fromkeys(self.stack))
        if kind == "uncounted":
            if _numel(out) > 0:
                entry = self.uncounted.setdefault(str(func._overloadpacket).replace(
                    "aten.", "aten::"), [0, []])
                entry[0] += 1
                here = where[-1] if where else ""
                if here not in entry[1]:
                    entry[1].append(here)
            return out
        macs = elem = 0
        if kind == "macs":
            macs = int(_MAC_OPS[func._overloadpacket](*args, **kwargs, out_val=out)) // 2
        else:
            elem = _numel(out)
        moved = _nbytes((args, kwargs)) + _nbytes(out)
        for name in where:
            row = self.rows[name]
            row.macs += macs
            row.elementwise += elem
            row.bytes += moved
        return out


def _unique_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())  # parameters() dedups shared tensors


def check_single_input(model: nn.Module) -> None:
    """A forward needing more than one input is refused, naming its parameters."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return
    required = [p for p in params if p.default is inspect.Parameter.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(required) > 1:
        names = ", ".join(p.name for p in required)
        raise InputError(f"the model's forward takes {len(required)} inputs ({names}); "
                         "dsconv feeds one tensor of --input-shape",
                         hint="wrap the model in a module whose forward takes one tensor")


def _tracking(model: nn.Module, stack: list[str], rows: dict[str, ModuleCount],
              conv_shapes: dict[str, list[tuple[int, ...]]]
              ) -> contextlib.AbstractContextManager[None]:
    """The module stack (for the counter and for errors), each module's calls and shapes."""

    def enter(mod: nn.Module, name: str, args: Any) -> None:
        row = rows[name]
        row.calls += 1
        first = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if first is not None:
            row.input_shape = tuple(first.shape)
            if isinstance(mod, nn.Conv2d):
                conv_shapes.setdefault(name, []).append(tuple(first.shape))

    def leave(mod: nn.Module, name: str, out: Any) -> None:
        t = next((o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor)), None)
        if t is not None:
            rows[name].output_shape = tuple(t.shape)

    return module_stack(model, stack, enter, leave)


@contextlib.contextmanager
def _on_meta(model: nn.Module) -> Iterator[None]:
    """Every parameter and buffer swapped for a meta stand-in of its shape, and put back
    afterwards, whatever happens (shared modules and tied weights included): the
    weights are never copied. (``torch.func.functional_call`` left a tied weight on meta.)"""
    saved: list[tuple[dict[str, Any], str, Any]] = []
    try:
        for mod in model.modules():
            tables: tuple[dict[str, Any], ...] = (mod._parameters, mod._buffers)
            for table in tables:
                for name, t in list(table.items()):
                    if t is None or t.is_meta:
                        continue
                    saved.append((table, name, t))
                    stand_in = torch.empty_like(t, device="meta")
                    table[name] = (nn.Parameter(stand_in, t.requires_grad)
                                   if isinstance(t, nn.Parameter) else stand_in)
        yield
    finally:
        for table, name, t in reversed(saved):
            table[name] = t


def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters and buffers are meta stand-ins of its own
    (tied and shared tensors stay shared): the modules are deep-copied, no weight is, and
    ``model`` is left as it was. What the Python API counts a live module on."""
    memo: dict[int, Any] = {}
    for t in (*model.parameters(), *model.buffers()):
        if id(t) not in memo:
            stand_in = torch.empty_like(t, device="meta")
            memo[id(t)] = (nn.Parameter(stand_in, t.requires_grad)
                           if isinstance(t, nn.Parameter) else stand_in)
    out: nn.Module = copy.deepcopy(model, memo)
    return out


def _run(model: nn.Module, x: torch.Tensor, on_meta: bool, stack: list[str],
         rows: dict[str, ModuleCount], conv_shapes: dict[str, list[tuple[int, ...]]]
         ) -> tuple[Any, dict[str, list[Any]]]:
    counter = _Counter(stack, rows)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        swap = _on_meta(model) if on_meta else contextlib.nullcontext()
        with swap, _tracking(model, stack, rows, conv_shapes), torch.no_grad(), counter:
            y = model(x)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        for m, mode in modes.items():
            m.training = mode
    return y, counter.uncounted


def _fresh_rows(model: nn.Module) -> dict[str, ModuleCount]:
    return {n: ModuleCount(n, type(m).__name__, 0 if not n else n.count(".") + 1,
                           _unique_params(m)) for n, m in model.named_modules()}


def count_model(model: nn.Module, input_shape: tuple[int, ...],
                dtype: torch.dtype | None = None) -> ModelCount:
    """Count one forward of ``model`` on an input of ``input_shape`` (batch included), in
    ``dtype`` (default: the model's own floating dtype, fp16 and fp64 models included)."""
    check_single_input(model)
    dtype = dtype or _dtype_of(model)
    stack: list[str] = []
    conv_shapes: dict[str, list[tuple[int, ...]]] = {}
    rows = _fresh_rows(model)
    counted_on = "meta"
    try:
        y, uncounted = _run(model, torch.empty(input_shape, dtype=dtype, device="meta"), True,
                            stack, rows, conv_shapes)
    except (Exception, SystemExit) as e:  # an op without a meta kernel, or a real error
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if not _meta_only_failure(e):  # a wrong shape fails on meta as it would for real
            raise forward_error(model, stack, input_shape, e) from e
        _check_input_fits(input_shape, dtype)
        esize = torch.empty((), dtype=dtype).element_size()  # what meta saw before failing:
        _refuse_beyond_free(input_shape, _forward_need(input_shape, rows, _unique_params(
            model), esize), "(estimated on meta before the forward on real zeros)")
        stack.clear()
        conv_shapes.clear()
        rows = _fresh_rows(model)
        _materialise(model)
        counted_on = f"zeros (meta failed: {reason[:120]})"
        x = torch.zeros(input_shape, dtype=dtype, device=_device_of(model))
        try:
            y, uncounted = _run(model, x, False, stack, rows, conv_shapes)
        except (Exception, SystemExit) as e2:
            raise forward_error(model, stack, input_shape, e2) from e2
    out = next((t for t in tree_flatten(y)[0] if isinstance(t, torch.Tensor)), None)
    if out is None:
        raise InputError(f"the model's forward returned {type(y).__name__}, not a tensor (or "
                         "a tuple, list or dict holding one)")
    root = rows[""]
    esize = torch.empty((), dtype=dtype).element_size()
    return ModelCount(
        modules=rows, uncounted={k: (v[0], v[1]) for k, v in sorted(uncounted.items())},
        counted_on=counted_on, input_shape=tuple(input_shape), output_shape=tuple(out.shape),
        params=_unique_params(model), macs=root.macs, bytes=root.bytes,
        elementwise=root.elementwise, dtype_bytes=esize, conv_shapes=conv_shapes)


def _meta_only_failure(e: BaseException) -> bool:
    """An op that cannot run on meta tensors (no meta kernel, or the forward reads a value:
    ``.item()``, ``if x.sum() > 0``), as opposed to an error a real forward would raise too."""
    msg = str(e).lower()
    return isinstance(e, NotImplementedError) or "meta" in msg or "data-dependent" in msg \
        or "data pointer" in msg


def _check_input_fits(input_shape: tuple[int, ...], dtype: torch.dtype) -> None:
    """Before a forward on real zeros: the input alone must fit in a tenth of free memory."""
    need = math.prod(input_shape) * torch.empty((), dtype=dtype).element_size()
    free = free_memory()
    if free is None:
        return
    if need > 0.1 * free:
        raise InputError(f"--input-shape {','.join(map(str, input_shape))}: the model cannot be "
                         f"counted on meta tensors, and a real input of {need / 1e9:.1f} GB is "
                         f"too much for the {free / 1e9:.1f} GB free here")


def _device_of(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _materialise(model: nn.Module) -> None:
    """A model built on meta gets real (zero) storage for the fallback forward."""
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        model.to_empty(device="cpu")
        with torch.no_grad():
            for t in (*model.parameters(), *model.buffers()):
                t.zero_()


def check_forward_fits(model: nn.Module, input_shape: tuple[int, ...]) -> ModelCount:
    """Before a real forward: estimate its memory from a count on meta (the input, the two
    largest activations alive at once, the weights) and refuse beyond 80% of what this
    machine has free (``InputError``: the input shape asked for too much). Returns the
    count, so callers need not count again."""
    c = count_model(model, input_shape)
    _refuse_beyond_free(input_shape, _forward_need(input_shape, c.modules, c.params,
                                                   c.dtype_bytes),
                        "(estimated before allocating anything)")
    return c


def _forward_need(input_shape: tuple[int, ...], rows: dict[str, ModuleCount], params: int,
                  esize: int) -> int:
    """The memory estimate of a real forward (bytes): the input, the two largest
    activations alive at once (of the modules counted so far) and the weights."""
    outs = sorted((math.prod(r.output_shape) for r in rows.values() if r.output_shape),
                  reverse=True)
    return (math.prod(input_shape) + sum(outs[:2]) + params) * esize


def _refuse_beyond_free(input_shape: tuple[int, ...], need: int, how: str) -> None:
    """``InputError`` when ``need`` is beyond 80% of the memory free here."""
    free = free_memory()
    if free is not None and need > 0.8 * free:
        raise InputError(f"--input-shape {','.join(map(str, input_shape))}: a forward needs "
                         f"about {need / 1e9:.1f} GB, more than the {free / 1e9:.1f} GB free "
                         f"here {how}", hint="use a smaller batch or image size")


def _dtype_of(model: nn.Module) -> torch.dtype:
    """The model's floating dtype (its first floating parameter or buffer), else fp32."""
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def model_cost(model: nn.Module, shape: tuple[int, ...], dtype_bytes: int = 4) -> Cost:
    """The whole model's cost as the engine's :class:`Cost` (for budgets and speedups)."""
    c = count_model(model, shape)
    peak = max((math.prod(r.output_shape) for r in c.modules.values() if r.output_shape),
               default=0)
    return Cost(kind="model", params=c.params, macs=c.macs, input_shape=c.input_shape,
                output_shape=c.output_shape, bytes=c.bytes * dtype_bytes // c.dtype_bytes,
                elementwise=c.elementwise, peak_activation_elems=peak,
                dtype_bytes=dtype_bytes)
