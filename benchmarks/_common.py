"""What every benchmark script shares: its printed output kept in benchmarks/results/.

Each script ends with::

    if __name__ == "__main__":
        from _common import results_to

        with results_to("<name>"):
            main()

so ``python benchmarks/<name>.py`` prints as before and, when it finishes, writes the same
text to ``benchmarks/results/<name>.txt`` (committed). The figures quoted in README.md and
benchmarks/README.md must be ones these files hold (tests/test_figures.py checks it).
"""

from __future__ import annotations

import contextlib
import io
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

RESULTS = Path(__file__).parent / "results"


class _Tee(io.TextIOBase):
    """Writes go to the terminal and into a buffer."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.buffer_ = io.StringIO()

    def write(self, s: str) -> int:
        self.out.write(s)
        self.out.flush()
        return self.buffer_.write(s)

    def flush(self) -> None:
        self.out.flush()


@contextlib.contextmanager
def results_to(name: str, save: bool = True) -> Iterator[None]:
    """Print as usual; on success (and with ``save``) also write what was printed to
    ``benchmarks/results/<name>.txt``, after a line saying when, where and how it ran.
    A run that fails or is interrupted leaves the previous file as it was."""
    tee = _Tee(sys.stdout)
    old, sys.stdout = sys.stdout, tee  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout = old
    if save:
        RESULTS.mkdir(exist_ok=True)
        head = (f"# {' '.join(['python', *sys.argv])}\n# {time.strftime('%Y-%m-%d')}, "
                f"{platform.machine()}, Python {platform.python_version()}\n")
        (RESULTS / f"{name}.txt").write_text(head + tee.buffer_.getvalue())
        print(f"(written to {RESULTS / f'{name}.txt'})", file=sys.stderr)
