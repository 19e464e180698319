"""Rebuild the result blocks of benchmarks/README.md from benchmarks/results/<name>.txt.

Each section whose heading names ``benchmarks/<name>.py`` keeps its prose and gets the
results file verbatim (when it exists) under "`results/<name>.txt`, as the script printed
it:". Nothing is typed by hand. Run from the repo root after a benchmark:
.venv/bin/python benchmarks/make_readme.py
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
README = ROOT / "benchmarks" / "README.md"
#: sections whose results are copied elsewhere (the README's output blocks)
SKIP = {"readme_outputs"}


def sections(text: str) -> list[list[str]]:
    """The page split at level-2 and level-3 headings outside code fences."""
    out: list[list[str]] = [[]]
    fence = False
    for line in text.splitlines():
        if line.startswith("```"):
            fence = not fence
        if not fence and re.match(r"#{2,3} ", line):
            out.append([])
        out[-1].append(line)
    return out


def _results_of(results: Path, name: str) -> list[Path]:
    """``<name>.txt``, else the parts a script writes one file each (``<name>_<part>.txt``,
    quick runs left out)."""
    one = results / f"{name}.txt"
    if one.exists():
        return [one]
    return sorted(p for p in results.glob(f"{name}_*.txt") if not p.stem.endswith("_quick"))


def rebuild(text: str, results: Path) -> str:
    parts = sections(text)
    out = ["\n".join(parts[0]).rstrip("\n")]
    for sec in parts[1:]:
        head, body = sec[0], "\n".join(sec[1:])
        m = re.search(r"`benchmarks/(\w+)\.py`", head)
        files = _results_of(results, m.group(1)) if m and m.group(1) not in SKIP else []
        if files:
            body = re.sub(r"`results/\w+\.txt`, as the script printed it:\n\n```text\n.*?\n```",
                          "", body, flags=re.S)
            paras = [p for p in body.strip("\n").split("\n\n")
                     if p.strip() and not p.startswith("Not re-run")]
            body = "\n\n".join(paras) + "".join(
                f"\n\n`results/{f.name}`, as the script printed it:\n\n```text\n"
                f"{f.read_text().rstrip(chr(10))}\n```" for f in files)
        out.append((head + "\n\n" + body.strip("\n")).rstrip("\n"))
    return "\n\n".join(out) + "\n"


if __name__ == "__main__":
    README.write_text(rebuild(README.read_text(), ROOT / "benchmarks" / "results"))
