"""The analytic engine against hand-worked formulas (exact integers)."""

from __future__ import annotations

import pytest

from dsconv_cli.cases import resolve_layer
from dsconv_cli.cost import closed_form_ratio, cost, flops, out_size
from dsconv_cli.specs import (
    ConvSpec,
    ECASpec,
    InvertedResidualSpec,
    SeparableSpec,
    SqueezeExciteSpec,
    eca_kernel,
    make_divisible,
)


def test_seed_case_exact() -> None:
    case = resolve_layer({"in": 256, "out": 256, "kernel": (3, 3), "hw": (14, 14)})
    std, ds = case.costs()
    assert (std.params, std.macs) == (589_824, 115_605_504)
    assert (ds.params, ds.macs) == (67_840, 13_296_640)
    assert ds.part("depthwise").params == 256 * 9
    assert ds.part("pointwise").params == 256 * 256
    assert ds.flops == 2 * ds.macs == flops(13_296_640)
    d = case.to_dict()
    assert d["reduction"] == {"params": 8.6943, "macs": 8.6943}
    assert d["theory"]["ratio"] == pytest.approx(1 / 256 + 1 / 9, abs=1e-4)
    assert round(d["theory"]["ratio"], 4) == 0.1150


@pytest.mark.parametrize(
    ("spec", "hw", "params", "macs", "out_hw"),
    [
        # strided: out = floor((15 + 2 - 2 - 1)/2) + 1 = 8
        (ConvSpec(32, 64, (3, 3), (2, 2), (1, 1)), (15, 15), 64 * 32 * 9, 64 * 32 * 9 * 64, (8, 8)),
        # dilated: d=2, default padding 2 keeps 10x10
        (ConvSpec(16, 16, (3, 3), (1, 1), (2, 2), (2, 2)), (10, 10), 2304, 2304 * 100, (10, 10)),
        # grouped: Cin/groups = 8
        (ConvSpec(32, 64, (3, 3), (1, 1), (1, 1), groups=4), (8, 8), 64 * 8 * 9, 4608 * 64, (8, 8)),
        # depthwise groups = Cin
        (ConvSpec(32, 32, (3, 3), (1, 1), (1, 1), groups=32), (8, 8), 288, 288 * 64, (8, 8)),
        # non-square kernel 3x5, stride 2x1, padding 1x2 on 9x11: 5 x 11
        (ConvSpec(8, 16, (3, 5), (2, 1), (1, 2)), (9, 11), 16 * 8 * 15, 16 * 8 * 15 * 55, (5, 11)),
        # 'same' with an even kernel keeps the size (pads one more at the end)
        (ConvSpec(8, 8, (4, 4), padding="same"), (7, 7), 8 * 8 * 16, 8 * 8 * 16 * 49, (7, 7)),
        # bias adds params, not MACs (torchinfo's grouped layer; fvcore's count)
        (ConvSpec(16, 32, (3, 3), padding=(0, 0), groups=4, bias=True), (28, 28), 1184,
         1152 * 26 * 26, (26, 26)),
    ],
)
def test_conv_hand_worked(spec: ConvSpec, hw: tuple[int, int], params: int, macs: int,
                          out_hw: tuple[int, int]) -> None:
    c = cost(spec, (1, spec.in_channels, *hw))
    assert (c.params, c.macs, c.output_shape[2:]) == (params, macs, out_hw)


def test_batch_scales_macs_not_params() -> None:
    spec = ConvSpec(16, 32, (3, 3), padding=(0, 0), groups=4, bias=True)
    c = cost(spec, (7, 16, 28, 28))
    assert c.macs == 5_451_264  # fvcore's number for torchinfo's groups layer, batch 7
    assert c.params == 1184


def test_depth_multiplier_exact() -> None:
    spec = SeparableSpec(16, 32, depth_multiplier=2)
    c = cost(spec, (1, 16, 8, 8))
    assert c.part("depthwise").params == 32 * 9
    assert c.part("depthwise").macs == 32 * 9 * 64
    assert c.part("pointwise").params == 32 * 32
    assert (c.params, c.macs) == (1312, 83_968)
    std = ConvSpec(16, 32)
    assert c.params / cost(std, (1, 16, 8, 8)).params == pytest.approx(2 / 32 + 2 / 9)


@pytest.mark.parametrize("cin,cout,k,s,m", [
    (32, 64, (3, 3), (1, 1), 1), (64, 128, (5, 3), (2, 2), 1), (48, 96, (3, 3), (2, 1), 3),
    (8, 8, (7, 7), (1, 1), 2)])
def test_closed_form_identity(cin: int, cout: int, k: tuple[int, int], s: tuple[int, int],
                              m: int) -> None:
    pad = (k[0] // 2, k[1] // 2)
    std = ConvSpec(cin, cout, k, s, pad)
    ds = SeparableSpec(cin, cout, k, s, pad, depth_multiplier=m)
    shape = (1, cin, 20, 17)
    cs, cd = cost(std, shape), cost(ds, shape)
    expected = m / cout + m / (k[0] * k[1])
    assert closed_form_ratio(std, ds) == pytest.approx(expected)
    assert cd.params / cs.params == pytest.approx(expected)
    assert cd.macs / cs.macs == pytest.approx(expected)


def test_no_closed_form_with_bias_or_bn() -> None:
    assert closed_form_ratio(ConvSpec(8, 8, bias=True), SeparableSpec(8, 8, bias=True)) is None
    assert closed_form_ratio(ConvSpec(8, 8), SeparableSpec(8, 8, dw_bn=True)) is None


def test_out_size_formula() -> None:
    assert out_size(224, 3, 2, 2, 1) == 112
    assert out_size(7, 3, 1, 0, 2) == 3


def test_inverted_residual_hand_worked() -> None:
    # MobileNetV2 block 24 -> 24, t=6 (144), 56x56, stride 1: residual
    spec = InvertedResidualSpec(24, 24, 144)
    c = cost(spec, (1, 24, 56, 56))
    hw = 56 * 56
    assert c.part("expand").macs == 24 * 144 * hw
    assert c.part("depthwise").macs == 144 * 9 * hw
    assert c.part("project").macs == 144 * 24 * hw
    assert c.params == 24 * 144 + 2 * 144 + 144 * 9 + 2 * 144 + 144 * 24 + 2 * 24
    assert spec.residual
    # no expand conv when expanded == in
    spec1 = InvertedResidualSpec(32, 16, 32)
    assert [n for n, _ in spec1.parts] == ["depthwise", "project"]
    assert not InvertedResidualSpec(24, 24, 144, stride=(2, 2)).residual


def test_se_and_eca_hand_worked() -> None:
    se = cost(SqueezeExciteSpec(64, 16), (2, 64, 8, 8))
    assert se.params == 64 * 16 + 16 + 16 * 64 + 64
    assert se.macs == 2 * (64 * 16 + 16 * 64)
    eca = cost(ECASpec(64, 3), (2, 64, 8, 8))
    assert (eca.params, eca.macs) == (3, 2 * 64 * 3)


@pytest.mark.parametrize("c,k", [(64, 3), (128, 5), (256, 5), (1024, 5), (16, 3), (512, 5)])
def test_eca_adaptive_kernel(c: int, k: int) -> None:
    assert eca_kernel(c) == k


@pytest.mark.parametrize("v,expected", [(16 * 0.75, 16), (32 * 0.35, 16), (72 / 4, 24),
                                        (120 / 4, 32), (960 / 4, 240), (3, 8), (100, 104)])
def test_make_divisible(v: float, expected: int) -> None:
    assert make_divisible(v) == expected


def test_memory_traffic_rules() -> None:
    c = cost(SeparableSpec(8, 16), (1, 8, 4, 4), dtype_bytes=2)
    dw, pw = c.part("depthwise"), c.part("pointwise")
    assert dw.bytes == 2 * (8 * 16 + 8 * 9 + 8 * 16)  # in + weights + intermediate
    assert pw.bytes == 2 * (8 * 16 + 8 * 16 + 16 * 16)  # intermediate + weights + out
    assert c.bytes == 2 * (8 * 16 + 8 * 9 + 8 * 16) + 2 * (8 * 16 + 8 * 16 + 16 * 16)
    assert c.flops == 2 * (8 * 9 * 16 + 8 * 16 * 16)
    assert c.intensity == pytest.approx(2 * (8 * 9 * 16 + 8 * 16 * 16) / 1680)
    # depthwise and project with BN folded (a bias vector each), then the residual add
    # reads both operands and writes the sum
    r = cost(InvertedResidualSpec(8, 8, 8), (1, 8, 4, 4))
    assert r.bytes == 4 * ((128 + 72 + 8 + 128) + (128 + 64 + 8 + 128) + 3 * 128)


def test_engine_is_silent(capsys: pytest.CaptureFixture[str]) -> None:
    resolve_layer({"in": 32, "hw": (8, 8), "kind": "mbconv"}).to_dict()
    assert capsys.readouterr() == ("", "")


def test_choice_lists_agree_everywhere() -> None:
    """The command line's enums and the config's literals are twins of the core's lists."""
    from typing import get_args

    from dsconv_cli.cases import KINDS
    from dsconv_cli.cli.compare import Activation, Kind
    from dsconv_cli.cli.options import Dtype
    from dsconv_cli.config import Config, LayerCfg
    from dsconv_cli.cost import DTYPE_BYTES
    from dsconv_cli.specs import ACTIVATIONS

    def literal(model: type, field: str) -> set[str]:
        ann = model.model_fields[field].annotation
        lits = [a for a in get_args(ann) if get_args(a)] or [ann]
        return {v for a in lits for v in get_args(a)}

    assert {k.value for k in Kind} == set(KINDS) == literal(LayerCfg, "kind")
    assert {a.value for a in Activation} == set(ACTIVATIONS) == literal(LayerCfg, "activation")
    assert {d.value for d in Dtype} == set(DTYPE_BYTES)
    assert literal(Config, "dtype") == set(DTYPE_BYTES) - {"int8"}  # int8: analytic only
