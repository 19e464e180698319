from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=500, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.register_profile(
    "dev", max_examples=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite tests/golden/*.txt from the current output")


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """Compare text with tests/golden/<name>.txt (``--update-golden`` rewrites it)."""

    def check(name: str, text: str) -> None:
        path = Path(__file__).parent / "golden" / f"{name}.txt"
        if request.config.getoption("--update-golden"):
            path.write_text(text)
        assert path.exists(), f"no golden file {path}: run pytest --update-golden"
        assert text == path.read_text()

    return check


#: A fixed, plausible calibration far above this machine's peaks: every test gets it in its
#: own cache (never a shared one, never a real calibration a loaded machine can spoil), and
#: no measurement can land above its roofline (which would recalibrate for real).
FIXED_CALIBRATION = {"peak_gflops": 5000.0, "spread": 0.01,
                     "bandwidth": [[s, 2000.0, 2000.0] for s in
                                   (64 << 10, 512 << 10, 4 << 20, 32 << 20, 128 << 20)]}


def fixed_calibration_cache(root: Path) -> Path:
    """``root``/calibration.json holding :data:`FIXED_CALIBRATION` for the CPU in every
    dtype and thread count a test (or a subprocess it starts) can ask for."""
    import torch

    from dsconv_cli.torch_backend.timing import calibration_key

    cpu = torch.device("cpu")
    cache = {calibration_key(cpu, dtype, threads): FIXED_CALIBRATION
             for dtype in ("fp32", "fp16", "bf16")
             for threads in range(1, (os.cpu_count() or 1) + 1)}
    path = root / "calibration.json"
    path.write_text(json.dumps(cache))
    return path


@pytest.fixture
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """This test's own calibration cache, holding the fixed calibration (no test sees
    another's calibration)."""
    root = tmp_path_factory.mktemp("dsconv-cache")
    fixed_calibration_cache(root)
    return str(root)


@pytest.fixture(autouse=True)
def _fixed_terminal(monkeypatch: pytest.MonkeyPatch, cache_dir: str) -> None:
    """Golden output: fixed width, no colour, whatever terminal runs the tests; this
    test's own calibration cache."""
    monkeypatch.setenv("DSCONV_WIDTH", "160")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.setenv("DSCONV_CACHE_DIR", cache_dir)


@pytest.fixture
def entry_signals() -> object:
    """dsconv's SIGINT/SIGTERM handlers armed for this test, as the entry point
    (``__main__._entry``) arms them: for a test that sends itself a signal, or tells a
    ``KeyboardInterrupt`` raised by user code from the user's Ctrl-C. An in-process
    command call never installs them itself."""
    from dsconv_cli.cli.common import signals

    with signals():
        yield None
