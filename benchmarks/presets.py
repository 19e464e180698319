"""Analytic preset totals vs torch-based counters on the same network, in one run.

Each row is a fresh process that prints MACs/params of the network, so start-up counts:
dsconv (no torch import) against FlopCounterMode, fvcore, thop, ptflops and torchinfo
counting dsconv's built module. Counters that are not installed are skipped
(pip install fvcore thop ptflops torchinfo). Run: .venv/bin/python benchmarks/presets.py
"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODEL = sys.argv[1] if len(sys.argv) > 1 else "mobilenet_v2"
BUILD = ("import torch; from dsconv_cli.presets import get_preset;"
         "from dsconv_cli.torch_backend.build import build_preset;"
         f"p = get_preset({MODEL!r}); m = build_preset(p).eval(); x = torch.randn(p.input_shape);")
COUNTERS = {
    "FlopCounterMode": ("torch", BUILD + "from torch.utils.flop_counter import FlopCounterMode\n"
                        "with FlopCounterMode(display=False) as f, torch.no_grad(): m(x)\n"
                        "print(f.get_total_flops() // 2)"),
    "fvcore": ("fvcore", BUILD + "from fvcore.nn import FlopCountAnalysis\n"
               "a = FlopCountAnalysis(m, x); a.unsupported_ops_warnings(False);"
               "a.uncalled_modules_warnings(False); print(a.total())"),
    "thop": ("thop", BUILD + "import thop; print(thop.profile(m, inputs=(x,), verbose=False))"),
    "ptflops": ("ptflops", BUILD + "from ptflops import get_model_complexity_info\n"
                "print(get_model_complexity_info(m, tuple(p.input_shape[1:]), "
                "as_strings=False, print_per_layer_stat=False, verbose=False))"),
    "torchinfo": ("torchinfo", BUILD + "import torchinfo\n"
                  "s = torchinfo.summary(m, input_size=p.input_shape, verbose=0);"
                  "print(s.total_mult_adds)"),
}


def wall(cmd: list[str], runs: int) -> tuple[float, str]:
    times, out = [], ""
    for _ in range(runs):
        t = time.perf_counter()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        times.append(time.perf_counter() - t)
    return statistics.median(times), out.strip().splitlines()[-1][:60]


def main() -> None:
    runs = 5
    dsconv = str(Path(sys.executable).parent / "dsconv")
    rows = [("dsconv compare --model (analytic)",
             *wall([dsconv, "compare", "--model", MODEL, "--json"], runs))]
    for name, (module, code) in COUNTERS.items():
        if importlib.util.find_spec(module) is None:
            print(f"(skipped {name}: not installed)")
            continue
        rows.append((name, *wall([sys.executable, "-c", code], 3)))
    base = rows[0][1]
    print(f"\n{MODEL}: whole process, median wall time\n")
    print("| counter | seconds | x dsconv | prints |")
    print("|---|---:|---:|---|")
    for name, t, out in rows:
        shown = "JSON report" if name.startswith("dsconv") else out
        print(f"| {name} | {t:.3f} | {t / base:.1f}x | {shown} |")


if __name__ == "__main__":
    from _common import results_to

    with results_to("presets"):
        main()
