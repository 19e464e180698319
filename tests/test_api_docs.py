"""docs/API.md and the README's Python forms, run as a user runs them: every ```python
block of docs/API.md on its own, in an empty folder; every ``Python:`` form of the README
in the folder its examples use (``examples/make_files.py``)."""

from __future__ import annotations

import linecache
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[1]
API = (ROOT / "docs" / "API.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", API, re.S)
README = (ROOT / "README.md").read_text()
#: a README line ``Python: `dsconv_cli.f(...)` ...``: the form beside a job's command
FORMS = re.findall(r"^Python: `(dsconv_cli\.[^`]+)`", README, re.M)


def test_the_docs_have_one_block_per_function() -> None:
    for name in ("compare_layer", "analyse", "convert", "profile"):
        assert any(f"dsconv_cli.{name}(" in b for b in BLOCKS), name
    assert len(FORMS) == 4, FORMS  # compare (a layer, a network), convert, profile


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_api_block_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    name = f"docs/API.md block {index + 1}"
    linecache.cache[name] = (len(BLOCKS[index]), None, BLOCKS[index].splitlines(True), name)
    code = compile(BLOCKS[index], name, "exec")
    exec(code, {"__name__": f"api_block_{index}"})


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("readme")
    subprocess.run([sys.executable, str(ROOT / "examples" / "make_files.py"), "demo"],
                   cwd=folder, check=True, capture_output=True, timeout=240)
    return folder / "demo"


@pytest.mark.parametrize("form", FORMS)
def test_readme_python_form_runs(form: str, demo: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import dsconv_cli

    monkeypatch.chdir(demo)
    monkeypatch.syspath_prepend(str(demo))  # the README's tiny_resnet:build
    result: Any = eval(form, {"dsconv_cli": dsconv_cli})
    assert result is not None
