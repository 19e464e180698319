"""Exports that serve any batch (issue 28): ``--export`` .pt2 and .onnx have a dynamic
batch dimension by default, checked at two batch sizes before writing and said so in the
report; ``--static-shape`` pins the export input's batch; a model that cannot take another
batch is exported static with the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from dsconv_cli import apply_plan
from dsconv_cli.cli import app

pytest.importorskip("onnxruntime")
import onnxruntime as ort  # noqa: E402

runner = CliRunner()
SHAPE = "1,3,12,12"


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.a = nn.Conv2d(32, 32, 3, padding=1)
        self.bn = nn.BatchNorm2d(32)
        self.head = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.a(torch.relu(self.stem(x)))))
        return self.head(x.mean((2, 3)))


class OneAtATime(Net):
    """Reshapes to a batch of one: it cannot serve another batch size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).reshape(1, 4)


def run(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def convert(tmp_path: Path, cls: type[nn.Module], suffix: str, *extra: str
            ) -> tuple[dict[str, Any], Path, nn.Module]:
    torch.manual_seed(0)
    src = tmp_path / "m.pt"
    torch.save(cls().eval(), src)
    out, export = tmp_path / "o.pt", tmp_path / f"o{suffix}"
    r = run("convert", src, "--trust-pickle", "-o", out, "--export", export, "--input-shape",
            SHAPE, "--json", *extra)
    assert r.exit_code == 0, r.output
    model = torch.load(out, weights_only=False)
    return json.loads(r.stdout)["cases"][0]["export"], export, model.eval()


def run_export(path: Path, x: torch.Tensor) -> torch.Tensor:
    if path.suffix == ".pt2":
        with torch.no_grad():
            return torch.export.load(str(path)).module()(x)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])


@pytest.mark.parametrize("suffix", [".pt2", ".onnx"])
def test_export_serves_any_batch_by_default(tmp_path: Path, suffix: str) -> None:
    ex, path, model = convert(tmp_path, Net, suffix)
    assert ex["dynamic_dims"] == {"batch": 0}
    assert ex["checked_batches"] == [1, 3]
    for n in (1, 2, 7):
        x = torch.randn(n, 3, 12, 12)
        with torch.no_grad():
            want = model(x)
        got = run_export(path, x)
        assert got.shape == (n, 4)
        assert float((got - want).abs().max()) <= 1e-4


@pytest.mark.parametrize("suffix", [".pt2", ".onnx"])
def test_static_shape_pins_the_batch(tmp_path: Path, suffix: str) -> None:
    ex, path, _ = convert(tmp_path, Net, suffix, "--static-shape")
    assert ex["dynamic_dims"] == {} and ex["checked_batches"] == [1]
    assert "note" not in ex
    assert run_export(path, torch.randn(1, 3, 12, 12)).shape == (1, 4)
    with pytest.raises(Exception):  # noqa: B017 - ORT and torch.export raise their own
        run_export(path, torch.randn(2, 3, 12, 12))


@pytest.mark.parametrize("suffix", [".pt2", ".onnx"])
def test_a_model_pinned_to_one_batch_is_exported_static_and_says_why(
        tmp_path: Path, suffix: str) -> None:
    ex, path, model = convert(tmp_path, OneAtATime, suffix)
    assert ex["dynamic_dims"] == {} and ex["checked_batches"] == [1]
    assert "batch dimension is static" in ex["note"]
    x = torch.randn(1, 3, 12, 12)
    with torch.no_grad():
        assert float((run_export(path, x) - model(x)).abs().max()) <= 1e-4


def test_the_table_says_which_dims_are_dynamic(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.save(Net().eval(), tmp_path / "m.pt")
    r = runner.invoke(app, ["convert", str(tmp_path / "m.pt"), "--trust-pickle", "--dry-run",
                            "--export", str(tmp_path / "o.onnx"), "--input-shape", SHAPE],
                      env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "dynamic batch (dim 0)): checked at batch 1 and 3" in r.stdout


def test_state_dict_plan_and_dynamic_onnx_agree(tmp_path: Path) -> None:
    """The export from a state_dict + --arch conversion, at a batch it was not checked at,
    against the converted model rebuilt from the plan."""
    (tmp_path / "net.py").write_text("import torch\nfrom torch import nn\n\n\n"
                                     + __import__("inspect").getsource(Net))
    torch.manual_seed(0)
    torch.save(Net().state_dict(), tmp_path / "sd.pt")
    r = run("convert", tmp_path / "sd.pt", "--arch", f"{tmp_path}/net.py:Net", "-o",
            tmp_path / "o.pt", "--export", tmp_path / "o.onnx", "--input-shape", SHAPE)
    assert r.exit_code == 0, r.output
    model = apply_plan(Net(), json.loads((tmp_path / "o.pt.plan.json").read_text()))
    model.load_state_dict(torch.load(tmp_path / "o.pt", weights_only=True))
    x = torch.randn(5, 3, 12, 12)
    with torch.no_grad():
        want = model.eval()(x)
    assert float((run_export(tmp_path / "o.onnx", x) - want).abs().max()) <= 1e-4
