"""The registry of block kinds ``compare --kind`` and a config's ``layer.kind`` accept.

One :class:`KindEntry` per kind: its help line, the layer options that apply to it, and
how a validated description becomes the standard spec it is compared with and the
candidate spec. The command line's ``--kind`` choices, the config's ``kind`` literal and
the "does not apply to kind" checks are all derived from :data:`KINDS`; costs come from
:mod:`.cost` and modules from :mod:`.torch_backend.build`, both keyed by spec class.
Stdlib only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import FieldError
from .specs import (
    ConvSpec,
    ECASpec,
    InvertedResidualSpec,
    SeparableSpec,
    Spec,
    SqueezeExciteSpec,
    default_padding,
    eca_kernel,
    make_divisible,
)

__all__ = ["CONV_OPTIONS", "KINDS", "KindEntry", "kind_names", "show_value"]

#: what a resolver returns: extra request fields, the standard spec, the candidate spec
Resolved = tuple[dict[str, Any], Spec, Spec]


@dataclass(frozen=True)
class KindEntry:
    name: str
    help: str
    #: layer options (neutral field names) that apply to this kind, beyond in/hw/batch
    options: frozenset[str]
    #: validated values (``given``) -> request fields, standard spec, candidate spec
    resolve: Callable[[Mapping[str, Any]], Resolved]


def show_value(v: Any) -> str:
    """A field's value as the user writes it: ``3`` for (3, 3), ``3x5`` for (3, 5)."""
    if isinstance(v, tuple):
        return str(v[0]) if v[0] == v[1] else f"{v[0]}x{v[1]}"
    return str(v)


#: options of every kind built around a KxK conv
CONV_OPTIONS = frozenset({"out", "kernel", "stride", "dilation", "groups", "bias"})


def _conv_request(given: Mapping[str, Any]) -> tuple[dict[str, Any], ConvSpec]:
    """The dense conv the block replaces (the standard side) and its request fields."""
    cin = given["in"]
    cout = given.get("out", cin)
    kernel = given.get("kernel", (3, 3))
    stride = given.get("stride", (1, 1))
    dilation = given.get("dilation", (1, 1))
    groups = given.get("groups", 1)
    bias = bool(given.get("bias", False))
    padding = given.get("padding", default_padding(kernel, dilation))
    if padding == "same" and stride != (1, 1):
        raise FieldError("padding", f"'same' needs stride 1 (as in PyTorch), got stride "
                         f"{show_value(stride)}")
    if cin % groups or cout % groups:
        raise FieldError("groups", f"{groups} must divide both in ({cin}) and out ({cout})")
    request = {"out": cout, "kernel": kernel, "stride": stride, "padding": padding,
               "dilation": dilation, "groups": groups, "bias": bias}
    return request, ConvSpec(cin, cout, kernel, stride, padding, dilation, groups, bias)


def _separable(given: Mapping[str, Any]) -> Resolved:
    request, std = _conv_request(given)
    m = given.get("depth_multiplier", 1)
    request["depth_multiplier"] = m
    cand = SeparableSpec(std.in_channels, std.out_channels, std.kernel, std.stride,
                         std.padding, std.dilation, m, std.bias)
    return request, std, cand


def _inverted_residual(given: Mapping[str, Any], mbconv: bool) -> Resolved:
    request, std = _conv_request(given)
    cin, kernel = std.in_channels, std.kernel
    if "expanded_channels" in given and "expansion" in given:
        raise FieldError("expansion", "give either expansion or expanded_channels")
    exp = given.get("expanded_channels") or int(round(cin * given.get("expansion", 6.0)))
    if not 1 <= exp <= 1 << 20:
        raise FieldError("expansion", f"gives {exp} expanded channels; must be 1 to "
                         f"{1 << 20:,}")
    if kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
        raise FieldError("kernel", f"an inverted residual needs an odd kernel (3, 5, ...) "
                         f"so its depthwise conv keeps the size, got {show_value(kernel)}")
    se = mbconv and given.get("se", True)
    sq = given.get("squeeze_channels", make_divisible(exp / 4)) if se else 0
    if "squeeze_channels" in given and not se:
        raise FieldError("squeeze_channels", "given with --no-se")
    act = given.get("activation", "hswish" if mbconv else "relu6")
    request |= {"expanded_channels": exp, "se": bool(se), "squeeze_channels": sq,
                "activation": act}
    del request["padding"]
    cand = InvertedResidualSpec(cin, std.out_channels, exp, kernel, std.stride, std.dilation,
                                act, sq)
    return request, std, cand


def _eca(given: Mapping[str, Any]) -> Resolved:
    cin = given["in"]
    k = given.get("eca_k", eca_kernel(cin))
    if k % 2 == 0:
        raise FieldError("eca_k", f"must be odd (the 1-D conv keeps C channels), got {k}")
    std = SqueezeExciteSpec(cin, max(1, cin // 16), "relu", "sigmoid")
    return {"eca_k": k}, std, ECASpec(cin, k)


_IR_OPTIONS = CONV_OPTIONS | {"expansion", "expanded_channels", "activation"}

KINDS: dict[str, KindEntry] = {e.name: e for e in (
    KindEntry("separable", "depthwise KxK + pointwise 1x1 vs a dense KxK conv",
              CONV_OPTIONS | {"depth_multiplier", "padding"}, _separable),
    KindEntry("inverted-residual", "MobileNetV2 block (expand, depthwise, project) vs a dense "
              "KxK conv", _IR_OPTIONS, lambda g: _inverted_residual(g, mbconv=False)),
    KindEntry("mbconv", "MobileNetV3/EfficientNet block with squeeze-excitation vs a dense "
              "KxK conv", _IR_OPTIONS | {"se", "squeeze_channels"},
              lambda g: _inverted_residual(g, mbconv=True)),
    KindEntry("eca", "efficient channel attention vs squeeze-excitation (reduction 16)",
              frozenset({"eca_k"}), _eca),
)}


def kind_names() -> tuple[str, ...]:
    return tuple(KINDS)
