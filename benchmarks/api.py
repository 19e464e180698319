"""The Python API's speed and exactness (issue 27): ``dsconv_cli.analyse`` on a live
ResNet-50-sized plain-torch network (``tests.models:resnet50``, 25.6M params), in-process,
beside torchinfo's ``summary`` of the same model in the same process.

Both warm (one untimed call each first), then interleaved rounds (dsconv, torchinfo, ...)
so drift hits both alike; the median of each. Target: analyse <= 0.5x summary. Exactness:
analyse's MACs equal ``FlopCounterMode`` / 2 on a real forward of the same model, and its
params the module's; the module's state_dict is the same before and after.

Run from the repo root: .venv/bin/python benchmarks/api.py [--runs N]
(torchinfo comes with the dev extra.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from torchinfo import summary  # noqa: E402

import dsconv_cli  # noqa: E402
from tests.models import resnet50  # noqa: E402

SHAPE = (1, 3, 224, 224)


def timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = resnet50()

    def ours() -> None:
        dsconv_cli.analyse(model, SHAPE)

    def theirs() -> None:
        summary(model, input_size=SHAPE, verbose=0)

    ours(), theirs()  # warm: imports, first-call caches
    ds_t, ti_t = [], []
    for _ in range(args.runs):
        ds_t.append(timed(ours))
        ti_t.append(timed(theirs))
    d, t = statistics.median(ds_t), statistics.median(ti_t)
    print(f"## ResNet-50-sized (tests.models:resnet50, input {'x'.join(map(str, SHAPE))}), "
          f"in-process, warm, median of {args.runs} interleaved, torch threads "
          f"{torch.get_num_threads()}")
    print(f"dsconv_cli.analyse(model, shape) : {d:.3f} s  [{min(ds_t):.3f}-{max(ds_t):.3f}]")
    print(f"torchinfo.summary(model, ...)    : {t:.3f} s  [{min(ti_t):.3f}-{max(ti_t):.3f}]")
    print(f"analyse / summary                : {d / t:.2f}x (target <= 0.5x: "
          f"{'met' if d / t <= 0.5 else 'MISSED'})")

    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = dsconv_cli.analyse(model, SHAPE)
    after = model.state_dict()
    untouched = list(after) == list(before) and all(torch.equal(after[k], before[k])
                                                    for k in before)
    model.eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.randn(*SHAPE))
    flops = fc.get_total_flops()
    params = sum(p.numel() for p in model.parameters())
    print("\n## Exactness")
    print(f"MACs: analyse {a.macs:,}, FlopCounterMode / 2 {flops // 2:,}: "
          f"{'equal' if a.macs * 2 == flops else 'DIFFERENT'}")
    print(f"params: analyse {a.params:,}, the module's {params:,}: "
          f"{'equal' if a.params == params else 'DIFFERENT'}")
    print(f"the module's state_dict after analyse: {'unchanged' if untouched else 'CHANGED'}")


if __name__ == "__main__":
    from _common import results_to

    with results_to("api"):
        main()
