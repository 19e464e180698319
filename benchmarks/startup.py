"""Start-up: the whole `dsconv compare` process vs a bare Typer app vs `import torch`.

Targets: dsconv compare <= 0.25 s, <= 1.5x the bare Typer app, >= 8x faster than torch's
import. Run: .venv/bin/python benchmarks/startup.py [runs]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
BARE = ("import typer\napp = typer.Typer()\n@app.command()\ndef main(n: int = 1) -> None:\n"
        "    pass\napp()\n")


def wall(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "DSCONV_WIDTH": "160"})
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    dsconv = [str(BIN / "dsconv"), "compare", "--in", "256", "--out", "256", "-k", "3",
              "--hw", "14"]
    rows = {
        "dsconv compare (table)": wall(dsconv, runs),
        "dsconv compare --json": wall([*dsconv, "--json"], runs),
        "bare Typer app": wall([sys.executable, "-c", BARE, "--n", "2"], runs),
        "python -c 'import torch'": wall([sys.executable, "-c", "import torch"], max(3, runs // 3)),
    }
    bare, torch_t = rows["bare Typer app"], rows["python -c 'import torch'"]
    print(f"{'command':28} {'median s':>9} {'x bare typer':>13} {'torch import / this':>20}")
    for name, t in rows.items():
        print(f"{name:28} {t:9.3f} {t / bare:13.2f} {torch_t / t:20.1f}")
    t = rows["dsconv compare (table)"]
    ok = t <= 0.25 and t <= 1.5 * bare and torch_t / t >= 8
    print(f"targets (<=0.25 s, <=1.5x bare, >=8x faster than torch import): "
          f"{'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    from _common import results_to

    with results_to("startup"):
        main()
