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
_NUM = r"\d[\d,]*(?:\.\d+)?"
#: a number (thousands commas, decimals), its interval or range when it has one
#: (``3.6 [3.5-3.9]x``, ``10.7 [8.9-12.6] GFLOP/s``), and its unit, standing alone
FIGURE = re.compile(rf"(?<![\w.\-/+])({_NUM}(?:\s?\[{_NUM}\s?[-–,]\s?{_NUM}\])?)\s?({UNITS})"
                    r"(?![\w/])")
#: what names the benchmark a figure comes from: its script or its results file
SOURCE = re.compile(r"(?:benchmarks/|results/)(\w+)\.(?:py|txt)")
#: words shortly before a figure that make it a target, limit or setting, not a result
NOT_MEASURED_BEFORE = re.compile(
    r"(target|<=|>=|≤|≥|<|>|at most|at least|under|within|default|threshold|limit|budget|"
    r"e\.g\.|--[\w-]+|max_\w+|min_\w+|cap)[\s(:=]*(?:(?:of|is|a|an|the|by)\s+)?$",
    re.IGNORECASE)
#: words right after a figure that make it a level or a definition
NOT_MEASURED_AFTER = re.compile(r"^\s?(CI|confidence|interval|of the (median|threshold))",
                                re.IGNORECASE)


def _norm(text: str) -> str:
    """Numbers and units as compared: no thousands commas, no space before the unit or
    the interval."""
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    text = re.sub(r"(\d)\s(\[)", r"\1\2", text)
    return re.sub(rf"([\d\]])\s({UNITS})(?![\w/])", r"\1\2", text)


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


def sources(text: str) -> list[set[str]]:
    """For each line of a markdown text, the benchmarks whose results its figures must be
    found in: those its paragraph names (``benchmarks/NAME.py``, ``results/NAME.txt``),
    else those its section's heading (or the section's first paragraph) names; empty when
    nothing names one (then any results file may hold them)."""
    lines = text.splitlines()
    out: list[set[str]] = [set() for _ in lines]
    section: set[str] = set()
    i = 0
    while i < len(lines):
        if lines[i].startswith("#") and not lines[i].startswith("# "):
            section = set(SOURCE.findall(lines[i]))
        j = i
        while j < len(lines) and lines[j].strip() and not (j > i and lines[j].startswith("#")):
            j += 1
        j = max(j, i + 1)
        named = set(SOURCE.findall("\n".join(lines[i:j])))
        if not section and named and not lines[i].startswith("#"):
            section = named
        for k in range(i, j):
            out[k] = named or section
        i = j
    return out


def unsourced(doc: str, text: str, results: dict[str, str]) -> list[str]:
    """``doc:line: figure`` for each measured figure of ``text`` that the results file of
    the benchmark its text names does not print (any results file when none is named)."""
    printed = {name: _norm(t) for name, t in results.items()}
    everything = "\n".join(printed.values())
    where = sources(text)
    missing = []
    for lineno, fig in measured_figures(text):
        named = where[lineno - 1]
        # a script that runs in parts (int8.py) writes NAME_PART.txt, one file each, and no
        # NAME.txt
        pool = "\n".join(t for k, t in printed.items() if any(
            k == n or (n not in printed and k.startswith(f"{n}_")) for n in named)
        ) if named else everything
        if not re.search(rf"(?<![\w.]){re.escape(fig)}(?![\w/])", pool):
            missing.append(f"{doc}:{lineno}: {fig}" + (
                f" (not in results/{', '.join(sorted(named))}.txt)" if named else ""))
    return missing


def test_every_readme_figure_is_in_its_benchmark_s_results_file() -> None:
    files = sorted(RESULTS.glob("*.txt"))
    if not files:
        pytest.skip("benchmarks/results/ has no .txt files yet: run "
                    "`.venv/bin/python benchmarks/<name>.py` for each benchmark")
    results = {f.stem: f.read_text() for f in files}
    missing = [m for doc in DOCS for m in unsourced(doc, (ROOT / doc).read_text(), results)]
    assert not missing, ("figures the results file of their benchmark does not hold "
                         "(re-run the benchmark or quote what it printed):\n"
                         + "\n".join(missing))


def test_the_headline_figures_are_checked_against_their_own_file() -> None:
    """The README's headline form (``3.6 [3.5-3.9]x``) is found, and planted fakes fail:
    a made-up figure, and a real figure of another benchmark's file."""
    results = {"readme_figures": "speedup: 3.6 [3.5-3.9]x; 10.7 [8.9-12.6] GFLOP/s\n",
               "other": "9.9 [9.5-9.9]x and 999 [1-2] GFLOP/s and 42 ms\n"}
    good = ("The layer runs 3.6 [3.5-3.9]x faster, its depthwise half at\n10.7 [8.9-12.6] "
            "GFLOP/s (`benchmarks/readme_figures.py`).\n")
    assert [f for _, f in measured_figures(good)] == ["3.6[3.5-3.9]x", "10.7[8.9-12.6]GFLOP/s"]
    assert unsourced("R", good, results) == []
    for fake in ("9.9 [9.5-9.9]x", "999 [1-2] GFLOP/s", "42 ms", "3.7 [3.5-3.9]x"):
        text = good.replace("3.6 [3.5-3.9]x", fake)
        assert unsourced("R", text, results) == [f"R:1: {_norm(fake)} (not in "
                                                 "results/readme_figures.txt)"], fake
    section = "## Start-up: `benchmarks/other.py`\n\nIt took 42 ms.\n\nAnd 3.6 [3.5-3.9]x.\n"
    assert unsourced("R", section, results) == [
        "R:5: 3.6[3.5-3.9]x (not in results/other.txt)"]


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
