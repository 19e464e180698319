"""Quiet stderr: torch's log records (the CUDA probe) and multi-line UserWarnings are held
and shown once each as one-line dsconv warnings; no ANSI escapes reach a message."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from dsconv_cli.quiet import held_noise, one_line

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).parents[1]


def test_torch_log_records_and_warnings_are_held_and_shown_once() -> None:
    shown: list[str] = []
    with held_noise(shown.append):
        import dsconv_cli.torch_backend  # noqa: F401  (torch configures its loggers)

        for _ in range(3):
            logging.getLogger("torch.utils.cpp_extension").warning(
                "No CUDA runtime is found, using CUDA_HOME='%s'", "/usr/local")
            warnings.warn("first line\n  second \x1b[31mline\x1b[0m", UserWarning,
                          stacklevel=1)
        assert shown == []  # nothing while the command runs
    assert shown == ["torch.utils.cpp_extension: No CUDA runtime is found, using "
                     "CUDA_HOME='/usr/local'", "UserWarning: first line second line"]


def test_debug_lets_everything_through() -> None:
    shown: list[str] = []
    with pytest.warns(UserWarning, match="raw"), held_noise(shown.append, debug=True):
        warnings.warn("raw", UserWarning, stacklevel=1)
    assert shown == []


def test_one_line_never_cuts_inside_a_sentence_word() -> None:
    text = "\x1b[1mExport failed.\x1b[0m " + "The model uses an op that has no symbolic. " * 12
    out = one_line(text, limit=120)
    assert "\x1b" not in out and "\n" not in out and len(out) <= 122
    assert out.endswith("symbolic. …") or out.endswith(". …")


WARNY = '''
import warnings, torch
from torch import nn
class Warny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
    def forward(self, x):
        warnings.warn("a library note\\nthat spans lines", UserWarning)
        return self.conv(x)
'''


def test_a_forwards_multi_line_warning_is_one_dsconv_line(tmp_path: Path) -> None:
    (tmp_path / "warny.py").write_text(WARNY)
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(tmp_path), "COLUMNS": "120",
           "DSCONV_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("PYTHONWARNINGS", None)
    r = subprocess.run([sys.executable, "-m", "dsconv_cli", "compare", "--arch", "warny:Warny",
                        "--input-shape", "1,3,8,8"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=110)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "library note" in ln]
    assert lines == ["Warning: UserWarning: a library note that spans lines"], r.stderr
    assert "spans lines" not in r.stderr.replace(lines[0], "")
