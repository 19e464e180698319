"""Architecture presets as lists of engine specs (stdlib only).

MobileNetV1/V2/V3 and EfficientNet-B0 follow their papers' block tables, with the
reference implementations' rounding (``make_divisible`` for V2/V3/EfficientNet widths;
V1 truncates ``int(c * alpha)``). Stages group consecutive blocks of the same output width.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from .cost import DTYPE_BYTES, Cost, cost_sequence, flops
from .errors import FieldError
from .results import CostTotals, PresetLayer, PresetModel, PresetResult, PresetStage
from .specs import (
    ConvSpec,
    InvertedResidualSpec,
    LinearSpec,
    PoolSpec,
    SeparableSpec,
    Spec,
    default_padding,
    make_divisible,
)

__all__ = ["PAPER_TOTALS", "PRESETS", "Layer", "Preset", "full_conv", "get_preset"]


@dataclass(frozen=True)
class Layer:
    stage: str
    name: str
    spec: Spec


@dataclass(frozen=True)
class Preset:
    name: str
    width: float
    resolution: int
    classes: int
    layers: tuple[Layer, ...]

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, 3, self.resolution, self.resolution)

    @property
    def stages(self) -> list[str]:
        return list(dict.fromkeys(layer.stage for layer in self.layers))

    def stage_layers(self, stage: str) -> list[tuple[str, Spec]]:
        return [(la.name, la.spec) for la in self.layers if la.stage == stage]

    def cost(self, batch: int = 1, dtype: str = "fp32") -> Cost:
        """Whole network; its parts are the layers in order."""
        shape = (batch, *self.input_shape[1:])
        return cost_sequence([(la.name, la.spec) for la in self.layers], shape,
                             DTYPE_BYTES[dtype])

    def result(self, batch: int = 1, dtype: str = "fp32",
               per_layer: bool = False) -> PresetResult:
        """The analytic report: totals, each stage's share, each layer (``per_layer``)."""
        total = self.cost(batch, dtype)
        layer_costs = dict(total.parts)
        stages = []
        for st in self.stages:
            names = [la.name for la in self.layers if la.stage == st]
            cs = [layer_costs[n] for n in names]
            params, macs = sum(c.params for c in cs), sum(c.macs for c in cs)
            stages.append(PresetStage(
                stage=st, blocks=len(names), output_shape=list(cs[-1].output_shape),
                params=params, macs=macs, flops=flops(macs), bytes=sum(c.bytes for c in cs),
                share_macs=round(macs / total.macs, 4) if total.macs else 0.0,
                share_params=round(params / total.params, 4) if total.params else 0.0))
        layers = None
        if per_layer:
            layers = [PresetLayer(stage=la.stage, name=la.name,
                                  **vars(CostTotals.of(layer_costs[la.name])))
                      for la in self.layers]
        return PresetResult(
            name=self.name, model=PresetModel(self.name, self.width, self.resolution,
                                              self.classes, batch, dtype),
            totals=CostTotals.of(total), stages=stages, layers=layers)


def _v1(width: float, classes: int) -> list[Layer]:
    def c(ch: int) -> int:
        return int(ch * width)

    layers = [Layer("stem", "stem", ConvSpec(3, c(32), (3, 3), (2, 2), (1, 1), bn=True,
                                             activation="relu"))]
    table = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5,
             (1024, 2), (1024, 1)]
    cin = c(32)
    widths: list[int] = []
    for i, (out, s) in enumerate(table):
        if out not in widths:
            widths.append(out)
        spec = SeparableSpec(cin, c(out), (3, 3), (s, s), (1, 1), dw_bn=True,
                             dw_activation="relu", pw_bn=True, pw_activation="relu")
        layers.append(Layer(f"stage{len(widths)}", f"block{i + 1}", spec))
        cin = c(out)
    return [*layers, *_classifier(cin, [classes])]


def _classifier(cin: int, widths: list[int], act: str | None = None) -> list[Layer]:
    out = [Layer("classifier", "pool", PoolSpec(flatten=True))]
    for i, w in enumerate(widths):
        last = i == len(widths) - 1
        out.append(Layer("classifier", f"fc{i + 1}" if len(widths) > 1 else "fc",
                         LinearSpec(cin, w, activation=None if last else act)))
        cin = w
    return out


def _ir_stack(cin: int, rows: list[tuple[int, int, int, int, bool, str]],
              se_rule: Callable[[int, int], int], se_act: str, se_gate: str) -> list[Layer]:
    """rows: (kernel, expanded, out, stride, se, activation), one per block."""
    layers = []
    widths: list[int] = []
    for i, (k, exp, out, s, se, act) in enumerate(rows):
        if out not in widths or widths[-1] != out:
            widths.append(out)
        spec = InvertedResidualSpec(cin, out, exp, (k, k), (s, s), (1, 1), act,
                                    se_rule(cin, exp) if se else 0, se_act, se_gate)
        layers.append(Layer(f"stage{len(widths)}", f"block{i + 1}", spec))
        cin = out
    return layers


def _stem(cout: int, act: str) -> Layer:
    return Layer("stem", "stem", ConvSpec(3, cout, (3, 3), (2, 2), (1, 1), bn=True,
                                          activation=act))


def _head(cin: int, cout: int, act: str) -> Layer:
    return Layer("head", "head", ConvSpec(cin, cout, (1, 1), padding=(0, 0), bn=True,
                                          activation=act))


def _v2(width: float, classes: int) -> list[Layer]:
    stem = make_divisible(32 * width)
    rows = []
    cin = stem
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        out = make_divisible(c * width)
        for i in range(n):
            rows.append((3, int(round(cin * t)), out, s if i == 0 else 1, False, "relu6"))
            cin = out
    last = make_divisible(1280 * max(1.0, width))
    return [_stem(stem, "relu6"), *_ir_stack(stem, rows, lambda i, e: 0, "relu", "hsigmoid"),
            _head(cin, last, "relu6"), *_classifier(last, [classes])]


V3_LARGE = [(3, 16, 16, 1, False, "relu"), (3, 64, 24, 2, False, "relu"),
            (3, 72, 24, 1, False, "relu"), (5, 72, 40, 2, True, "relu"),
            (5, 120, 40, 1, True, "relu"), (5, 120, 40, 1, True, "relu"),
            (3, 240, 80, 2, False, "hswish"), (3, 200, 80, 1, False, "hswish"),
            (3, 184, 80, 1, False, "hswish"), (3, 184, 80, 1, False, "hswish"),
            (3, 480, 112, 1, True, "hswish"), (3, 672, 112, 1, True, "hswish"),
            (5, 672, 160, 2, True, "hswish"), (5, 960, 160, 1, True, "hswish"),
            (5, 960, 160, 1, True, "hswish")]
V3_SMALL = [(3, 16, 16, 2, True, "relu"), (3, 72, 24, 2, False, "relu"),
            (3, 88, 24, 1, False, "relu"), (5, 96, 40, 2, True, "hswish"),
            (5, 240, 40, 1, True, "hswish"), (5, 240, 40, 1, True, "hswish"),
            (5, 120, 48, 1, True, "hswish"), (5, 144, 48, 1, True, "hswish"),
            (5, 288, 96, 2, True, "hswish"), (5, 576, 96, 1, True, "hswish"),
            (5, 576, 96, 1, True, "hswish")]


def _v3(table: list[tuple[int, int, int, int, bool, str]], last: int,
        width: float, classes: int) -> list[Layer]:
    stem = make_divisible(16 * width)
    rows = [(k, make_divisible(e * width), make_divisible(o * width), s, se, a)
            for k, e, o, s, se, a in table]
    cin = rows[-1][2]
    head = 6 * cin
    return [_stem(stem, "hswish"),
            *_ir_stack(stem, rows, lambda i, e: make_divisible(e / 4), "relu", "hsigmoid"),
            _head(cin, head, "hswish"),
            *_classifier(head, [make_divisible(last * width), classes], act="hswish")]


def _efficientnet_b0(width: float, classes: int) -> list[Layer]:
    stem = make_divisible(32 * width)
    rows = []
    cin = stem
    for t, k, s, _, c, n in [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2),
                             (6, 3, 2, 40, 80, 3), (6, 5, 1, 80, 112, 3),
                             (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]:
        out = make_divisible(c * width)
        for i in range(n):
            rows.append((k, make_divisible(cin * t), out, s if i == 0 else 1, True, "silu"))
            cin = out
    head = make_divisible(1280 * width)
    return [_stem(stem, "silu"),
            *_ir_stack(stem, rows, lambda i, e: max(1, i // 4), "silu", "sigmoid"),
            _head(cin, head, "silu"), *_classifier(head, [classes])]


PRESETS: dict[str, Callable[[float, int], list[Layer]]] = {
    "mobilenet_v1": _v1,
    "mobilenet_v2": _v2,
    "mobilenet_v3_large": lambda w, c: _v3(V3_LARGE, 1280, w, c),
    "mobilenet_v3_small": lambda w, c: _v3(V3_SMALL, 1024, w, c),
    "efficientnet_b0": _efficientnet_b0,
}

#: published totals at 224x224, width 1.0, 1000 classes: (mult-adds, params)
PAPER_TOTALS = {
    "mobilenet_v1": (569_000_000, 4_200_000),
    "mobilenet_v2": (300_000_000, 3_400_000),
    "mobilenet_v3_large": (219_000_000, 5_400_000),
    "mobilenet_v3_small": (56_000_000, 2_500_000),
    "efficientnet_b0": (390_000_000, 5_300_000),
}

TOTAL_STRIDE = 32


def get_preset(name: str, width: float = 1.0, resolution: int = 224,
               classes: int = 1000) -> Preset:
    """A preset by name; errors name the field (``model``, ``width``, ...)."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=1)
        raise FieldError("model", f"unknown model {name!r}; known: {', '.join(PRESETS)}",
                         hint=f"did you mean {close[0]!r}?" if close else None)
    if isinstance(width, bool) or not (math.isfinite(width) and 0.05 <= width <= 16):
        raise FieldError("width", f"must be between 0.05 and 16, got {width}")
    if isinstance(resolution, bool) or not TOTAL_STRIDE <= resolution <= 8192:
        raise FieldError("resolution", f"must be between the network's total stride "
                         f"({TOTAL_STRIDE}) and 8192, got {resolution}")
    if isinstance(classes, bool) or not 1 <= classes <= 1 << 20:
        raise FieldError("classes", f"must be between 1 and {1 << 20:,}, got {classes}")
    return Preset(name, width, resolution, classes, tuple(PRESETS[name](width, classes)))


def full_conv(p: Preset) -> Preset:
    """The same network with every depthwise + pointwise pair replaced by one dense conv of
    the same in/out channels, kernel and stride (as the MobileNetV1 paper compares).

    In an inverted residual the pair is the depthwise conv and the projection after it:
    they become one dense KxK conv (expanded -> out); the expansion and any SE stay. The
    variant is a plain sequence of layers, so a block's residual add is not in it: the
    full-conv totals leave out that add's elementwise ops and its bytes (MACs and params
    are unaffected; an add has neither)."""
    layers: list[Layer] = []
    for la in p.layers:
        s = la.spec
        if isinstance(s, SeparableSpec):
            layers.append(replace(la, spec=ConvSpec(
                s.in_channels, s.out_channels, s.kernel, s.stride, s.padding, s.dilation,
                bias=s.bias, bn=s.pw_bn, activation=s.pw_activation)))
        elif isinstance(s, InvertedResidualSpec):
            for part_name, part in s.parts:
                if part_name in ("expand", "se"):
                    layers.append(Layer(la.stage, f"{la.name}.{part_name}", part))
            layers.append(Layer(la.stage, f"{la.name}.conv", ConvSpec(
                s.expanded_channels, s.out_channels, s.kernel, s.stride,
                default_padding(s.kernel, s.dilation), s.dilation, bn=True)))
        else:
            layers.append(la)
    return replace(p, layers=tuple(layers))
