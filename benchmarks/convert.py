"""Conversion time of a ResNet-50-sized model (25.6M params), beyond loading, and its
deployable exports (``--export``): size, export time and the check against the converted
model made before writing.

Run from the repo root: .venv/bin/python benchmarks/convert.py
Target: under one second of conversion (planning + SVD + surgery) on the CI CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1]))
from tests.models import resnet50  # noqa: E402


def main() -> None:
    root = Path(__file__).parents[1]
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "resnet50.pt"
        model = resnet50()
        n = sum(p.numel() for p in model.parameters())
        torch.save(model.state_dict(), src)
        exe = [sys.executable, "-m", "dsconv_cli", "convert", str(src), "--arch",
               "tests.models:resnet50", "--json"]
        print(f"ResNet-50-sized model: {n:,} params, {src.stat().st_size / 1e6:.0f} MB state_dict")
        print("| run | load s | convert s | verify s | write s | converted | params after | "
              "rel. output diff | wall s |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for label, extra in (("write, no verify", ["-o", str(Path(d) / "o1.pt")]),
                             ("dry run + verify 1x3x224x224",
                              ["--dry-run", "--input-shape", "1,3,224,224"])):
            t = time.perf_counter()
            p = subprocess.run([*exe, *extra], capture_output=True, text=True, check=True,
                               cwd=root)
            wall = time.perf_counter() - t
            case = json.loads(p.stdout)["cases"][0]
            ts, tot, v = case["timing_s"], case["totals"], case["verification"]
            print(f"| {label} | {ts['load']:.2f} | {ts['convert']:.2f} | {ts['verify']:.2f} | "
                  f"{ts.get('write', 0):.2f} | {tot['converted']}/{tot['layers']} | "
                  f"{tot['model_params_after']:,} | "
                  f"{v['rel_diff'] if v['verified'] else '-'} | {wall:.2f} |")
        print("\nExports of the converted model at 1x3x224x224 (`--export`), checked against it "
              "before writing:\n")
        print("| format | exporter | bytes | state_dict bytes | export + check s | "
              "max abs diff | tolerance |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for suffix in (".pt2", ".onnx"):
            out, art = Path(d) / f"o2{suffix}.pt", Path(d) / f"o2{suffix}"
            p = subprocess.run([*exe, "-o", str(out), "--input-shape", "1,3,224,224",
                                "--export", str(art)], capture_output=True, text=True,
                               cwd=root)
            if p.returncode != 0:
                raise SystemExit(p.stderr)
            e = json.loads(p.stdout)["cases"][0]["export"]
            print(f"| {e['format']} | {e['exporter']} | {e['bytes']:,} | "
                  f"{out.stat().st_size:,} | {e['seconds']:.1f} | {e['max_abs_diff']:.3g} | "
                  f"{e['tolerance']:.3g} |")
            out.unlink()
            art.unlink()


if __name__ == "__main__":
    from _common import results_to

    with results_to("convert"):
        main()
