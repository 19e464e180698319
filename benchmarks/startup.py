"""Start-up: the whole `dsconv compare` process vs a bare Typer app vs `import torch`.

Targets: `dsconv compare --in 256 --out 256 -k 3 --hw 14` <= 1.5x the bare Typer app (one
command) in instructions executed (valgrind's callgrind: independent of the machine's load)
and in wall time (the median of alternating runs), and >= 8x faster than torch's import.

The bytecode of dsconv_cli is compiled first (as ``pip install`` does): the bare app's
Typer and pydantic run from their compiled bytecode, so dsconv must too, even where
``PYTHONDONTWRITEBYTECODE`` is set. Run: .venv/bin/python benchmarks/startup.py [runs]
"""

from __future__ import annotations

import compileall
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
BARE = ("import typer\napp = typer.Typer()\n@app.command()\ndef main(n: int = 1) -> None:\n"
        "    pass\napp()\n")
ENV = {**os.environ, "DSCONV_WIDTH": "160"}
TARGET = 1.5


def commands() -> dict[str, list[str]]:
    dsconv = [str(BIN / "dsconv"), "compare", "--in", "256", "--out", "256", "-k", "3",
              "--hw", "14"]
    return {
        "bare Typer app": [sys.executable, "-c", BARE, "--n", "2"],
        "dsconv compare (table)": dsconv,
        "dsconv compare --json": [*dsconv, "--json"],
    }


def wall(cmds: dict[str, list[str]], runs: int) -> dict[str, float]:
    """Median seconds of each command, the commands alternating run by run (a load that
    changes during the benchmark hits every command alike)."""
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(runs):
        for name, cmd in cmds.items():
            t = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=ENV)
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def instructions(cmd: list[str]) -> int | None:
    """Instructions the whole process executes, by valgrind's callgrind (None without
    valgrind)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    if cmd[0].endswith("/dsconv"):  # the console script, run by its interpreter
        cmd = [sys.executable, *cmd]
    p = subprocess.run([valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd],
                       capture_output=True, text=True, env=ENV, check=True)
    m = re.search(r"Collected : (\d+)", p.stderr)
    return int(m.group(1)) if m else None


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    import dsconv_cli  # compiled where the console script imports it from

    compileall.compile_dir(str(Path(dsconv_cli.__file__).parent), quiet=1)
    cmds = commands()
    secs = wall(cmds, runs)
    torch_s = statistics.median(
        _timed([sys.executable, "-c", "import torch"]) for _ in range(max(3, runs // 3)))
    counts = {name: instructions(cmd) for name, cmd in cmds.items()}
    bare_s, bare_i = secs["bare Typer app"], counts["bare Typer app"]
    print(f"{runs} alternating runs each; instructions: valgrind --tool=callgrind")
    print(f"{'command':24} {'instructions':>14} {'x bare':>7} {'median s':>9} {'x bare':>7}"
          f" {'torch import / this':>20}")
    for name in cmds:
        n = counts[name]
        ni = f"{n:14,}" if n is not None else f"{'-':>14}"
        xi = f"{n / bare_i:7.2f}" if n is not None and bare_i else f"{'-':>7}"
        print(f"{name:24} {ni} {xi} {secs[name]:9.3f} {secs[name] / bare_s:7.2f}"
              f" {torch_s / secs[name]:20.1f}")
    print(f"{'python -c import torch':24} {'':14} {'':7} {torch_s:9.3f} "
          f"{torch_s / bare_s:7.2f} {1.0:20.1f}")
    name = "dsconv compare (table)"
    ok_i = counts[name] is not None and bare_i is not None and (
        counts[name] <= TARGET * bare_i)
    ok_s = secs[name] <= TARGET * bare_s
    print(f"target <= {TARGET}x the bare Typer app: instructions "
          f"{'met' if ok_i else 'NOT met'}, wall time {'met' if ok_s else 'NOT met'}; "
          f">= 8x faster than torch's import: "
          f"{'met' if torch_s / secs[name] >= 8 else 'NOT met'}")


def _timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=ENV)
    return time.perf_counter() - t


if __name__ == "__main__":
    from _common import results_to

    with results_to("startup"):
        main()
