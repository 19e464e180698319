"""``torch.compile`` (inductor). Compilation happens in ``prepare`` (the first calls),
timed apart and never inside the timed region."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import torch
from torch import nn

from . import Prepared, RuntimeFailure


class CompileRuntime:
    name = "compile"
    layouts: tuple[str, ...] | None = None

    def prepare(self, module: nn.Module, x: torch.Tensor) -> Prepared:
        try:
            # a fresh compiler per module: dynamo caches by code object (every Conv2d shares
            # one forward), and past its recompile limit it silently runs eager
            torch.compiler.reset()
            compiled = torch.compile(module, backend="inductor", dynamic=False)
            t0 = time.perf_counter()
            with torch.inference_mode():
                compiled(x)  # compiles
                if x.is_cuda:
                    torch.cuda.synchronize(x.device)
            compile_s = time.perf_counter() - t0
        except Exception as e:  # inductor/dynamo failures come in many types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise RuntimeFailure(f"torch.compile failed: {type(e).__name__}: {first}") from e
        return Prepared(partial(compiled, x), {"compile_s": round(compile_s, 4)})

    def record(self) -> dict[str, Any]:
        return {"runtime": self.name, "compile_backend": "inductor"}
