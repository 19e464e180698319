"""How long ``profile --merge`` takes to join and re-judge two shards as they grow (the
timing half of the duplicate-case check; tests/test_merge_judge.py holds its correctness).

Each shard holds N dry-run cases (one budget each); the merge re-derives every verdict
and checks every name once. A quadratic check (``list.count`` per name) would take hours
at 50,000 cases per shard; a linear merge grows in proportion to N. The reports are built
in memory (reading and schema-validating them back is timed apart, as ``read``).

Run: .venv/bin/python benchmarks/merge_scale.py [--sizes 1000,10000,50000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]


def _shard(folder: Path) -> dict[str, Any]:
    (folder / "c.yaml").write_text("cases:\n  - name: a\n    layer: {in: 8, hw: 8}\n"
                                   "    budget: {max_params: 1000}\n")
    subprocess.run([sys.executable, "-m", "dsconv_cli", "profile", "c.yaml", "--dry-run",
                    "--report", "s.json"], cwd=folder, check=True, capture_output=True)
    return json.loads((folder / "s.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,50000")
    args = ap.parse_args()
    from dsconv_cli.services import gate as svc

    with tempfile.TemporaryDirectory() as tmp:
        d = _shard(Path(tmp))
        print("cases per shard   merge s   per case us   read+validate s")
        for n in (int(x) for x in args.sizes.split(",")):
            parts = {Path(tmp) / f"big{i}.json": {
                **d, "shard": {"index": i, "count": 2},
                "expected_cases": [f"c{i}-{k}" for k in range(n)],
                "cases": [{**d["cases"][0], "name": f"c{i}-{k}"} for k in range(n)]}
                for i in (1, 2)}
            for p, doc in parts.items():
                p.write_text(json.dumps(doc))
            real = svc.load_report
            t0 = time.perf_counter()
            for p in parts:
                real(p, "--merge")
            read_s = time.perf_counter() - t0
            svc.load_report = lambda p, what, parts=parts: parts[p]  # type: ignore[misc]
            try:
                t0 = time.perf_counter()
                merged = svc.merge_reports(list(parts))
                took = time.perf_counter() - t0
            finally:
                svc.load_report = real  # type: ignore[assignment]
            assert len(merged.report["cases"]) == 2 * n and merged.exit_status == 0
            print(f"{n:>15,}   {took:7.2f}   {1e6 * took / (2 * n):11.1f}   {read_s:15.2f}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import results_to

    with results_to("merge_scale"):
        main()
