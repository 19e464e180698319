"""Tests that kill the mutants issue 30 found surviving: each names the change it catches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from dsconv_cli.errors import InputError

# ------------------------------------------------------------------ export check

def test_a_nan_output_never_passes_the_export_check() -> None:
    """``not err <= allowed`` -> ``err > allowed`` lets NaN through (NaN > x is False)."""
    from dsconv_cli.torch_backend.export import check_close
    from dsconv_cli.torch_backend.runtimes import RuntimeFailure

    want = torch.ones(2, 3)
    for bad in (float("nan"), float("inf")):
        got = want.clone()
        got[1, 2] = bad
        with pytest.raises(RuntimeFailure, match="differs"):
            check_close(got, want, torch.float32, "x")


def test_the_export_tolerance_is_fp32_s() -> None:
    """A 1e-1 tolerance passes a 1% error: fp32's allowed difference is 1e-3 of the
    output's scale (at least 1), by the hand formula."""
    from dsconv_cli.torch_backend.export import check_close
    from dsconv_cli.torch_backend.runtimes import RuntimeFailure

    want = torch.full((4,), 10.0)  # scale 10: allowed 1e-3 * 10 = 0.01
    err, allowed = check_close(want + 0.009, want, torch.float32, "x")
    assert allowed == pytest.approx(0.01) and err == pytest.approx(0.009, rel=1e-4)
    with pytest.raises(RuntimeFailure):
        check_close(want + 0.05, want, torch.float32, "x")  # 0.5% of 10: over 1e-3
    with pytest.raises(RuntimeFailure):
        check_close(torch.ones(3) * 1.02, torch.ones(3), torch.float32, "x")


# ------------------------------------------------------------------ fidelity

class Logits(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class InfOnWinner(nn.Module):
    """The original's logits, but rows 0 and 1 get +inf on the winning class: the argmax
    is unchanged, the output is not finite."""

    def __init__(self, original: nn.Module) -> None:
        super().__init__()
        self.original = original

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.original(x).clone()
        for row in range(min(2, y.shape[0])):
            y[row, y[row].argmax()] = float("inf")
        return y


def test_non_finite_rows_never_agree() -> None:
    from dsconv_cli.torch_backend.calibrate import fidelity

    original = Logits().eval()
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(1))
    f = fidelity(original, InfOnWinner(original).eval(), x, "eval", batch=8)
    assert f.agreement == pytest.approx(6 / 8)  # the two non-finite rows do not count
    assert fidelity(original, original, x, "eval").agreement == 1.0


# ------------------------------------------------------------------ the resume cache

class WritesInPlace(nn.Module):
    """Writes its input in place and returns a new tensor (only the version counter
    shows the write)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.add_(1.0)
        return x * 2.0


class Residual(nn.Module):
    def __init__(self, first: nn.Module) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.seq = nn.Sequential(first, nn.Conv2d(4, 4, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * 1.0  # the block's own tensor, which seq's first child writes
        return x + self.seq(x)


@pytest.mark.parametrize("first", [WritesInPlace, lambda: nn.ReLU(inplace=True)])
def test_a_sequential_that_writes_its_input_is_never_resumed(first: type) -> None:
    from dsconv_cli.torch_backend.resume import sequential_cache

    model = Residual(first()).eval()
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = model(x.clone())
        with sequential_cache(model, 1 << 30) as cache:
            for _ in range(3):
                with cache.batch(0):
                    assert torch.equal(model(x.clone()), want)
        assert cache.resumes == 0


# ------------------------------------------------------------------ atomic writes

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_check_writable_refuses_a_fifo_even_with_force(tmp_path: Path) -> None:
    from dsconv_cli.atomic import check_writable

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for overwrite in (False, True):
        with pytest.raises(InputError, match="not a regular file"):
            check_writable(fifo, "--report", overwrite=overwrite)


def test_a_no_overwrite_write_never_clobbers_a_file_made_meanwhile(tmp_path: Path) -> None:
    """``os.link`` -> ``os.replace`` clobbers a file created after the check."""
    from dsconv_cli.atomic import check_writable, write_all_atomic

    out, plan = tmp_path / "m.pt", tmp_path / "m.pt.plan.json"
    check_writable(out, "--output", overwrite=False)  # passes: nothing there yet
    out.write_bytes(b"someone else's")  # the race: made between check and write
    with pytest.raises(InputError, match="exists"):
        write_all_atomic([(plan, "{}"), (out, b"ours")], overwrite=False)
    assert out.read_bytes() == b"someone else's"
    assert not plan.exists()  # what this call created is taken back
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no temp file left
