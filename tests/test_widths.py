"""Every view rendered at 60, 80, 120 and 200 columns: no line wider than the terminal, no
number split or cut, the key numbers kept at 80, hidden columns named; and the one number
format, CSV/Markdown structure, the CI summary's order and the model table's reasons."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from typing import Any

import pytest
from rich.cells import cell_len

from dsconv_cli.cases import resolve_layer
from dsconv_cli.errors import InputError
from dsconv_cli.fmt import budget_line, fmt_x, sig3
from dsconv_cli.plan import ConvFacts, PlanOptions, decide
from dsconv_cli.presets import get_preset
from dsconv_cli.render import (
    RENDERERS,
    Layout,
    OutputFormat,
    View,
    bind,
    compare_view,
    convert_view,
    layout_for,
    model_view,
    preset_view,
    profile_view,
)
from dsconv_cli.render.formats import _cell_text, fit
from dsconv_cli.render.layout import PRIORITY
from dsconv_cli.render.views import LAYER_COLS
from dsconv_cli.results import (
    BudgetCheck,
    ConvertChoices,
    ConvertLayer,
    ConvertResult,
    ConvertSource,
    ConvertTiming,
    ConvertTotals,
    Measurement,
    ProfileCaseResult,
    Speedup,
    Verification,
    envelope,
)
from dsconv_cli.services.compare import analyse_preset

WIDTHS = (60, 80, 120, 200)

# ----------------------------------------------------------------------------- envelopes


def _m(median: float, iqr: float, gflops: float = 12.5) -> Measurement:
    """A typed measurement with chosen numbers (nothing is timed)."""
    return Measurement(median_ms=median, iqr_ms=iqr, q1_ms=median - iqr / 2,
                       q3_ms=median + iqr / 2, min_ms=median * 0.9, max_ms=median * 1.2,
                       runs=20, calls=200, memory_format="nchw", gflops=gflops, gbps=3.25,
                       bound_ms=median / 4, bound="memory", roofline_fraction=0.25, flag=None)


def layer_env(**values: Any) -> dict[str, Any]:
    v = {"in": 256, "out": 256, "kernel": (3, 3), "hw": (14, 14), **values}
    return envelope([resolve_layer(v).to_result()])


def sweep_env(measured: bool = False) -> dict[str, Any]:
    cases = []
    for cin in (32, 64):
        for k in (3, 5):
            c = resolve_layer({"in": cin, "hw": (56, 56), "kernel": (k, k)},
                              f"separable[in={cin},kernel={k}]").to_result()
            if measured:
                c = dataclasses.replace(
                    c, standard=c.standard.timed(_m(1.2345 * k, 0.05), None),
                    candidate=c.candidate.timed(_m(0.3071, 0.011), None),
                    speedup=Speedup(measured=round(1.2345 * k / 0.3071, 4),
                                    theoretical=c.reduction.macs))
            cases.append(c)
    return envelope(cases)


def measured_layer_env() -> dict[str, Any]:
    """compare --measure's shape, built from typed results without timing."""
    c = resolve_layer({"in": 256, "out": 256, "kernel": (3, 3), "hw": (14, 14)}).to_result()
    parts = {k: p.timed(_m(0.0123 * (i + 1), 0.0004), None)
             for i, (k, p) in enumerate((c.candidate.parts or {}).items())}
    c = dataclasses.replace(
        c, standard=c.standard.timed(_m(2.2551, 0.0612, 102.5), None),
        candidate=dataclasses.replace(c.candidate.timed(_m(0.5499, 0.0201), None), parts=parts),
        speedup=Speedup(measured=4.1009, theoretical=8.6943, memory_format="nchw"))
    return envelope([c])


def preset_env(full: bool = True, per_layer: bool = False) -> dict[str, Any]:
    d = analyse_preset(get_preset("mobilenet_v3_small"), 1, "fp32", per_layer, full)
    return envelope([d])


def preset_measured_env() -> dict[str, Any]:
    """compare --model PRESET --measure's shape (typed, nothing timed)."""
    d = analyse_preset(get_preset("mobilenet_v2"), 1, "fp32", False, False)
    stages = [dataclasses.replace(st, measured=_m(0.4 + i, 0.01).with_share(1 / len(d.stages)))
              for i, st in enumerate(d.stages)]
    return envelope([dataclasses.replace(d, stages=stages, measured=_m(12.3456, 0.2))])


def _convert_layer(f: ConvFacts, o: PlanOptions) -> ConvertLayer:
    d = decide(f, o)
    return ConvertLayer(
        name=f.name, aliases=[], input_shape=list(f.input_shape or []) or None,
        in_channels=f.in_channels, out_channels=f.out_channels, kernel=list(f.kernel),
        stride=list(f.stride), dilation=list(f.dilation), groups=f.groups,
        params_before=d.params_before, params_after=d.params_after if d.convert else None,
        macs_before=d.macs_before, macs_after=d.macs_after if d.convert else None,
        rank=d.rank if d.convert else None, max_rank=f.max_rank, energy=None,
        weight_error=None, status="converted" if d.convert else "skipped",
        reason=None if d.convert else d.reason, note=d.note)


def convert_env() -> dict[str, Any]:
    """convert's shape, with each layer decided by the real plan (no torch)."""
    o = PlanOptions()
    facts = [ConvFacts("stem.0", 3, 32, (3, 3), (2, 2), (1, 1), (1, 1), 1, False,
                       input_shape=(1, 3, 224, 224)),
             ConvFacts("layer1.0.conv2", 64, 64, (3, 3), (1, 1), (1, 1), (1, 1), 1, False,
                       input_shape=(1, 64, 56, 56)),
             ConvFacts("layer1.0.conv3", 64, 256, (1, 1), (1, 1), (0, 0), (1, 1), 1, False,
                       input_shape=(1, 64, 56, 56)),
             ConvFacts("layer4.1.conv2", 512, 512, (3, 3), (1, 1), (1, 1), (1, 1), 1, False,
                       input_shape=(1, 512, 7, 7))]
    layers = [_convert_layer(f, o) for f in facts]
    conv = [la for la in layers if la.status == "converted"]
    before = sum(la.params_before for la in layers)
    after = before - sum(la.params_before - (la.params_after or 0) for la in conv)
    macs_b = sum(la.macs_before or 0 for la in layers)
    macs_a = macs_b - sum((la.macs_before or 0) - (la.macs_after or 0) for la in conv)
    res = ConvertResult(
        name="resnet.pt", source=ConvertSource("resnet.pt", "state_dict"),
        options=ConvertChoices("svd", 1, None, None, 32, False, None), layers=layers,
        totals=ConvertTotals(len(layers), len(conv), len(layers) - len(conv), before, after,
                             before, after, macs_b, macs_a),
        verification=Verification(True, input_shape=[1, 3, 224, 224], seed=0, mode="eval",
                                  max_abs_diff=0.00070512, rel_diff=6.1e-05),
        timing_s=ConvertTiming(0.5, 0.1, 0.2), output_note="Dry run: nothing written.")
    return envelope([res])


def profile_env() -> dict[str, Any]:
    """profile's shape: a failed, a marginal and a passing case (typed, nothing timed)."""
    def case(name: str, verdict: str, median: float,
             failures: list[str] | None = None) -> dict[str, Any]:
        budget = {"max_latency_ms": BudgetCheck(50.0, median, median <= 50.0),
                  "max_params": BudgetCheck(70000, 67840, True)}
        r = ProfileCaseResult(
            name=name, source={"kind": "layer"}, analytic={"params": 67840, "macs": 13296640},
            budget=budget, verdict=verdict, measured=_m(median, median / 20),  # type: ignore[arg-type]
            # the ratio of medians (measured) and the interleaved A/B (estimate) disagree
            speedup=Speedup(measured=4.1009, theoretical=8.6943, estimate=3.9871,
                            ci95=[3.8125, 4.1502], p_value=0.0002, verdict="faster",
                            mde=0.04, rounds=10), failures=failures)
        d: dict[str, Any] = json.loads(json.dumps(envelope([r])["cases"][0]))
        return d

    bad = "max_latency_ms: " + budget_line("max_latency_ms", 159.87039, 50.0).split(": ", 1)[1]
    cases = [case("seed-block", "pass", 0.5499),
             case("mbconv|big\nblock", "fail", 159.87039, [bad]),
             case("edge-case", "marginal", 49.5)]
    return envelope(cases, summary={"cases": 3, "failed": 1, "marginal": 1, "passed": 1})


@pytest.fixture(scope="module")
def model_env() -> dict[str, Any]:
    """compare --model's shape: a real small ResNet counted on meta (torch, no timing)."""
    from dsconv_cli.services.analyse import ModelSource, analyse

    from .models import small_resnet

    net = small_resnet()
    src = ModelSource(arch="tests.models:small_resnet")
    res = analyse(net, src, (1, 3, 32, 32), PlanOptions())
    env = envelope([res])
    env["cases"][0]["depth_shown"] = 3
    return env


VIEWS: dict[str, tuple[View, Any]] = {
    "layer": (compare_view, layer_env),
    "layer-mbconv": (compare_view, lambda: layer_env(kind="mbconv", **{"in": 40, "out": 80})),
    "sweep": (compare_view, sweep_env),
    "sweep-measured": (compare_view, lambda: sweep_env(measured=True)),
    "layer-measured": (compare_view, measured_layer_env),
    "preset": (preset_view, preset_env),
    "preset-layers": (preset_view, lambda: preset_env(False, True)),
    "preset-measured": (preset_view, preset_measured_env),
    "convert": (convert_view, convert_env),
    "profile": (profile_view, profile_env),
}

# ----------------------------------------------------------------------------- helpers


def render(view: View, env: dict[str, Any], width: int, monkeypatch: pytest.MonkeyPatch,
           layout: Layout = Layout(), fmt: OutputFormat = OutputFormat.table) -> str:
    monkeypatch.setenv("DSCONV_WIDTH", str(width))
    buf = io.StringIO()
    RENDERERS[fmt].write(env, bind(view, layout), buf)
    return buf.getvalue()


def token_in(text: str, lines: list[str]) -> bool:
    """``text`` whole on one line, not glued to other characters."""
    pat = re.compile(r"(?<![\w.,])" + re.escape(text) + r"(?![\w,]|\.\d)")
    return any(pat.search(line) for line in lines)


def check_width(view: View, env: dict[str, Any], width: int, out: str,
                layout: Layout = Layout()) -> None:
    lines = out.splitlines()
    too_wide = [ln for ln in lines if cell_len(ln) > width]
    assert not too_wide, f"{len(too_wide)} line(s) over {width}: {too_wide[0]!r}"
    for t in bind(view, layout)(env):
        shown, hidden, _, _ = fit(t, width)
        for row in t.rows:
            for i in shown[1:]:
                cell = str(row[i]).strip()
                if cell:
                    assert token_in(cell, lines), f"{t.columns[i]} {cell!r} not whole"
            name = _cell_text(str(row[0])).strip()
            tails = [tail for ln in lines for tail in re.findall(r"…(\S+(?: \S+)*)", ln)]
            # whole, or abbreviated from the left keeping its end (what tells rows apart)
            assert token_in(name, lines) or any(
                name.endswith(tail) and len(tail) >= 4 for tail in tails), name
        if hidden:
            note = f"hidden at {width} columns: {', '.join(hidden)} (--wide shows all)"
            assert note in " ".join(out.split())  # a note may wrap, at spaces


# ----------------------------------------------------------------------------- widths


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", list(VIEWS))
def test_every_view_fits_every_width(name: str, width: int,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    view, make = VIEWS[name]
    env = make()
    check_width(view, env, width, render(view, env, width, monkeypatch))


def measured_model(env: dict[str, Any]) -> dict[str, Any]:
    """compare --model --measure --vs ds's shape: typed module times and speedups."""
    from dsconv_cli.results import ModelAnalysis, ModuleTime, to_json

    env = json.loads(json.dumps(env))
    case = env["cases"][0]
    for i, la in enumerate(case["layers"]):
        la["measured"] = to_json(ModuleTime(median_ms=0.0123 * (i + 1), share_time=0.05,
                                            roofline_fraction=0.31))
        if la.get("ds"):
            la["speedup"] = to_json(Speedup(measured=1.234, theoretical=8.41))
    case["measured"] = to_json(_m(3.1416, 0.05))
    case["totals"].update(other_ms=0.4321, other_share=0.1375)
    case["vs"] = {"kind": "ds", "source": "the model converted in memory"}
    case["speedup"] = to_json(Speedup(measured=1.71, theoretical=1.31, estimate=1.7,
                                      ci95=[1.62, 1.79], p_value=0.0001, verdict="faster",
                                      mde=0.03, rounds=10))
    assert ModelAnalysis  # the shape is the typed result's (schema-checked below)
    return env


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("measured", [False, True])
def test_model_view_fits_every_width(width: int, measured: bool, model_env: dict[str, Any],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    env = measured_model(model_env) if measured else model_env
    out = render(model_view, env, width, monkeypatch)
    check_width(model_view, env, width, out)
    if measured:
        from .utils import validate_report

        validate_report(env)
        lines = out.splitlines()
        assert width < 80 or token_in("0.432", lines)  # "(other)": outside the modules
        assert width < 200 or "13.8%" in out


@pytest.mark.parametrize("name", [*VIEWS, "model"])
def test_key_numbers_kept_at_80(name: str, model_env: dict[str, Any],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """At 80 columns no priority-1 column (params, MACs, ratios, median, speedup,
    verdict) is hidden, and the JSON's key numbers are in the table as written."""
    view, env = (model_view, model_env) if name == "model" else (VIEWS[name][0],
                                                                 VIEWS[name][1]())
    out = render(view, env, 80, monkeypatch)
    lines = out.splitlines()
    for t in bind(view, Layout())(env):
        _, hidden, _, _ = fit(t, 80)
        assert not [h for h in hidden if PRIORITY.get(h) == 1], (t.title, hidden)
    data = json.loads(json.dumps(env))
    for c in data["cases"]:
        for side in ("standard", "candidate") if len(data["cases"]) == 1 else ("candidate",):
            if side in c and not c.get("skipped"):
                for k in ("params", "macs"):
                    assert token_in(f"{c[side][k]:,}", lines), (side, k)
        if "analytic" in c:
            assert token_in(f"{c['analytic']['params']:,}", lines)
            if c.get("measured"):
                assert token_in(sig3(c["measured"]["median_ms"]), lines)
                # the A/B estimate the gate judges, never the ratio of medians
                assert token_in(fmt_x(c["speedup"]["estimate"]), lines)
                assert not token_in(fmt_x(c["speedup"]["measured"]), lines)
            assert c["verdict"].upper() in out or c["verdict"] in out
        if "layers" in c and "ds_opportunity" in c:
            shown = [la for la in c["layers"] if la["depth"] <= c["depth_shown"]]
            for la in shown:
                assert token_in(f"{la['params']:,}", lines) and token_in(f"{la['macs']:,}",
                                                                        lines)


def test_a_narrow_terminal_hides_columns_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    env = layer_env()
    out = render(compare_view, env, 80, monkeypatch)
    assert "hidden at 80 columns: " in out and "(--wide shows all)" in out
    # the seed numbers are whole; the old output split "115,605,504" over two lines
    assert token_in("115,605,504", out.splitlines()) and token_in("13,296,640",
                                                                  out.splitlines())
    assert "8.69x" in out and "FLOP/B" not in out.split("hidden at")[0]
    wide = render(compare_view, env, 80, monkeypatch, Layout(wide=True))
    assert "hidden at" not in wide and "FLOP/B" in wide and "410.62 kB" in wide
    assert max(cell_len(ln) for ln in wide.splitlines()) > 80  # --wide: wider than 80


def test_columns_pick_and_unknown_is_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    layout = layout_for([compare_view], columns="macs,FLOP/B")
    assert layout.columns == ("MACs", "FLOP/B")
    out = render(compare_view, layer_env(), 80, monkeypatch, layout)
    head = next(ln for ln in out.splitlines() if "MACs" in ln)
    assert head.split() == ["layer", "MACs", "FLOP/B"]
    md = render(compare_view, layer_env(), 80, monkeypatch, layout, OutputFormat.markdown)
    assert "| layer | MACs | FLOP/B |" in md
    csv_out = render(compare_view, layer_env(), 80, monkeypatch, layout, OutputFormat.csv)
    assert csv_out.splitlines()[0] == "layer,depth," + ",".join(LAYER_COLS[1:])  # all
    with pytest.raises(InputError) as e:
        layout_for([compare_view], columns="parms")
    assert "'parms'" in str(e.value) and "did you mean 'params'" in str(e.value)
    with pytest.raises(InputError):
        layout_for([compare_view], columns="reason")  # a model table's column only
    assert layout_for([model_view], columns="reason").columns == ("reason",)


# ----------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("x,text", [(0.00075, "7.50e-04"), (0.000705, "7.05e-04"),
                                    (6.1e-05, "6.10e-05"), (0.2110, "0.211"),
                                    (2821.33, "2,821"), (8.6943, "8.69"), (14.04, "14.0"),
                                    (9.996, "10.0"), (99.96, "100"), (159.87039, "160"),
                                    (0.001, "0.00100"), (0, "0"), (-0.05, "-0.0500")])
def test_three_significant_digits(x: float, text: str) -> None:
    assert sig3(x) == text


def test_failure_lines_read_like_the_tables() -> None:
    from dsconv_cli.gate import budget_failures, check_budget

    checks = check_budget({"max_latency_ms": 50.0, "max_params": 10000, "min_speedup": 2.0,
                           "max_slowdown": 0.1},
                          {"latency_ms": 159.87039, "params": 19584, "speedup": 1.5,
                           "slowdown": 0.153})
    assert budget_failures(checks) == [
        "max_latency_ms: 160 ms > limit 50 ms", "max_params: 19,584 > limit 10,000",
        "min_speedup: 1.50x < limit 2x", "max_slowdown: 15.3% > limit 10%"]
    assert budget_line("max_latency_ms", None, 50) == "max_latency_ms: not measured (limit 50 ms)"


def test_ratios_and_times_in_tables_have_three_digits(monkeypatch: pytest.MonkeyPatch) -> None:
    out = render(compare_view, sweep_env(measured=True), 200, monkeypatch)
    assert "14.0x" in out and "14.04x" not in out and "18.0x" in out  # 14.04, 17.98
    assert " 0.307 " in out and "0.3071" not in out
    out = render(convert_view, convert_env(), 200, monkeypatch)
    assert "max |diff| 7.05e-04, relative 6.10e-05" in out


def test_csv_has_one_header_and_clean_names(monkeypatch: pytest.MonkeyPatch) -> None:
    out = render(compare_view, layer_env(), 80, monkeypatch, fmt=OutputFormat.csv)
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0][:4] == ["layer", "depth", "params", "MACs"]
    names = {r[0]: r for r in rows[1:]}
    assert set(names) == {"standard", "depthwise", "pointwise", "separable total"}
    assert names["depthwise"][1] == "1" and names["standard"][1] == "0"
    assert names["standard"][2] == "589824" and names["separable total"][3] == "13296640"
    assert int(names["depthwise"][3]) + int(names["pointwise"][3]) == 13296640
    assert not any("separable:" in c for r in rows for c in r)  # no title in the rows


def test_markdown_keeps_hierarchy_and_escapes_names(monkeypatch: pytest.MonkeyPatch) -> None:
    md = render(compare_view, layer_env(), 80, monkeypatch, fmt=OutputFormat.markdown)
    assert "| &emsp;depthwise | 2,304 |" in md and "| standard | 589,824 |" in md
    md = render(profile_view, profile_env(), 80, monkeypatch, fmt=OutputFormat.markdown)
    row = next(ln for ln in md.splitlines() if "mbconv" in ln and ln.startswith("| "))
    assert row.startswith("| mbconv\\|big<br>block | layer |")
    assert row.count(" | ") == len(profile_view(profile_env())[0].columns) - 1


def test_ci_summary_verdicts_and_failures_first(monkeypatch: pytest.MonkeyPatch) -> None:
    md = render(profile_view, profile_env(), 80, monkeypatch, fmt=OutputFormat.markdown)
    lines = [ln for ln in md.splitlines() if ln.strip()]
    assert lines[1] == "**1 failed, 1 marginal, 1 passed (3 cases)**"
    assert lines[2] == "- mbconv\\|big<br>block: max_latency_ms: 160 ms > limit 50 ms"
    table = [ln for ln in lines if ln.startswith("| ") and "---" not in ln][1:]
    assert [r.split(" | ")[0] for r in table] == ["| mbconv\\|big<br>block", "| edge-case",
                                                  "| seed-block"]
    assert "marginal |" in table[1] and "FAIL |" in table[0]
    # the counting conventions are folded away at the end, not a paragraph on every run
    assert md.index("<details><summary>Counting conventions</summary>") > md.index("| seed")
    assert "Counting: MACs" not in md.split("<details>")[0]


# ----------------------------------------------------------------------------- model table


def test_model_rows_say_why_not_converted(model_env: dict[str, Any],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (t,) = model_view(model_env)
    col = t.columns.index("reason")
    why = {str(r[0]).strip(): r[col] for r in t.rows}
    layers = {la["name"]: la for la in model_env["cases"][0]["layers"]}
    for name, reason in why.items():
        la = layers.get(name) or layers["(model)"]
        if la.get("ds") or la.get("macs_if_ds") is not None:
            assert reason == ""
        elif la.get("ds_skipped", "").startswith("in_channels"):
            ch = re.findall(r"\d+", la["ds_skipped"])
            assert reason == f"channels {ch[0]} < {ch[1]}"
        elif la["type"] == "Conv2d":
            assert reason and reason != "-"
        else:
            assert reason in ("not a conv", "no eligible conv")
    assert "channels 3 < 32" in why.values()
    out = render(model_view, model_env, 80, monkeypatch)
    assert token_in("channels 3 < 32", out.splitlines()) and "not a conv" in out


def _saving(la: dict[str, Any]) -> int:
    after = la["ds"]["macs"] if la.get("ds") else la.get("macs_if_ds")
    return la["macs"] - after if after is not None else 0


def test_sort_and_top(model_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    layers = [la for la in model_env["cases"][0]["layers"] if 0 < la["depth"] <= 3]
    names = [la["name"] for la in layers]
    leaves = [la for la in layers if not any(n.startswith(la["name"] + ".") for n in names)]
    for how, key in (("saving", _saving), ("macs", lambda la: la["macs"])):
        (t,) = model_view(model_env, Layout(sort=how, top=3))
        got = [str(r[0]) for r in t.rows]
        want = sorted(leaves, key=key, reverse=True)[:3]
        assert got[0] == "(model)" and got[1:] == [la["name"] for la in want]
        assert [key(la) for la in want] == sorted((key(la) for la in leaves),
                                                  reverse=True)[:3]
        assert f"… {len(leaves) - 3} more module(s) (--top 3 shows the first 3, by {how})" \
            in t.notes
    (t,) = model_view(model_env, Layout(top=2))
    assert len(t.rows) == 3 and any("more module(s)" in n for n in t.notes)
    out = render(model_view, model_env, 80, monkeypatch, Layout(sort="saving", top=3))
    assert f"… {len(leaves) - 3} more module(s)" in out


def test_truncated_vs_list_says_how_many_more(model_env: dict[str, Any]) -> None:
    env = json.loads(json.dumps(model_env))
    case = env["cases"][0]
    diffs = [{"name": f"m{i}", "params": [i, i + 1], "macs": [i, i + 2]} for i in range(16)]
    case["vs"] = {"kind": "preset", "source": "other", "totals": {
        "params": 1, "macs": 2, "flops": 4}, "layers": diffs}
    (t,) = model_view(env)
    i = t.notes.index(next(n for n in t.notes if "16 common module(s) differ" in n))
    assert t.notes[i + 10] == "  m9: params 9 -> 10, MACs 9 -> 11"
    assert t.notes[i + 11] == "  … 6 more"


# ----------------------------------------------------------------------------- the options


def test_layout_options_on_the_command_line(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from dsconv_cli.cli import app

    runner = CliRunner()
    seed = ["compare", "--in", "256", "--out", "256", "-k", "3", "--hw", "14"]
    monkeypatch.setenv("DSCONV_WIDTH", "80")
    r = runner.invoke(app, seed)
    assert r.exit_code == 0 and "hidden at 80 columns: activations, bytes, FLOP/B" in r.stdout
    assert max(cell_len(ln) for ln in r.stdout.splitlines()) <= 80
    r = runner.invoke(app, [*seed, "--wide"])
    assert r.exit_code == 0 and "hidden at" not in r.stdout and "410.62 kB" in r.stdout
    r = runner.invoke(app, [*seed, "--columns", "params,verdict"])  # profile's column
    assert r.exit_code == 2 and "no column 'verdict'" in r.stderr
    r = runner.invoke(app, [*seed, "--columns", "parms"])
    assert r.exit_code == 2 and "did you mean 'params'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    r = runner.invoke(app, [*seed, "--format", "markdown", "--columns", "params,MACs"])
    assert r.exit_code == 0 and "| layer | params | MACs |" in r.stdout
    assert "| standard | 589,824 | 115,605,504 |" in r.stdout
    net = ["compare", "--arch", "tests.models:small_resnet", "--input-shape", "1,3,32,32"]
    r = runner.invoke(app, [*net, "--sort", "saving", "--top", "2"])
    assert r.exit_code == 0, r.stderr
    assert "more module(s) (--top 2 shows the first 2, by saving)" in r.stdout
    for bad, needle in ((["--sort", "time"], "time needs --measure"),
                        (["--top", "0"], "--top"), (["--sort", "size"], "--sort")):
        r = runner.invoke(app, [*net, *bad])
        assert r.exit_code == 2 and needle in r.stderr, (bad, r.stderr)
    r = runner.invoke(app, [*seed, "--top", "3"])
    assert r.exit_code == 2 and "--top" in r.stderr
    cfg = tmp_path / "c.yaml"
    cfg.write_text("cases:\n  - name: a\n    layer: {kind: separable, in: 8, hw: 8}\n")
    r = runner.invoke(app, ["profile", str(cfg), "--dry-run", "--columns", "verdct"])
    assert r.exit_code == 2 and "did you mean 'verdict'" in r.stderr
    r = runner.invoke(app, ["profile", str(cfg), "--dry-run", "--columns", "verdict"])
    assert r.exit_code == 0 and "verdict" in r.stdout and "MACs" not in r.stdout.split(
        "Counting")[0]
    r = runner.invoke(app, ["convert", str(tmp_path / "none.pt"), "--columns", "reasn"])
    assert r.exit_code == 2 and "did you mean 'reason'" in r.stderr
