"""Counting a whole model's cost from a forward pass."""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from ..cost import Cost
from .convert import _facts
from .loading import forward_once

__all__ = ["model_cost"]


def model_cost(model: nn.Module, shape: tuple[int, ...], dtype_bytes: int = 4) -> Cost:
    """The engine's cost of an arbitrary model, from one forward pass: conv and linear
    layers priced by the engine at the shapes that reach them; params from the module."""
    from ..cost import cost as engine_cost
    from ..specs import LinearSpec

    costs: list[Cost] = []

    def hook(mod: nn.Module, args: tuple[Any, ...]) -> None:
        s = tuple(args[0].shape)
        if isinstance(mod, nn.Conv2d):
            spec: Any = _facts(mod, ["-"], s, ()).spec()
        else:
            assert isinstance(mod, nn.Linear)
            spec = LinearSpec(mod.in_features, mod.out_features, mod.bias is not None)
            s = (math.prod(s[:-1]), s[-1])
        costs.append(engine_cost(spec, s, dtype_bytes))

    hooks = [m.register_forward_pre_hook(hook) for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        x, y = forward_once(model, shape, 0)
    finally:
        for h in hooks:
            h.remove()
    return Cost(
        kind="model", params=sum(p.numel() for p in model.parameters()),
        macs=sum(c.macs for c in costs), input_shape=tuple(x.shape),
        output_shape=tuple(y.shape), bytes=sum(c.bytes for c in costs),
        elementwise=sum(c.elementwise for c in costs),
        peak_activation_elems=max((c.peak_activation_elems for c in costs), default=0),
        dtype_bytes=dtype_bytes,
    )
