"""``--strict`` means arithmetic: views, in-place restrides (``as_strided_``) and copies are
never "uncounted"; over the zoo patterns (Swin-style shifted windows included) every op is
sorted, so ``--strict`` passes, while an op with arithmetic the table lacks still fails."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from dsconv_cli.cli import app
from dsconv_cli.torch_backend.counting import count_model, kind_of

from .zoo import ZOO

pytestmark = pytest.mark.timeout(300)
aten = torch.ops.aten


@pytest.mark.parametrize("op", [aten.as_strided_.default, aten.transpose_.default,
                                aten.squeeze_.dim, aten.unsqueeze_.default,
                                aten.resize_.default, aten.t_.default])
def test_inplace_restrides_are_free(op: object) -> None:
    assert kind_of(op) == "free"


@pytest.mark.parametrize("op", [aten.view_copy.default, aten.permute_copy.default,
                                aten.as_strided_copy.default])
def test_view_copies_are_copies(op: object) -> None:
    assert kind_of(op) == "elementwise"


def test_arithmetic_without_a_rule_stays_uncounted() -> None:
    assert kind_of(aten._fft_r2c.default) == "uncounted"


class Restrides(nn.Module):
    """What LayerNorm2d / window partitions do after a conv: metadata-only in-place ops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).clone()
        y.transpose_(2, 3)
        y.unsqueeze_(0).squeeze_(0)
        n, c, h, w = y.shape
        y.as_strided_((n, c, h * w), (c * h * w, h * w, 1))
        return y.mean(-1)


def _window_partition(x: torch.Tensor, w: int) -> torch.Tensor:
    b, h, wd, c = x.shape
    x = x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, w * w, c)


class ShiftedWindowBlock(nn.Module):
    """Swin's pattern: roll, window partition (views), attention with a relative position
    bias gathered from a table, the windows put back."""

    def __init__(self, dim: int = 16, window: int = 4, heads: int = 2) -> None:
        super().__init__()
        self.window, self.heads = window, heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.table = nn.Parameter(torch.randn((2 * window - 1) ** 2, heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window),
                                            indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + window - 1
        self.register_buffer("index", rel[..., 0] * (2 * window - 1) + rel[..., 1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, H, W, C)
        b, h, w, c = x.shape
        y = torch.roll(self.norm(x), shifts=(-2, -2), dims=(1, 2))
        win = _window_partition(y, self.window)
        q, k, v = self.qkv(win).view(win.shape[0], -1, 3, self.heads, c // self.heads).permute(
            2, 0, 3, 1, 4).unbind(0)
        bias = self.table[self.index.reshape(-1)].view(self.window ** 2, self.window ** 2, -1)
        attn = (q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5
        attn = (attn + bias.permute(2, 0, 1).unsqueeze(0)).softmax(-1)
        out = self.proj((attn @ v).transpose(1, 2).reshape(win.shape[0], -1, c))
        out = out.view(b, h // self.window, w // self.window, self.window, self.window, c)
        out = out.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        return x + torch.roll(out, shifts=(2, 2), dims=(1, 2))


PATTERNS = {**ZOO, "restrides": (Restrides, (1, 3, 8, 8)),
            "shifted_window": (ShiftedWindowBlock, (2, 8, 8, 16))}


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_every_zoo_op_is_sorted(name: str) -> None:
    build, shape = PATTERNS[name]
    count = count_model(build().eval(), shape)
    assert count.uncounted == {}, f"{name}: {sorted(count.uncounted)}"


def test_restrides_keep_the_macs_exact() -> None:
    model = Restrides().eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.randn(1, 3, 8, 8))
    assert count_model(model, (1, 3, 8, 8)).macs == fc.get_total_flops() // 2 == 8 * 27 * 64


def test_strict_passes_on_restrides_as_a_user_runs_it(tmp_path: Path) -> None:
    p = tmp_path / "m.pt"
    torch.save(Restrides(), p)
    r = CliRunner().invoke(app, ["compare", "--model", str(p), "--trust-pickle",
                                 "--input-shape", "1,3,8,8", "--strict"])
    assert r.exit_code == 0, r.stderr
