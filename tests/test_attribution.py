"""Per-module times that add up (``compare --model/--arch --measure``).

Real forwards are timed, but only arithmetic is asserted: the parts are attributed inside
the same hooked forwards, so the identities hold by construction on any machine load
(top-level rows + "other" == the hooked whole; a row's inclusive time == its own time +
its children's inclusive times; own <= inclusive). No test compares two timings.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from dsconv_cli.cli import app
from dsconv_cli.options import MeasureOptions
from dsconv_cli.torch_backend.measure import ModuleTimes, module_times, open_session

from .utils import validate_report
from .zoo import ZOO

runner = CliRunner()
FAST = ["--min-time", "0.01", "--warmup", "1"]
PATTERNS = ["resnet_bottleneck", "inverted_residual_se", "convnext_block", "vit_sdpa"]


def _children(name: str, names: set[str]) -> list[str]:
    """The direct children of ``name`` among ``names`` (dotted paths; the root is "")."""
    depth = 0 if name == "" else name.count(".") + 1
    prefix = "" if name == "" else name + "."
    return [n for n in names if n and n.startswith(prefix) and n.count(".") == depth]


def check_identities(t: ModuleTimes) -> None:
    names = set(t.inclusive)
    whole = t.whole_ms
    assert whole > 0 and t.runs >= 1
    top = _children("", names)
    assert top, "no top-level module was timed"
    # the top-level rows plus "other" (the root's own time) are the whole, and so are
    # every row's own time plus "other"
    assert sum(t.inclusive[n] for n in top) + t.own[""] == pytest.approx(whole, rel=1e-9)
    assert sum(t.own.values()) == pytest.approx(whole, rel=1e-9)
    for n in names:
        assert t.own[n] <= t.inclusive[n] + 1e-12, n
        kids = _children(n, names)
        if kids:
            assert t.inclusive[n] == pytest.approx(
                t.own[n] + sum(t.inclusive[k] for k in kids), rel=1e-9, abs=1e-12), n


@pytest.mark.parametrize("name", PATTERNS)
def test_zoo_times_add_up(name: str) -> None:
    make, shape = ZOO[name]
    torch.manual_seed(0)
    s = open_session(MeasureOptions(warmup=1))
    t = module_times(make().eval(), shape, "nchw", s, max_depth=3, runs=3)
    check_identities(t)
    # every module to depth 3 that its forward calls has a time: the nested ones too
    assert any(n.count(".") >= 1 for n in t.inclusive)
    assert t.unhooked_ms > 0


class FastPath(nn.Module):
    """Calls its child on meta tensors (what counting sees) but, like torch's own fast
    paths (nn.MultiheadAttention, TransformerEncoderLayer), runs the child's weights in
    its own code on real tensors: hooks on the child never fire there."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "meta":
            return self.fc(x)
        return F.linear(x, self.fc.weight, self.fc.bias)


def fused_net() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 16), FastPath(), nn.ReLU())


def _measured(args: list[str]) -> dict[str, Any]:
    r = runner.invoke(app, ["compare", *args, "--measure", "--json", *FAST])
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    validate_report(data)
    return data["cases"][0]


@pytest.mark.slow
def test_json_rows_add_up_to_the_hooked_whole() -> None:
    case = _measured(["--arch", "tests.zoo:mobilenet_v3_like", "--input-shape", "1,3,16,16",
                      "--depth", "2"])
    tot, rows = case["totals"], {la["name"]: la for la in case["layers"]}
    whole = tot["attributed_ms"]
    root = rows["(model)"]["measured"]
    assert root["inclusive_ms"] == pytest.approx(whole, abs=1e-6)
    assert root["share_time"] == pytest.approx(1.0, abs=1e-4)
    assert root["self_ms"] == pytest.approx(tot["other_ms"], abs=1e-6)
    timed = {n: la["measured"] for n, la in rows.items() if la.get("measured") and la["depth"]}
    top = [m for n, m in timed.items() if rows[n]["depth"] == 1]
    eps = 1e-6 * (len(timed) + 1)  # each figure is rounded to the nanosecond
    assert sum(m["inclusive_ms"] for m in top) + tot["other_ms"] == pytest.approx(whole,
                                                                                abs=eps)
    assert sum(m["self_ms"] for m in timed.values()) + tot["other_ms"] == pytest.approx(
        whole, abs=eps)
    assert sum(m["share_time"] for m in top) + tot["other_share"] == pytest.approx(1, abs=0.01)
    for n, m in timed.items():
        assert m["self_ms"] <= m["inclusive_ms"] + 1e-6, n
        kids = [timed[k] for k in _children(n, set(timed))]
        if kids:  # 1 and 2 (the inverted residual blocks) hold timed children
            assert m["inclusive_ms"] == pytest.approx(
                m["self_ms"] + sum(k["inclusive_ms"] for k in kids), abs=eps), n
    assert any(_children(n, set(timed)) for n in timed)
    assert tot["unhooked_ms"] > 0 and tot["hook_overhead"] is not None
    assert "same" in case["attribution"] and "hooked forwards" in case["attribution"]


def test_a_fused_child_says_so_instead_of_a_share() -> None:
    case = _measured(["--arch", "tests.test_attribution:fused_net", "--input-shape", "2,16"])
    rows = {la["name"]: la for la in case["layers"]}
    assert "1.fc" in rows, "counting on meta sees the child"
    assert "measured" not in rows["1.fc"]
    assert rows["1.fc"]["unattributed"].startswith("fused:")
    # its time is its caller's own time
    m = rows["1"]["measured"]
    assert m["self_ms"] == pytest.approx(m["inclusive_ms"], abs=1e-6)
    r = runner.invoke(app, ["compare", "--arch", "tests.test_attribution:fused_net",
                            "--input-shape", "2,16", "--measure", "--wide", *FAST])
    assert r.exit_code == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.strip().startswith("1.fc"))
    cells = line.split()
    at = cells.index("fused")  # in the "ms" column; self ms, time share, roofline: "-"
    assert cells[at + 1:at + 4] == ["-", "-", "-"]
    assert any(ln.strip().startswith("(other)") for ln in r.stdout.splitlines())


@pytest.mark.slow
def test_a_runtime_without_modules_attributes_nothing() -> None:
    pytest.importorskip("onnxruntime")
    case = _measured(["--arch", "tests.test_attribution:fused_net", "--input-shape", "2,16",
                      "--runtime", "onnxruntime"])
    assert case["attribution"].startswith("none:")
    shown = [la for la in case["layers"] if la["depth"] <= 3]
    assert all("measured" not in la for la in shown)
    assert all(la["unattributed"].startswith("onnxruntime:") for la in shown)
    assert "other_ms" not in case["totals"]
