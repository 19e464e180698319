"""``convert --target-latency``: the chooser on fake latency tables (no torch), the cached
per-layer table, the end-to-end check on a tiny net, ``compare --vs ds`` fed by the same
table, and bad input. Nothing here asserts which of two timings is faster: every check on
real timings is one of consistency (an estimate inside its interval, a verdict that matches
its interval and the exit code, files written only when met)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from typer.testing import CliRunner

from dsconv_cli.cli import app
from dsconv_cli.latency import (
    LayerTimes,
    Timed,
    adjusted_target,
    choose,
    entry_problem,
    judge,
    latency_ratio,
)

from .utils import validate_report

runner = CliRunner()


def timed(ms: float, n: int = 12, spread: float = 0.01, seed: int = 0) -> Timed:
    """Block times around ``ms`` (a fake measurement, for the chooser only)."""
    rng = random.Random(seed)
    return Timed(tuple(ms * (1 + spread * rng.uniform(-1, 1)) for _ in range(n)))


def layer(name: str, conv: float, ds: dict[int, float], err: dict[int, float],
          calls: int = 1) -> LayerTimes:
    return LayerTimes(name, timed(conv, seed=1), {m: timed(v, seed=m + 2) for m, v in ds.items()},
                      err, calls)


# --------------------------------------------------------------------------- the chooser

def test_chooser_spends_the_budget_on_the_least_error_per_ms_saved() -> None:
    # hand-worked: the model is 30 ms, the budget 0.8 -> 24 ms, so 6 ms must go.
    # a: m=4 saves 5 ms (error 0.4), m=2 7 ms (0.7), m=1 8 ms (0.9); b: DS no faster.
    a = layer("a", 10, {1: 2, 2: 3, 4: 5}, {1: 0.9, 2: 0.7, 4: 0.4})
    b = layer("b", 5, {1: 5.0}, {1: 0.5})
    plan = choose([a, b], 30.0, 0.8)
    assert plan.met and plan.ranks() == {"a": 2}
    assert plan.predicted_ms == pytest.approx(30 - (10 - 3), rel=0.02)
    kept = plan.kept()["b"]
    assert "not measurably faster" in kept and kept.startswith("DS 4.9") and "conv 5" in kept
    # a looser budget needs only m=4 (the least error that reaches it)
    assert choose([a, b], 30.0, 0.84).ranks() == {"a": 4}
    # a layer the budget does not need keeps its conv (no error added)
    c = layer("c", 10, {1: 2}, {1: 0.9})
    loose = choose([a, b, c], 30.0, 0.84)
    assert loose.met and loose.ranks() == {"a": 4} and "not needed" in loose.kept()["c"]


def test_chooser_says_when_the_budget_cannot_be_reached() -> None:
    a = layer("a", 10, {1: 2, 2: 3}, {1: 0.9, 2: 0.7})
    plan = choose([a], 30.0, 0.5)  # at most 8 ms of 30 can go: 0.733
    assert not plan.met and plan.ranks() == {"a": 1}
    assert plan.predicted_ratio == pytest.approx(22 / 30, rel=0.02)
    assert "0.73" in plan.notes[0] and "0.500" in plan.notes[0]


def test_chooser_counts_calls_per_forward() -> None:
    # the same saving per call, but b runs three times per forward: converting b alone
    # reaches the budget with less error than converting a
    a = layer("a", 4, {1: 2}, {1: 0.5})
    b = layer("b", 4, {1: 2}, {1: 0.5}, calls=3)
    plan = choose([a, b], 20.0, 0.75)  # 5 ms to go: b saves 6
    assert plan.ranks() == {"b": 1}


@given(st.lists(st.tuples(st.floats(0.5, 20), st.floats(0.05, 1.0), st.floats(0.0, 1.0)),
                min_size=1, max_size=6), st.floats(0.05, 0.99))
def test_chooser_properties(spec: list[tuple[float, float, float]], budget: float) -> None:
    """Met exactly when the fastest forms of the measurably faster layers reach the budget;
    every converted layer's form is measurably faster; the prediction adds up."""
    layers = [layer(f"l{i}", conv, {1: conv * frac, 2: conv * min(1.0, frac * 1.5)},
                    {1: err, 2: err / 2}) for i, (conv, frac, err) in enumerate(spec)]
    model_ms = sum(la.conv.median_ms for la in layers) + 1.0
    plan = choose(layers, model_ms, budget)
    best = model_ms - sum(la.conv.median_ms - min(la.ds[m].median_ms for m in la.ds
                                                  if la.faster(m))
                          for la in layers if any(la.faster(m) for m in la.ds))
    assert plan.met == (best <= budget * model_ms + 1e-9)
    by = {la.name: la for la in layers}
    for name, m in plan.ranks().items():
        assert by[name].faster(m)
    saved = sum(by[n].conv.median_ms - by[n].ds[m].median_ms for n, m in plan.ranks().items())
    assert plan.predicted_ms == pytest.approx(model_ms - saved)


def test_judge_and_the_adjusted_budget_by_hand() -> None:
    assert judge((0.60, 0.68), 0.7) == "met"
    assert judge((0.65, 0.72), 0.7) == "met within its interval"
    assert judge((0.72, 0.80), 0.7) == "missed"
    assert judge((0.40, 1.60), 0.7) == "too noisy"
    assert judge((math.nan, 0.7), 0.7) == "too noisy"
    # predicted 0.7 but measured 0.8: 0.2 of the predicted 0.3 saving came true (2/3),
    # so to save 0.3 for real the chooser must aim to save 0.45: budget 0.55
    assert adjusted_target(0.7, 0.7, 0.8, 0.7) == pytest.approx(0.55)
    # a saving that did not happen at all: nothing to aim at
    assert adjusted_target(0.7, 0.7, 1.0, 0.7) == 0.0


@given(st.lists(st.floats(1.0, 2.0), min_size=10, max_size=30),
       st.lists(st.floats(1.0, 2.0), min_size=10, max_size=30))
def test_latency_ratio_estimate_lies_inside_its_interval(a: list[float], b: list[float]
                                                         ) -> None:
    ratio, (lo, hi), p = latency_ratio(a, b)
    assert lo <= ratio * (1 + 1e-9) and ratio <= hi * (1 + 1e-9)
    assert 0 <= p <= 1


def test_entry_problem() -> None:
    assert entry_problem(timed(1.0)) is None
    assert "block times" in (entry_problem(Timed((1.0, 1.0))) or "")
    assert "noisy" in (entry_problem(Timed((1.0, 1.0, 3.0, 3.0, 1.0, 3.0))) or "")
    assert "positive finite" in (entry_problem(Timed((1.0,) * 5 + (math.inf,))) or "")


# --------------------------------------------------------------------------- real layers

def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)).eval()


FAST = ["--min-time", "0.01", "--threads", "1", "--input-shape", "1,3,16,16"]


@pytest.fixture
def net_file(tmp_path: Path) -> Path:
    p = tmp_path / "net.pt"
    torch.save(tiny_net(), p)
    return p


def convert(*args: Any) -> Any:
    return runner.invoke(app, ["convert", *map(str, args)])


def test_end_to_end_report_is_consistent_with_its_verdict(net_file: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "out.pt"
    r = convert(net_file, "-o", out, "--trust-pickle", "--target-latency", 0.9, *FAST,
                "--json")
    assert r.exit_code in (0, 1), r.output
    doc = json.loads(r.stdout)
    validate_report(doc)
    case = doc["cases"][0]
    lat = case["latency"]
    assert lat["runtime"] == "eager" and lat["threads"] == 1 and lat["target"] == 0.9
    # the eligible layers (in >= 32 channels, 3x3) are in the table: "2" and "4"
    assert [la["name"] for la in lat["layers"]] == ["2", "4"]
    for la in lat["layers"]:
        for f in (la["conv"], *la["ds"]):
            lo, hi = f["ci95"]
            assert lo <= f["median_ms"] <= hi and lo > 0
        assert [f["multiplier"] for f in la["ds"]] == [1, 2, 3, 4, 6, 8][:len(la["ds"])]
        if la["chosen"] is None:
            assert "DS " in la["reason"] and " vs conv " in la["reason"]
        else:
            chosen = next(f for f in la["ds"] if f["multiplier"] == la["chosen"])
            assert chosen["faster"] is True
    assert 1 <= len(lat["rounds"]) <= 3
    for rd in lat["rounds"]:
        if rd.get("measured") is not None:
            lo, hi = rd["ci95"]
            assert lo <= rd["measured"] <= hi
    # the verdict is the interval's, and the exit code and the files follow it
    from dsconv_cli.latency import judge as judge_

    last = lat["rounds"][-1]
    if last.get("ci95"):
        assert lat["verdict"] == judge_(last["ci95"], 0.9)
    met = lat["verdict"] in ("met", "met within its interval")
    assert (r.exit_code == 0) == met == out.exists()
    if met:
        plan = json.loads(Path(str(out) + ".plan.json").read_text()) if Path(
            str(out) + ".plan.json").exists() else None
        model = torch.load(out, weights_only=False)
        chosen = {la["name"]: la["chosen"] for la in lat["layers"] if la["chosen"]}
        got = {n: m[0].out_channels // m[0].in_channels for n, m in model.named_children()
               if isinstance(m, nn.Sequential)}
        assert got == chosen and plan is None  # a pickled module: no plan beside it
        rows = {la["name"]: la for la in case["layers"]}
        assert {n for n, la in rows.items() if la["status"] == "converted"} == set(chosen)


def test_an_unreachable_target_writes_nothing_and_exits_1(net_file: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "out.pt"
    r = convert(net_file, "-o", out, "--trust-pickle", "--target-latency", 0.02, *FAST)
    assert r.exit_code == 1, r.output
    assert not out.exists()
    assert "--target-latency 0.02:" in r.stderr
    assert "nothing written" in r.stdout


def session(threads: int = 1) -> Any:
    from dsconv_cli.options import MeasureOptions
    from dsconv_cli.torch_backend.measure import open_session

    return open_session(MeasureOptions(threads=threads, min_time=0.01, warmup=1))


def facts() -> list[Any]:
    from dsconv_cli.plan import PlanOptions
    from dsconv_cli.torch_backend.convert import candidates

    return candidates(tiny_net(), PlanOptions(), (1, 3, 16, 16))


def test_the_table_is_cached_keyed_and_judged_on_load(
        cache_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import dsconv_cli.latency as core
    from dsconv_cli.torch_backend.latency import layer_table, weight_error

    # the caching itself, whatever the load: no spread is too wide here (the spread
    # rule is test_entry_problem's; a non-finite entry below is judged all the same)
    monkeypatch.setattr(core, "MAX_ENTRY_SPREAD", 1e12)
    found = facts()
    assert [(f.name, c) for f, c in found] == [("2", 1), ("4", 1)]
    first, s1 = layer_table(found, session(), weight_error)
    # two distinct shapes (32->64 and 64->64 at 16x16), each measured once
    assert (s1.measured, s1.cached, s1.not_cached) == (2, 0, 0)
    again, s2 = layer_table(found, session(), weight_error)
    assert (s2.measured, s2.cached) == (0, 2)
    assert [t.times.conv.samples_ms for t in again] == [t.times.conv.samples_ms for t in first]
    assert all(t.cached for t in again)
    # another thread count is another table
    other, s3 = layer_table(found, session(threads=2), weight_error) if (
        torch.get_num_threads() >= 2 and (__import__("os").cpu_count() or 1) >= 2) else (
        [], None)
    if s3 is not None:
        assert s3.cached == 0 and s3.measured >= 1
    # --recalibrate measures again
    _, s4 = layer_table(found, session(), weight_error, recalibrate=True)
    assert s4.cached == 0 and s4.measured == 2
    # an entry made implausible on disk (a block time of 0, then too few block times) is
    # measured again, never trusted
    path = Path(cache_dir) / "latency.json"
    for bad in ([0.0] * 12, [1.0, 1.0]):
        doc = json.loads(path.read_text())
        key = next(k for k in doc["tables"] if "threads 1" in k)
        row = next(iter(doc["tables"][key]))
        doc["tables"][key][row]["conv"] = bad
        path.write_text(json.dumps(doc))
        _, s5 = layer_table(found, session(), weight_error)
        assert s5.measured == 1 and s5.cached == 1
    # a damaged file is said and measured afresh
    path.write_text("{not json")
    warned: list[str] = []
    _, s6 = layer_table(found, session(), weight_error, warn=warned.append)
    assert s6.measured == 2 and any("cannot be read" in w for w in warned)


def test_weight_error_is_eckart_young() -> None:
    from dsconv_cli.torch_backend.latency import weight_error

    f = facts()[1][0]
    assert weight_error(f, 9) == 0.0
    assert weight_error(f, 1) == pytest.approx(math.sqrt(1 - f.energy_by_rank[0]))


def test_compare_vs_ds_uses_the_table_and_one_speedup_per_runtime(net_file: Path) -> None:
    runtimes = "eager,onnxruntime" if _has_ort() else "eager"
    r = runner.invoke(app, ["compare", "--model", str(net_file), "--trust-pickle",
                            "--measure", "--vs", "ds", "--runtime", runtimes, "--json",
                            *FAST, "--rounds", "10"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    validate_report(doc)
    case = doc["cases"][0]
    for sp in [case["speedup"], *(case.get("speedup_by_runtime") or [])]:
        lo, hi = sp["ci95"]
        assert sp["measured"] == pytest.approx(sp["estimate"], rel=1e-3)
        assert lo <= sp["estimate"] <= hi
    if _has_ort():
        assert [s["runtime"] for s in case["speedup_by_runtime"]] == ["eager", "onnxruntime"]
    whole = next(la for la in case["layers"] if la["name"] == "(model)")
    assert whole["speedup"] == case["speedup"]  # one figure, not a third from the hooks
    convs = [la for la in case["layers"] if la.get("ds")]
    assert [la["name"] for la in convs] == ["2", "4"]
    for la in convs:
        sp = la["speedup"]
        assert sp["ci95"][0] <= sp["estimate"] <= sp["ci95"][1]
    # the same table: compare measured the conv and m=1 of each layer; convert measures
    # every candidate (the rows compare wrote are not enough), and compare then reads one
    # of convert's rows for its own
    r2 = convert(net_file, "-o", net_file.with_name("o.pt"), "--trust-pickle",
                 "--target-latency", 0.9, *FAST, "--json")
    cache = json.loads(r2.stdout)["cases"][0]["latency"]["cache"]
    assert cache["measured"] + cache["cached"] == 2


def _has_ort() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize(("args", "needle"), [
    (["--target-latency", "0"], "--target-latency must be a finite number (0, 1)"),
    (["--target-latency", "1"], "--target-latency must be a finite number (0, 1)"),
    (["--target-latency", "1.5"], "(0, 1)"),
    (["--target-latency", "nan"], "(0, 1)"),
    (["--target-latency", "0.7", "--target-macs", "0.5"], "drop --target-macs"),
    (["--target-latency", "0.7", "--depth-multiplier", "2"], "drop --depth-multiplier"),
    (["--target-latency", "0.7", "--energy", "0.9"], "drop --energy"),
    (["--target-latency", "0.7", "--runtime", "eager,compile"], "one runtime"),
    (["--target-latency", "0.7", "--runtime", "tensorrt"], "--runtime"),
    (["--target-latency", "0.7", "--memory-format", "both"], "one layout"),
])
def test_bad_input_is_one_line_exit_2_before_any_work(
        args: list[str], needle: str, net_file: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import dsconv_cli.torch_backend.loading as loading

    def no_loading(*a: Any, **k: Any) -> Any:
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(loading, "load_model", no_loading)
    r = convert(net_file, "-o", tmp_path / "o.pt", "--trust-pickle", "--input-shape",
                "1,3,16,16", *args)
    assert r.exit_code == 2, r.output
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_target_latency_needs_an_input_shape_and_an_installed_runtime(
        net_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = convert(net_file, "-o", tmp_path / "o.pt", "--trust-pickle", "--target-latency", 0.7)
    assert r.exit_code == 2 and "give --input-shape" in r.stderr
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    r = convert(net_file, "-o", tmp_path / "o.pt", "--trust-pickle", "--target-latency", 0.7,
                "--input-shape", "1,3,16,16", "--runtime", "onnxruntime")
    assert r.exit_code == 2 and "pip install 'dsconv[onnx]'" in r.stderr


def test_refit_errors_match_a_least_squares_solve_and_fall_with_the_multiplier() -> None:
    from dsconv_cli.torch_backend.calibrate import refit_errors
    from dsconv_cli.torch_backend.convert import make_pair

    net = tiny_net()
    data = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    errs = refit_errors(net, {"4": [1, 2, 4, 9]}, data)
    conv = net[4]
    x = net[:4](data)  # the layer's input in the original network
    with torch.no_grad():
        y = conv(x)
        for m in (1, 2, 4):
            z = make_pair(conv, m, "svd")[0](x)
            zf = torch.cat([z.double().movedim(1, -1).reshape(-1, z.shape[1]),
                            torch.ones(z.numel() // z.shape[1], 1, dtype=torch.float64)], 1)
            yf = y.double().movedim(1, -1).reshape(-1, y.shape[1])
            sol = torch.linalg.lstsq(zf, yf).solution
            want = float((zf @ sol - yf).norm() / yf.norm())
            assert errs[("4", m)] == pytest.approx(want, rel=1e-3, abs=1e-6)
    # the depthwise filters at m+1 hold those at m: the refit can only do better
    assert errs[("4", 1)] >= errs[("4", 2)] >= errs[("4", 4)] >= errs[("4", 9)] - 1e-9
    assert errs[("4", 9)] < 1e-3  # full rank: exact


def test_with_calibration_data_the_chooser_weighs_refit_errors(net_file: Path,
                                                               tmp_path: Path) -> None:
    cal = tmp_path / "cal.pt"
    torch.save(torch.randn(8, 3, 16, 16), cal)
    r = convert(net_file, "--dry-run", "--trust-pickle", "--target-latency", 0.9, *FAST,
                "--calibration-data", cal, "--json")
    assert r.exit_code in (0, 1), r.output
    lat = json.loads(r.stdout)["cases"][0]["latency"]
    assert lat["error"] == "refit"
    from dsconv_cli.torch_backend.calibrate import refit_errors

    errs = refit_errors(torch.load(net_file, weights_only=False), {"4": [1]},
                        torch.load(cal))
    la = next(la for la in lat["layers"] if la["name"] == "4")
    assert la["ds"][0]["error"] == pytest.approx(errs[("4", 1)], abs=1e-5)


def test_a_cached_row_measuring_more_serves_a_narrower_request(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import dsconv_cli.latency as core
    from dsconv_cli.torch_backend.latency import layer_table, weight_error

    monkeypatch.setattr(core, "MAX_ENTRY_SPREAD", 1e12)  # the cache, whatever the load
    found = facts()
    full, s1 = layer_table(found, session(), weight_error)
    assert s1.measured == 2
    one, s2 = layer_table(found, session(), weight_error, only=lambda f: [1])
    assert (s2.measured, s2.cached) == (0, 2)
    for a, b in zip(full, one, strict=True):
        assert b.times.ds[1] == a.times.ds[1] and b.times.conv == a.times.conv
    # a multiplier no cached row holds is measured
    _, s3 = layer_table(found, session(), weight_error, only=lambda f: [5])
    assert s3.measured == 2
