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


def rebuild(text: str, results: Path) -> str:
    parts = sections(text)
    out = ["\n".join(parts[0]).rstrip("\n")]
    for sec in parts[1:]:
        head, body = sec[0], "\n".join(sec[1:])
        m = re.search(r"`benchmarks/(\w+)\.py`", head)
        res = results / f"{m.group(1)}.txt" if m else None
        if m and res is not None and res.exists() and m.group(1) not in SKIP:
            body = re.sub(r"`results/\w+\.txt`, as the script printed it:\n\n```text\n.*?\n```",
                          "", body, flags=re.S)
            paras = [p for p in body.strip("\n").split("\n\n")
                     if p.strip() and not p.startswith("Not re-run")]
            block = res.read_text().rstrip("\n")
            body = "\n\n".join(paras) + (f"\n\n`results/{m.group(1)}.txt`, as the script "
                                          f"printed it:\n\n```text\n{block}\n```")
        out.append((head + "\n\n" + body.strip("\n")).rstrip("\n"))
    return "\n\n".join(out) + "\n"


if __name__ == "__main__":
    README.write_text(rebuild(README.read_text(), ROOT / "benchmarks" / "results"))
