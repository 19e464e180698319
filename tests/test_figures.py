"""Figures with their source: every measured figure README.md and benchmarks/README.md quote
(a number with a unit, x or %) is one a benchmark script printed into
benchmarks/results/<name>.txt.

Regenerate the results on an idle machine, from the repo root, with
``.venv/bin/python benchmarks/<name>.py`` (each script writes its own file; see
benchmarks/_common.py). A figure that is not a measurement (a target, a threshold, a
default, a confidence level) is recognised by the words before it (``target``, ``<=``,
``default`` ...; see :data:`NOT_MEASURED_BEFORE`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ("README.md", "benchmarks/README.md")

UNITS = r"(?:x|%|ms|µs|us|s|min|GB/s|GFLOP/s|TFLOP/s|GB|MB|KB|MiB|GiB|KiB)"
#: a number (thousands commas, decimals) and its unit, standing alone
FIGURE = re.compile(rf"(?<![\w.\-/+])(\d[\d,]*(?:\.\d+)?)\s?({UNITS})(?![\w/])")
#: words shortly before a figure that make it a target, limit or setting, not a result
NOT_MEASURED_BEFORE = re.compile(
    r"(target|<=|>=|≤|≥|<|>|at most|at least|under|within|default|threshold|limit|budget|"
    r"e\.g\.|--[\w-]+|max_\w+|min_\w+|cap)[\s(:=]*(?:(?:of|is|a|an|the|by)\s+)?$",
    re.IGNORECASE)
#: words right after a figure that make it a level or a definition
NOT_MEASURED_AFTER = re.compile(r"^\s?(CI|confidence|interval|of the (median|threshold))",
                                re.IGNORECASE)


def _norm(text: str) -> str:
    """Numbers and units as compared: no thousands commas, no space before the unit."""
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    return re.sub(rf"(\d)\s({UNITS})(?![\w/])", r"\1\2", text)


def measured_figures(text: str) -> list[tuple[int, str]]:
    """(line, figure) for each measured-looking figure of a markdown text."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if re.fullmatch(r"\s*\|?[\s|:-]+\|?\s*", line):  # a table's separator row
            continue
        for m in FIGURE.finditer(line):
            before, after = line[max(0, m.start() - 40):m.start()], line[m.end():]
            if NOT_MEASURED_BEFORE.search(before) or NOT_MEASURED_AFTER.match(after):
                continue
            out.append((lineno, _norm(m.group(0))))
    return out


def test_the_figure_finder() -> None:
    text = ("| pair | 95.0% | 0.909x | 1,074 MB |\n|---|---:|\n"
            "135 s against a 2-minute target, 1.16 GB (target 4 GB); the 95% CI; "
            "false alarms <= 2%; --min-time 0.2 s\n")
    assert [f for _, f in measured_figures(text)] == ["95.0%", "0.909x", "1074MB", "135s",
                                                      "1.16GB"]


def test_every_readme_figure_is_in_a_results_file() -> None:
    files = sorted(RESULTS.glob("*.txt"))
    if not files:
        pytest.skip("benchmarks/results/ has no .txt files yet: run "
                    "`.venv/bin/python benchmarks/<name>.py` for each benchmark")
    printed = _norm("\n".join(f.read_text() for f in files))
    missing = []
    for doc in DOCS:
        for lineno, fig in measured_figures((ROOT / doc).read_text()):
            if not re.search(rf"(?<![\w.]){re.escape(fig)}(?![\w/])", printed):
                missing.append(f"{doc}:{lineno}: {fig}")
    assert not missing, ("figures no benchmarks/results/*.txt holds (re-run the benchmark "
                         "or quote what it printed):\n" + "\n".join(missing))


def test_benchmarks_readme_holds_the_results_verbatim() -> None:
    """benchmarks/README.md is what benchmarks/make_readme.py builds from the results
    files: rerun it after a benchmark (a hand edit of a block fails here)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_readme",
                                                  ROOT / "benchmarks" / "make_readme.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    page = (ROOT / "benchmarks" / "README.md").read_text()
    assert mod.rebuild(page, RESULTS) == page, "run benchmarks/make_readme.py"
    edited = page.replace("failures: 0", "failures: 1", 1)
    assert edited == page or mod.rebuild(edited, RESULTS) != edited
