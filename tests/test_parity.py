"""Property tests: the engine against torch itself, for every kind.

For random specs, the backend builds the module from torch's own layers and torch counts:
params = sum of numel, MACs = FlopCounterMode / 2, output shape from a real forward pass.
"""

from __future__ import annotations

from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from dsconv_cli.cases import resolve_layer
from dsconv_cli.cost import cost
from dsconv_cli.errors import FieldError
from dsconv_cli.specs import ConvSpec, ECASpec, LinearSpec, PoolSpec, SqueezeExciteSpec
from dsconv_cli.torch_backend.build import build

from .utils import torch_counts

small = st.integers(1, 4)
chans = st.sampled_from([1, 2, 3, 4, 6, 8, 12, 16])
pairs = st.tuples(st.integers(1, 5), st.integers(1, 5))


def check(spec: Any, shape: tuple[int, ...]) -> None:
    c = cost(spec, shape)
    params, macs, out = torch_counts(build(spec), shape)
    assert c.params == params
    assert c.macs == macs
    assert c.output_shape == out


@st.composite
def layer_values(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["separable", "inverted-residual", "mbconv", "eca"]))
    v: dict[str, Any] = {"kind": kind, "in": draw(chans), "batch": draw(st.integers(1, 3)),
                         "hw": draw(st.tuples(st.integers(1, 12), st.integers(1, 12)))}
    if kind == "eca":
        v["eca_k"] = draw(st.none() | st.sampled_from([1, 3, 5, 7]))
        return v
    v["out"] = draw(chans)
    v["kernel"] = draw(pairs)
    v["stride"] = draw(st.tuples(st.integers(1, 3), st.integers(1, 3)))
    v["dilation"] = draw(st.tuples(st.integers(1, 3), st.integers(1, 3)))
    v["groups"] = draw(st.sampled_from([1, 1, 2, 4]))
    v["bias"] = draw(st.booleans())
    if kind == "separable":
        v["depth_multiplier"] = draw(st.integers(1, 3))
        v["padding"] = draw(st.none() | st.just("same")
                            | st.tuples(st.integers(0, 3), st.integers(0, 3)))
    else:
        if draw(st.booleans()):
            v["expansion"] = draw(st.sampled_from([1.0, 2.5, 4.0, 6.0]))
        else:
            v["expanded_channels"] = draw(chans)
        v["activation"] = draw(st.sampled_from(["relu", "relu6", "hswish", "silu"]))
        if kind == "mbconv":
            v["se"] = draw(st.booleans())
            if v["se"] and draw(st.booleans()):
                v["squeeze_channels"] = draw(small)
    return v


@given(layer_values())
def test_every_kind_matches_torch(values: dict[str, Any]) -> None:
    try:
        case = resolve_layer(values)
    except FieldError:
        assume(False)
        raise
    check(case.standard, case.input_shape)
    check(case.candidate, case.input_shape)


@given(st.builds(ConvSpec, chans, chans, pairs, st.tuples(small, small),
                 st.tuples(st.integers(0, 2), st.integers(0, 2)), st.tuples(small, small),
                 st.just(1), st.booleans(), st.booleans(),
                 st.sampled_from([None, "relu", "hswish"])),
       st.integers(1, 2), st.tuples(st.integers(1, 14), st.integers(1, 14)))
def test_conv_matches_torch(spec: ConvSpec, b: int, hw: tuple[int, int]) -> None:
    shape = (b, spec.in_channels, *hw)
    try:
        cost(spec, shape)
    except FieldError:
        assume(False)
    check(spec, shape)


@given(chans, small, st.sampled_from(["relu", "silu"]), st.sampled_from(["sigmoid", "hsigmoid"]),
       st.integers(1, 3))
def test_se_matches_torch(c: int, s: int, act: str, gate: str, b: int) -> None:
    check(SqueezeExciteSpec(c, s, act, gate), (b, c, 5, 3))


@given(chans, st.sampled_from([1, 3, 5, 9]), st.integers(1, 3))
def test_eca_matches_torch(c: int, k: int, b: int) -> None:
    check(ECASpec(c, k), (b, c, 4, 6))


def test_linear_and_pool_match_torch() -> None:
    check(PoolSpec(flatten=True), (2, 8, 5, 5))
    check(LinearSpec(8, 10), (2, 8))
    check(LinearSpec(8, 10, bias=False, activation="hswish"), (3, 8))
