from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import torch
from torch.utils.flop_counter import FlopCounterMode

SCHEMA = json.loads(
    (Path(__file__).parents[1] / "dsconv_cli" / "report.schema.json").read_text())

needs_cuda = __import__("pytest").mark.skipif(not torch.cuda.is_available(),
                                              reason="needs a CUDA device")


def validate_report(data: dict[str, Any]) -> None:
    jsonschema.validate(data, SCHEMA)


def torch_counts(module: torch.nn.Module,
                 shape: tuple[int, ...]) -> tuple[int, int, tuple[int, ...]]:
    """(params, MACs, output shape) of a real forward pass, counted by torch itself."""
    module.eval()
    params = sum(p.numel() for p in module.parameters())
    x = torch.randn(*shape)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        y = module(x)
    flops = fc.get_total_flops()
    assert flops % 2 == 0
    return params, flops // 2, tuple(y.shape)


def interrupt_second_call(monkeypatch: Any, owner: Any, name: str) -> None:
    """Replace ``owner.name`` so that its second call is interrupted by a real SIGINT
    (Ctrl-C in the middle of a run: a bare ``KeyboardInterrupt`` would be user code's);
    the first call runs for real."""
    real = getattr(owner, name)
    calls = {"n": 0}

    def wrapped(*a: Any, **k: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            import signal

            signal.raise_signal(signal.SIGINT)
        return real(*a, **k)

    monkeypatch.setattr(owner, name, wrapped)
