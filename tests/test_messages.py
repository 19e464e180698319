"""Config messages in dsconv's words: misspelt values get "did you mean", no
validation-library phrasing ("Input should be", "List should have", "Value error")."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsconv_cli.cli import app

pytestmark = pytest.mark.timeout(60)
LAYER = "{kind: separable, in: 32, out: 32, kernel: 3, hw: 8}"


@pytest.mark.parametrize(("yaml", "expected"), [
    (f"cases:\n  - name: a\n    layer: {LAYER.replace('separable', 'seperable')}\n",
     "'seperable' is not one of separable, inverted-residual, mbconv, eca (hint: did you "
     "mean 'separable'?)"),
    (f"device: cpux\ncases:\n  - name: a\n    layer: {LAYER}\n",
     "device: 'cpux' is not one of cpu, cuda, auto (hint: did you mean 'cpu'?)"),
    (f"runtime: [eagr]\ncases:\n  - name: a\n    layer: {LAYER}\n",
     "runtime[0]: 'eagr' is not one of eager, compile, onnxruntime (hint: did you mean "
     "'eager'?)"),
    ("cases: []\n", "cases: needs at least 1 item, got none"),
    (f"cases:\n  - name: a\n    layer: {LAYER.replace('out: 32', 'out: -3')}\n",
     "cases[0].layer.out: must be greater than 0, got -3"),
    (f"cases:\n  - name: a\n    layer: {LAYER.replace('out: 32', 'out: x')}\n",
     "cases[0].layer.out: expected an integer, got 'x'"),
])
def test_config_messages_read_as_dsconv(tmp_path: Path, yaml: str, expected: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml)
    r = CliRunner().invoke(app, ["profile", str(cfg), "--dry-run"])
    assert r.exit_code == 2
    (line,) = r.stderr.strip().splitlines()
    assert line.endswith(expected), line
    for leak in ("Input should", "List should", "Value error", "after validation"):
        assert leak not in line
