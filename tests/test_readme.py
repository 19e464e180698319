"""Every `dsconv` command line in the README runs, as written, in a folder holding the files
it names (Typer's docs_src idea): an example that rots fails here."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dsconv_cli.cli import app
from dsconv_cli.presets import get_preset
from dsconv_cli.torch_backend.build import build_preset

from .models import small_resnet
from .test_profile import build_conversion_model

ROOT = Path(__file__).parents[1]
runner = CliRunner()


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            for prefix in (".venv/bin/dsconv ", "dsconv "):
                if line.startswith(prefix):
                    out.append("dsconv " + line[len(prefix):])
                    break
    return out


COMMANDS = readme_commands()
#: lines whose outcome depends on this machine's speed: a regression against a baseline
#: saved a moment ago may be called on a noisy runner (exit 1), never a usage error
TIMING_DEPENDENT = ("--baseline",)


def test_the_readme_has_commands() -> None:
    assert len(COMMANDS) >= 25 and all(c.startswith("dsconv ") for c in COMMANDS)


@pytest.fixture(scope="module")
def docs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with every file the README's commands name."""
    d = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "configs", d / "configs")
    build_conversion_model(d / "configs")
    import importlib.util

    spec = importlib.util.spec_from_file_location("tiny_resnet",
                                                  d / "configs/models/tiny_resnet.py")
    assert spec and spec.loader
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    torch.manual_seed(0)
    torch.save(small_resnet(), d / "model.pt")  # a pickled module (tests.models)
    torch.save(tiny.build(classes=10).state_dict(), d / "tiny.pt")
    torch.save({"model_state": tiny.build(classes=10).state_dict(), "epoch": 3}, d / "ckpt.pt")
    torch.save(build_preset(get_preset("mobilenet_v2", classes=10)).state_dict(), d / "mnv2.pt")
    g = torch.Generator().manual_seed(0)
    torch.save(torch.randn(64, 3, 32, 32, generator=g), d / "calib.pt")
    import numpy as np

    np.save(d / "held_out.npy", torch.randn(64, 3, 32, 32, generator=g).numpy())
    return d


@pytest.mark.parametrize("line", COMMANDS)
def test_readme_command_runs(line: str, docs_dir: Path, monkeypatch: pytest.MonkeyPatch
                             ) -> None:
    if "--device cuda" in line and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    monkeypatch.chdir(docs_dir)
    redirect = None
    if " > " in line:
        line, redirect = (s.strip() for s in line.split(" > ", 1))
    args = shlex.split(line, comments=True)[1:]
    r = runner.invoke(app, args)
    ok = {0, 1} if any(t in line for t in TIMING_DEPENDENT) else {0}
    assert r.exit_code in ok, f"{line}\n{r.stdout}\n{r.stderr}"
    assert "Error:" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    if redirect:
        (docs_dir / redirect).write_text(r.stdout)
