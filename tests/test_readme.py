"""The README as a user follows it (Typer's docs_src idea): an example that rots fails here.

- Every shell line of the README's ``bash`` blocks runs, in order, in a folder that starts
  empty: the README's own setup lines (``python examples/make_files.py demo && cd demo``)
  make the files later commands name, so an example whose file the README never makes
  fails.
- Every output block (a ```text fence) is generated, never typed: it follows an
  ``<!-- output: COMMAND -->`` line, COMMAND is one of the README's commands, and the block
  is that command's section of benchmarks/results/readme_outputs.txt, verbatim. The
  analytic (untimed, deterministic) ones are run again here and must still print exactly
  the block. Regenerate with ``python benchmarks/readme_outputs.py`` (``--analytic`` for
  the fast ones), which also rewrites the README's blocks.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from typer.testing import CliRunner

from dsconv_cli.cli import app

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
runner = CliRunner()


def _outputs_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("readme_outputs",
                                                  ROOT / "benchmarks" / "readme_outputs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


OUTPUTS = _outputs_script()
#: lines that install or test the project itself: not run here
NOT_RUN = ("bash scripts/bootstrap.sh", ".venv/bin/python -m pytest")


def shell_steps(text: str) -> list[tuple[str, str]]:
    """(folder, step) for every step of the README's bash blocks, in order. ``folder`` is
    where the step runs, relative to the starting one (``cd`` steps change it); a step is
    ``dsconv ...`` (a command), ``python ...`` or ``cd ...`` (setup)."""
    steps, folder = [], ""
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split(" && "):
                step = " ".join(part.split())
                if not step or step.startswith("#") or step in NOT_RUN:
                    continue
                if step.startswith(".venv/bin/dsconv "):
                    step = step.removeprefix(".venv/bin/")
                steps.append((folder, step))
                if step.startswith("cd "):
                    folder = str(Path(folder) / shlex.split(step)[1])
    return steps


STEPS = shell_steps(README)
COMMANDS = [(d, s) for d, s in STEPS if s.startswith("dsconv ")]
SETUP = [(d, s) for d, s in STEPS if not s.startswith("dsconv ")]


def timing_dependent(line: str) -> bool:
    """A line whose outcome depends on this machine's speed: a measured budget (a profile
    that measures), a regression against a baseline saved a moment ago or a latency
    target may fail on a loaded runner (exit 1), never with a usage error."""
    measures = line.startswith("dsconv profile ") and not any(
        flag in line for flag in ("--dry-run", "--schema", "--merge"))
    # a latency target is checked by timing the converted model: a loaded runner may
    # miss it (exit 1, nothing written)
    return measures or "--baseline" in line or "--target-latency" in line


def test_the_readme_has_commands_and_nothing_else() -> None:
    assert len(COMMANDS) >= 20
    unknown = [s for _, s in SETUP if not s.startswith(("python ", "cd "))]
    assert not unknown, f"README shell lines this test cannot run: {unknown}"
    assert any(s.startswith("python examples/make_files.py") for _, s in SETUP)


@pytest.fixture(scope="module")
def start(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty folder, after the README's setup lines ran there (a user at the repository
    root: ``python examples/...`` is the repository's script, its files land here)."""
    root = tmp_path_factory.mktemp("readme")
    for folder, step in SETUP:
        (root / folder).mkdir(parents=True, exist_ok=True)
        if step.startswith("cd "):
            continue
        args = shlex.split(step)[1:]
        script = ROOT / args[0]
        assert script.is_file(), f"{step}: no {args[0]} in the repository"
        subprocess.run([sys.executable, str(script), *args[1:]], cwd=root / folder,
                       check=True, capture_output=True, timeout=600)
    return root


@pytest.mark.parametrize(("folder", "line"), COMMANDS, ids=[c for _, c in COMMANDS])
def test_readme_command_runs(folder: str, line: str, start: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    if "--device cuda" in line and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    monkeypatch.chdir(start / folder)
    redirect = None
    if " > " in line:
        line, redirect = (s.strip() for s in line.split(" > ", 1))
    args = shlex.split(line, comments=True)[1:]
    r = runner.invoke(app, args)
    ok = {0, 1} if timing_dependent(line) else {0}
    assert r.exit_code in ok, f"{line}\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    if r.exit_code == 0:  # a timing-dependent miss says why (exit 1), nothing else may
        assert "Error:" not in r.stderr, r.stderr
    if redirect:
        (start / folder / redirect).write_text(r.stdout)


# ------------------------------------------------------------ generated output blocks

BLOCKS = OUTPUTS.readme_blocks(README)
SECTIONS = OUTPUTS.sections(OUTPUTS.RESULT.read_text()) if OUTPUTS.RESULT.exists() else {}
ANALYTIC = [(c, b) for c, b in BLOCKS if c in OUTPUTS.ANALYTIC]


def test_every_output_block_is_generated() -> None:
    assert BLOCKS, "the README shows no output"
    assert README.count("```text\n") == len(BLOCKS), (
        "a ```text block without an `<!-- output: COMMAND -->` line before it: README "
        "output blocks are generated by benchmarks/readme_outputs.py, never typed")
    commands = {" ".join(shlex.split(c, comments=True)) for _, c in COMMANDS}
    for command, block in BLOCKS:
        assert command in commands, f"`{command}`: its output is shown, the command is not"
        assert command in SECTIONS, (f"`{command}` is not in {OUTPUTS.RESULT.name}: run "
                                     "python benchmarks/readme_outputs.py")
        assert block == SECTIONS[command][1], (
            f"the README's output of `{command}` is not the one in {OUTPUTS.RESULT.name}: "
            "run python benchmarks/readme_outputs.py --analytic")


def test_the_timed_outputs_are_timed_and_the_others_analytic() -> None:
    for command, _ in BLOCKS:
        kind = "analytic" if command in OUTPUTS.ANALYTIC else "timed"
        assert command in (*OUTPUTS.ANALYTIC, *OUTPUTS.TIMED), command
        assert SECTIONS.get(command, (kind,))[0] == kind, command
        assert (kind == "timed") == ("--measure" in command or (
            command.startswith("dsconv profile") and "--dry-run" not in command)), command


@pytest.fixture(scope="module")
def fresh_examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return OUTPUTS.make_example_folder(tmp_path_factory.mktemp("outputs"))


@pytest.mark.parametrize(("command", "block"), ANALYTIC, ids=[c for c, _ in ANALYTIC])
def test_analytic_output_is_what_the_command_prints_now(command: str, block: str,
                                                        fresh_examples: Path) -> None:
    assert OUTPUTS.run(command, fresh_examples) == block, (
        f"`{command}` prints something else now: run "
        "python benchmarks/readme_outputs.py --analytic")
