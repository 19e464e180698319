"""The distillation methods benchmarks/fidelity.py measured on real digits: each one is
checked against a hand formula and, on a small trained net with real forward passes,
shown to lower what it is for against the same run without it."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from .zoo import ResidualCNN, patterns, train_on_patterns


def test_logit_kl_is_the_temperature_scaled_divergence() -> None:
    from dsconv_cli.torch_backend.calibrate import _logit_kl

    ref = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    y = torch.tensor([[1.0, 0.5, -1.0], [0.0, 1.0, 2.0]])
    t = 2.0
    want = 0.0
    for r, o in zip(ref.tolist(), y.tolist(), strict=True):  # softmax and KL by hand
        q = [math.exp(v / t) for v in r]
        p = [math.exp(v / t) for v in o]
        q, p = [v / sum(q) for v in q], [v / sum(p) for v in p]
        want += sum(qi * math.log(qi / pi) for qi, pi in zip(q, p, strict=True))
    assert float(_logit_kl(y, ref, t)) == pytest.approx(t * t * want / 2, rel=1e-5)
    assert float(_logit_kl(ref + 5.0, ref, t)) == pytest.approx(0.0, abs=1e-6)  # an offset
    assert _logit_kl(y[:, :1], ref[:, :1], t) is None  # not a classifier's output
    assert _logit_kl(y[None], ref[None], t) is None


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A narrow residual CNN trained on the pattern task; 64 calibration and 256
    held-out inputs."""
    torch.manual_seed(0)
    model = ResidualCNN(width=16)
    assert train_on_patterns(model, steps=60, n=512) > 0.9
    return model.eval(), patterns(64, seed=3)[0], patterns(256, seed=4)[0]


def _held_out_kl(original: nn.Module, converted: nn.Module, x: torch.Tensor) -> float:
    """KL(original ‖ converted) of the softmax outputs at temperature 1, from forwards."""
    with torch.no_grad():
        lq = torch.log_softmax(original(x), 1)
        lp = torch.log_softmax(converted(x), 1)
    return float((lq.exp() * (lq - lp)).sum(1).mean())


def test_the_logit_kl_term_lowers_the_held_out_divergence(
        trained: tuple[nn.Module, torch.Tensor, torch.Tensor],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dsconv_cli.plan import PlanOptions
    from dsconv_cli.torch_backend import calibrate
    from dsconv_cli.torch_backend.convert import ConvertOptions, convert_model
    from dsconv_cli.torch_backend.loading import Loaded

    original, cal, held = trained
    original = copy.deepcopy(original)
    with torch.no_grad():  # logits far from zero, the same top-1 classes: the relative
        original.head.bias += 20.0  # error is then mostly the offset's, the KL none of it
    monkeypatch.setattr(calibrate, "FEATURES", 0.0)  # the output term alone
    model = copy.deepcopy(original)
    conv = convert_model(Loaded(model, "module", "x"),
                         ConvertOptions(PlanOptions(min_channels=8), (1, 3, 16, 16)))
    names = [d.facts.name for d in conv.decisions if d.convert]

    def after(weight: float) -> float:
        monkeypatch.setattr(calibrate, "LOGIT_KL", weight)
        m = copy.deepcopy(model)  # the SVD start, far enough from the original to move
        d = calibrate.distill(original, m, names, cal, 30, 32)
        assert d["kept"]
        return _held_out_kl(original, m, held)

    start = _held_out_kl(original, model, held)
    without, with_kl = after(0.0), after(1.0)
    assert with_kl < without < start, (start, without, with_kl)
