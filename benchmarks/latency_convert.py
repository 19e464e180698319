"""``convert --target-latency``: the measured end-to-end latency ratio it reaches, against a
``--target-macs`` conversion at the same MACs, on ResNet-18 and ResNet-50 (torchvision's
layouts in plain torch, random weights) at 1x3x224x224, 2 threads, eager and ONNX Runtime.

Everything runs through the installed command line as a user would: ``dsconv convert
--target-latency F`` (its report gives the measured ratio, its interval, the rounds and the
MACs it reached), then ``dsconv convert --target-macs <those MACs>``, then ``dsconv compare
--model latency.pt --vs macs.pt --measure`` for the interleaved A/B of the two conversions
in the same runtime. The latency table is measured cold (a fresh cache) for each model and
runtime at the first target and read from the cache at the second; the planning +
verification seconds are the report's own (``latency.seconds``).

Run from the repo root: .venv/bin/python benchmarks/latency_convert.py
Targets: the measured ratio meets F within its interval; latency-chosen beats MAC-chosen
at equal MACs by >= 1.15x on at least one runtime; ResNet-50 planning + verification
<= 180 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
from tests.models import resnet18, resnet50  # noqa: E402

SHAPE = "1,3,224,224"
THREADS = "2"
TARGETS = (0.8, 0.7)
RUNTIMES = ("eager", "onnxruntime")
MODELS = {"ResNet-18": ("tests.models:resnet18", resnet18),
          "ResNet-50": ("tests.models:resnet50", resnet50)}


def dsconv(*args: str, env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    p = subprocess.run([sys.executable, "-m", "dsconv_cli", *args, "--json"],
                       capture_output=True, text=True, cwd=ROOT, env=env)
    try:
        doc = json.loads(p.stdout)
    except json.JSONDecodeError:
        doc = {}
    return p.returncode, doc, p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""


def row(name: str, arch: str, src: Path, runtime: str, target: float, d: Path,
        env: dict[str, str]) -> str:
    lat_pt, mac_pt = d / f"lat-{runtime}-{target}.pt", d / f"mac-{runtime}-{target}.pt"
    common = ["--arch", arch, "--input-shape", SHAPE, "--threads", THREADS, "--force"]
    t0 = time.perf_counter()
    rc, doc, err = dsconv("convert", str(src), "-o", str(lat_pt), *common, "--target-latency",
                          str(target), "--runtime", runtime, env=env)
    wall = time.perf_counter() - t0
    case = doc["cases"][0]
    lat = case["latency"]
    r = lat["rounds"][(lat["chosen_round"] or len(lat["rounds"])) - 1]
    ratio = (f"{r['measured']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]"
             if r.get("measured") is not None else "-")
    macs = r.get("macs")
    before = case["totals"]["model_macs_before"]
    cells = [name, runtime, f"{target:g}", ratio, lat["verdict"], str(len(lat["rounds"])),
             f"{r.get('converted_layers', 0)}/{len(lat['layers'])}",
             f"{macs / before:.3f}" if macs else "-"]
    vs = "-"
    if rc == 0 and macs:
        rc2, _, err2 = dsconv("convert", str(src), "-o", str(mac_pt), *common,
                              "--target-macs", str(macs), env=env)
        if rc2 == 0:
            rc3, cmp, err3 = dsconv(
                "compare", "--model", str(lat_pt), "--arch", arch, "--vs", str(mac_pt),
                "--vs-arch", arch, "--measure", "--runtime", runtime, "--input-shape", SHAPE,
                "--threads", THREADS, "--depth", "1", env=env)
            if rc3 == 0:
                sp = cmp["cases"][0]["speedup"]
                vs = f"{sp['estimate']:.2f}x [{sp['ci95'][0]:.2f}, {sp['ci95'][1]:.2f}]"
            else:
                vs = f"compare failed: {err3}"
        else:
            vs = f"--target-macs failed: {err2}"
    elif rc != 0:
        vs = f"(exit {rc}: {err[:60]})"
    cells += [vs, f"{lat['seconds']:.0f}", f"{wall:.0f}"]
    return "| " + " | ".join(cells) + " |"


def main(models: list[str], runtimes: list[str], targets: list[float]) -> None:
    print(f"torch {torch.__version__}, {THREADS} threads, input {SHAPE}, random weights; "
          f"{os.cpu_count()} logical CPUs")
    print("Each row: `convert --target-latency F --runtime R` (measured latency ratio "
          "converted/original with its 95% interval, the verdict, rounds, layers converted, "
          "MACs as a fraction of the original's), then the `--target-macs` conversion at "
          "the same MACs timed against it (speedup of the latency-chosen model over the "
          "MAC-chosen one, interleaved A/B, 95% interval). 'plan s' is the report's "
          "planning + verification time (the first target of each model and runtime "
          "measures the layer table cold; the second reads it from the cache); 'wall s' the "
          "whole command.")
    print()
    print("| model | runtime | F | measured ratio [95% CI] | verdict | rounds | converted "
          "| MACs | vs MAC-chosen [95% CI] | plan s | wall s |")
    print("|---|---|---:|---|---|---:|---:|---:|---|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        cache = d / "cache"
        cache.mkdir()
        env = {**os.environ, "DSCONV_CACHE_DIR": str(cache)}
        for name in models:
            arch, build = MODELS[name]
            src = d / f"{name}.pt"
            torch.manual_seed(0)
            torch.save(build().state_dict(), src)
            for runtime in runtimes:
                # the layer table cold for the first target (the roofline calibration,
                # which --target-latency's session also loads, stays cached)
                (cache / "latency.json").unlink(missing_ok=True)
                for target in targets:
                    print(row(name, arch, src, runtime, target, d, env), flush=True)


if __name__ == "__main__":
    import argparse

    from _common import results_to

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--runtimes", default=",".join(RUNTIMES))
    ap.add_argument("--targets", default=",".join(map(str, TARGETS)))
    a = ap.parse_args()
    picked = (a.models.split(","), a.runtimes.split(","),
              [float(t) for t in a.targets.split(",")])
    full = picked == (list(MODELS), list(RUNTIMES), list(TARGETS))
    with results_to("latency_convert", save=full):  # a partial run is not the results
        main(*picked)
