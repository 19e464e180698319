"""Command views: a report envelope -> :class:`Table` objects, one view per command.

A view never writes anything: the format writers in :mod:`.formats` do. So the table, CSV
and Markdown always show the same numbers as the JSON. Numbers read one way everywhere
(:mod:`dsconv_cli.fmt`): integers with separators, times and ratios to 3 significant digits.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from ..fmt import fmt_count, fmt_ms, fmt_x, is_number, listing, sig3
from .layout import Cell, Layout, Table, View, resolve_columns

__all__ = ["COUNTING_NOTE", "Cell", "Layout", "Table", "View", "bind", "compare_view",
           "convert_view", "fmt_bytes", "fmt_int", "layout_for", "model_view", "preset_view",
           "profile_view", "short_reason"]


def fmt_int(n: int | float | None) -> str:
    if n is None:
        return "-"
    return Cell(fmt_count(n), int(n)) if is_number(n) else str(n)  # str: a hand-edited report


def fmt_bytes(n: int | float) -> str:
    if not is_number(n):
        return str(n)
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return Cell(f"{n / scale:.2f} {unit}", int(n))
    return Cell(f"{int(n)} B", int(n))


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else Cell(fmt_x(x), round(x, 4)) if is_number(x) else str(x)


def _num(x: float | None) -> str:
    """A time or a ratio without its unit (the column names it), 3 significant digits."""
    return "-" if x is None else Cell(sig3(x), x)


def _pct(x: float | None) -> str:
    if x is None:
        return "-"
    if not is_number(x):  # a hand-edited report
        return str(x)
    return Cell(f"{100 * x:.1f}%", x)


def fmt_speedup(sp: dict[str, Any] | None, short: bool = False) -> str:
    """``3.21x [3.10, 3.33]``: the A/B estimate and its 95% interval (with the p-value and
    verdict unless ``short``); a plain ratio of medians where no A/B ran."""
    if not sp:
        return "-"
    if sp.get("estimate") is None:
        return fmt_ratio(sp.get("measured"))
    text = f"{fmt_ratio(sp['estimate'])} {_ci_text(sp.get('ci95'))}"
    if short or not all(is_number(sp.get(k)) for k in ("rounds", "p_value", "mde")):
        return text
    return (f"{text} (95% CI, interleaved A/B over {sp['rounds']} rounds: p={sp['p_value']:.2g}, "
            f"{sp.get('verdict')}; smallest detectable change {100 * sp['mde']:.1f}%)")


def _ci_text(ci: Any) -> str:
    """``[3.10, 3.33]``; ``-`` for an interval a hand-edited report dropped or broke."""
    if not (isinstance(ci, list) and len(ci) == 2):
        return "-"
    return f"[{sig3(ci[0])}, {sig3(ci[1])}]"


def _speedup_cells(sp: dict[str, Any] | None) -> list[str]:
    """The speedup (the A/B estimate, else the ratio of medians) and its 95% interval."""
    if not sp:
        return ["-", "-"]
    if sp.get("estimate") is None:
        return [fmt_ratio(sp.get("measured")), "-"]
    return [fmt_ratio(sp["estimate"]), _ci_text(sp.get("ci95"))]


def fmt_shape(s: Iterable[int]) -> str:
    s = list(s)
    return str(s[0]) if len(s) == 2 and s[0] == s[1] else "x".join(str(v) for v in s)


def more(shown: int, total: int) -> list[str]:
    """The line under a cut list: ``… 6 more``."""
    return [f"  … {total - shown} more"] if total > shown else []


# ------------------------------------------------------------------------- layout choices

#: every column each view can show (``--columns`` is checked against these before any work)
COLUMNS: dict[str, tuple[str, ...]] = {}


def bind(view: View, layout: Layout) -> View:
    """``view`` with the reader's layout choices (its tables carry them to the writers)."""

    @functools.wraps(view)
    def bound(env: dict[str, Any]) -> list[Table]:
        tables = view(env, layout)  # type: ignore[call-arg]
        for t in tables:
            t.layout = layout
        return tables

    return bound


def layout_for(views: Iterable[View], wide: bool = False, columns: str | None = None,
               sort: str | None = None, top: int | None = None,
               measured: bool = False) -> Layout:
    """The reader's choices checked against what ``views`` can show: an unknown column, a
    ``--top`` below 1 or ``--sort time`` without times is exit 2, before any work."""
    from ..errors import InputError

    if top is not None and top < 1:
        raise InputError(f"Invalid value for '--top': must be >= 1, got {top}")
    if sort == "time" and not measured:
        raise InputError("Invalid value for '--sort': time needs --measure")
    labels = [c for v in views for c in COLUMNS.get(v.__name__, ())]
    return Layout(wide, resolve_columns(columns, labels), sort, top)


# ------------------------------------------------------------------------- layer comparison

def _measured_cells(m: dict[str, Any] | None) -> list[str]:
    if not m:
        return ["-", "-", "-", "-", "-"]
    roof = m.get("roofline_fraction")
    roof_s = "-" if roof is None else f"{100 * roof:.0f}%" + ("!" if m.get("flag") else "")
    return [_num(m["median_ms"]), _num(m["iqr_ms"]), _num(m["gflops"]), _num(m["gbps"]),
            roof_s]


def _cost_cells(c: dict[str, Any]) -> list[str]:
    return [fmt_int(c["params"]), fmt_int(c["macs"]), fmt_int(c["flops"]),
            fmt_shape(c["output_shape"]), fmt_int(c["activation_elems"]),
            fmt_bytes(c["bytes"]), _num(c["arithmetic_intensity"])]


_QUIET = {"kind": None, "padding": None, "dilation": [1, 1], "groups": 1, "bias": False,
          "depth_multiplier": 1, "batch": 1}


def _describe(inp: dict[str, Any]) -> str:
    """The layer in one line, leaving out what is at its default."""
    shown = [(k, v) for k, v in inp.items() if k not in _QUIET or
             (_QUIET[k] is not None and v != _QUIET[k])]
    return " ".join(f"{k}={fmt_shape(v) if isinstance(v, list) else v}" for k, v in shown)


COUNTING_NOTE = ("Counting: MACs = multiply-accumulates of conv/linear (bias excluded); "
                 "FLOPs = 2 x MACs; bias adds, BN, activations, pooling, residual adds and "
                 "SE/ECA scaling are elementwise ops, counted apart; params include bias and "
                 "BN; bytes = inference memory traffic (BN folded, activations fused); per "
                 "forward of the whole batch.")

#: what a terminal shows (80 columns, one line); the full text is in docs/CONVENTIONS.md
COUNTING_BRIEF = "Counting: MACs exclude bias; elementwise ops, counted apart: docs/CONVENTIONS.md"


def _rt_cell(m: dict[str, Any]) -> str:
    extra = []
    if m.get("compile_s") is not None:
        extra.append(f"compiled in {sig3(m['compile_s'])} s, not timed")
    if m.get("exporter"):
        extra.append(f"{m['exporter']} exporter")
    roof = m.get("roofline_fraction")
    if roof is not None:
        extra.append(f"roofline {100 * roof:.0f}%")
    return f"{fmt_ms(m['median_ms'])} ({m['memory_format']}" + (
        "; " + "; ".join(extra) if extra else "") + ")"


def runtime_notes(std: dict[str, Any], cand: dict[str, Any] | None,
                  by_rt: dict[str, float] | None) -> list[str]:
    """One line per runtime (each side's best layout, its roofline fraction, compile time
    apart), and the fastest runtime and layout of each side."""
    if not std.get("measured_by_runtime"):
        return []
    out = []
    theirs = {m["runtime"]: m for m in (cand or {}).get("measured_by_runtime") or []}
    for m in std["measured_by_runtime"]:
        rt = m["runtime"]
        line = f"Runtime {rt}: standard {_rt_cell(m)}"
        if rt in theirs:
            line += f"; candidate {_rt_cell(theirs[rt])}"
        if by_rt and rt in by_rt:
            line += f" -> {fmt_x(by_rt[rt])}"
        out.append(line)
    fs, fc = std.get("fastest"), (cand or {}).get("fastest")
    if fs and fc:
        out.append(f"Fastest: standard in {fs['runtime']}/{fs['memory_format']}, candidate in "
                   f"{fc['runtime']}/{fc['memory_format']}: "
                   f"{fmt_ratio((by_rt or {}).get('fastest'))} between the fastest sides")
    return out


def int8_notes(label: str, q: dict[str, Any] | None) -> list[str]:
    """``--dtype int8``: one line per side: fp32 and int8 times in ONNX Runtime, int8's
    speedup with its interval, the quantization error; where int8 is not faster, why."""
    if not q:
        return []
    out = [f"int8 {label} ({q['scheme']}): fp32 {fmt_ms(q['fp32_ms'])} -> int8 "
           f"{fmt_ms(q['int8_ms'])}, {fmt_speedup(q['speedup'], short=True)} "
           f"({q['speedup'].get('verdict', '-')}); relative error vs fp32 "
           f"{sig3(q['rel_error'])}"]
    if q.get("why"):
        out.append(f"  {q['why']}")
    return out


LAYER_COLS = ("layer", "params", "MACs", "FLOPs", "output", "activations", "bytes", "FLOP/B")
TIMED_COLS = ("median ms", "IQR ms", "GFLOP/s", "GB/s", "roofline")
CASES_COLS = ("case", "std params", "params", "params x", "std MACs", "MACs", "MACs x",
              "theory x")
CASES_TIMED = ("std ms", "ms", "speedup", "95% CI")
COLUMNS["compare_view"] = (*LAYER_COLS, *TIMED_COLS, *CASES_COLS, *CASES_TIMED)


def _compare_single(case: dict[str, Any], measured: bool) -> Table:
    cols = [*LAYER_COLS, *(TIMED_COLS if measured else ())]
    std, cand = case["standard"], case["candidate"]
    t = Table(f"{case['name']}: {_describe(case['input'])}", cols,
              conventions=COUNTING_NOTE, brief=COUNTING_BRIEF)

    def add(label: str, c: dict[str, Any], style: str | None = None, depth: int = 0) -> None:
        row = [label, *_cost_cells(c)]
        if measured:
            row += _measured_cells(c.get("measured"))
        t.add(row, style, depth)

    plain = std["kind"] in ("conv", "grouped conv")
    add("standard" if plain else f"standard ({std['kind']})", std)
    for name, part in cand.get("parts", {}).items():
        add(name, part, "dim", depth=1)
    add(f"{cand['kind']} total", cand, "bold")
    red = case["reduction"]
    t.notes.append(f"Reduction (standard / {cand['kind']}): params {fmt_ratio(red['params'])}, "
                   f"MACs {fmt_ratio(red['macs'])}")
    th = case.get("theory")
    if th:
        red_th = th["reduction"]
        change = (f"{fmt_x(red_th)} fewer params and MACs" if red_th > 1.0005 else
                  f"{fmt_x(1 / red_th)} more params and MACs (the DS form is larger)"
                  if red_th < 0.9995 else "the same params and MACs")
        t.notes.append(f"Theory: {th['formula']} = {sig3(th['ratio'])} -> {change}")
    sp = case.get("speedup")
    if sp:
        t.notes.append(f"Measured speedup: {fmt_speedup(sp)}"
                       + ("! (implausible, see below)" if sp.get("flag") else "")
                       + f" (theoretical {fmt_ratio(sp['theoretical'])}); best layout: "
                       f"{sp.get('memory_format', '-')}")
    if case.get("why"):
        t.notes.append(f"Why: {case['why']}")
    t.notes.extend(runtime_notes(std, cand, case.get("speedup_by_runtime")))
    t.notes.extend(int8_notes("standard", std.get("int8")))
    for name, part in cand.get("parts", {}).items():
        t.notes.extend(int8_notes(name, part.get("int8")))
    t.notes.extend(int8_notes(f"{cand['kind']} total", cand.get("int8")))
    for w in case.get("warnings", []):
        t.notes.append(f"Note: {w}")
    return t


def compare_view(env: dict[str, Any], layout: Layout = Layout()) -> list[Table]:
    cases = env["cases"]
    measured = any("measured" in c["standard"] or c.get("skipped") for c in cases)
    if len(cases) == 1 and not cases[0].get("skipped"):
        return [_compare_single(cases[0], measured)]
    cols = [*CASES_COLS, *(CASES_TIMED if measured else ())]
    t = Table(f"{len(cases)} cases", cols,
              conventions=COUNTING_NOTE, brief=COUNTING_BRIEF)
    for c in cases:
        if c.get("skipped"):
            t.add([c["name"], *(["-"] * (len(cols) - 3)), "skipped", "-"])
            t.notes.append(f"{c['name']}: skipped: {c['skipped']}")
            continue
        std, cand, red = c["standard"], c["candidate"], c["reduction"]
        th = c.get("theory")
        row = [c["name"], fmt_int(std["params"]), fmt_int(cand["params"]),
               fmt_ratio(red["params"]), fmt_int(std["macs"]), fmt_int(cand["macs"]),
               fmt_ratio(red["macs"]), fmt_ratio(th["reduction"] if th else None)]
        if measured:
            sm, cm = std.get("measured"), cand.get("measured")
            row += [_num(sm["median_ms"]) if sm else "-", _num(cm["median_ms"]) if cm else "-",
                    *_speedup_cells(c.get("speedup"))]
        t.add(row)
    return [t]


# ------------------------------------------------------------------------- presets

PRESET_COLS = ("stage", "blocks", "output", "params", "MACs", "MAC share")
PRESET_TIMED = ("median ms", "time share")
PRESET_FULL = ("full-conv params", "full-conv MACs", "MACs x")
PRESET_LAYER_COLS = ("stage", "layer", "kind", "output", "params", "MACs")
COLUMNS["preset_view"] = (*PRESET_COLS, *PRESET_TIMED, *PRESET_FULL, *PRESET_LAYER_COLS)


def preset_view(env: dict[str, Any], layout: Layout = Layout()) -> list[Table]:
    out = []
    for case in env["cases"]:
        m = case["model"]
        fc = case.get("full_conv")
        measured = "measured" in case
        cols = [*PRESET_COLS, *(PRESET_TIMED if measured else ()), *(PRESET_FULL if fc else ())]
        t = Table(f"{m['name']} (width {m['width']}, {m['resolution']}x{m['resolution']}, "
                  f"{m['classes']} classes, batch {m['batch']}, {m['dtype']})", cols,
                  conventions=COUNTING_NOTE, brief=COUNTING_BRIEF)
        fc_stages = {s["stage"]: s for s in fc["stages"]} if fc else {}
        for s in case["stages"]:
            row = [s["stage"], str(s["blocks"]), fmt_shape(s["output_shape"]),
                   fmt_int(s["params"]), fmt_int(s["macs"]), _pct(s["share_macs"])]
            if measured:
                sm = s["measured"]
                row += [_num(sm["median_ms"]), _pct(sm["share_time"])]
            if fc:
                f = fc_stages[s["stage"]]
                row += [fmt_int(f["params"]), fmt_int(f["macs"]),
                        fmt_ratio(f["macs"] / s["macs"] if s["macs"] else None)]
            t.add(row)
        tot = case["totals"]
        row = ["total", str(sum(s["blocks"] for s in case["stages"])),
               fmt_shape(tot["output_shape"]), fmt_int(tot["params"]), fmt_int(tot["macs"]),
               "100.0%"]
        if measured:
            row += [_num(case["measured"]["median_ms"]), "(whole network)"]
        if fc:
            ft = fc["totals"]
            row += [fmt_int(ft["params"]), fmt_int(ft["macs"]),
                    fmt_ratio(ft["macs"] / tot["macs"])]
        t.add(row, "bold")
        t.notes.extend(line.replace("standard", "network") for line in runtime_notes(
            case, None, None))
        if measured:
            t.notes.append("Time share: each stage's median over the sum of the stage medians "
                           "(stages timed on their own).")
        out.append(t)
        if case.get("layers"):
            lt = Table(f"{m['name']}: layers", list(PRESET_LAYER_COLS))
            for la in case["layers"]:
                lt.add([la["stage"], la["name"], la["kind"], fmt_shape(la["output_shape"]),
                        fmt_int(la["params"]), fmt_int(la["macs"])])
            out.append(lt)
    return out


# ------------------------------------------------------------------------- convert

def _pair(v: list[int] | None) -> str:
    return "-" if v is None else fmt_shape(v)


#: plan.py's reasons, shortened for a table cell (the JSON keeps the whole sentence)
_SHORT_REASONS = (
    (r"^in_channels (\d+) < --min-channels (\d+)", r"channels \1 < \2"),
    (r"^already depthwise", "already depthwise"),
    (r"^1x1 conv", "1x1 (pointwise)"),
    (r"^not matched by --include", "not in --include"),
    (r"^excluded by --exclude (.*)$", r"--exclude \1"),
    (r"^DS form.* not smaller", "DS not smaller"),
    (r"^weight error (\S+) > --max-error (\S+)", r"error \1 > \2"),
    (r"overrides Conv2d\.forward", "custom forward"),
    (r"^DS (\S+) ms vs conv (\S+) ms: the DS form is not measurably", r"slower: DS \1 vs \2 ms"),
    (r"^DS (\S+) ms vs conv (\S+) ms: not needed", r"not needed: DS \1 vs \2 ms"),
)


def short_reason(reason: str | None) -> str:
    """Why a conv is not converted, in a few words: ``channels 3 < 32`` for
    ``in_channels 3 < --min-channels 32`` (the JSON keeps the sentence)."""
    if not reason:
        return "-"
    for pattern, short in _SHORT_REASONS:
        m = re.search(pattern, reason)
        if m:
            return m.expand(short)
    head = reason.split(" (")[0].split(";")[0]
    return head if len(head) <= 32 else head[:31] + "…"


CONVERT_COLS = ("layer", "input", "in>out", "kernel", "stride", "dil", "params before",
                "params after", "MACs before", "MACs after", "rank/max", "energy",
                "weight err", "status", "reason")
LATENCY_COLS = ("conv ms", "conv 95%", "DS ms", "DS 95%", "choice", "calls")
COLUMNS["convert_view"] = (*CONVERT_COLS, *LATENCY_COLS)


def _convert_row(la: dict[str, Any]) -> list[str]:
    rank = "-" if la["rank"] is None else f"{la['rank']}/{la['max_rank']}"
    name = la["name"] + (f" (= {', '.join(la['aliases'])})" if la["aliases"] else "")
    converted = la["status"] == "converted"
    return [
        name, _pair(la["input_shape"]), f"{la['in_channels']}>{la['out_channels']}",
        _pair(la["kernel"]), _pair(la["stride"]), _pair(la["dilation"]),
        fmt_int(la["params_before"]), fmt_int(la["params_after"]),
        fmt_int(la["macs_before"]), fmt_int(la["macs_after"]), rank,
        _num(la["energy"]), _num(la["weight_error"]), la["status"],
        "" if converted else short_reason(la["reason"]),
    ]


def _convert_notes(case: dict[str, Any]) -> list[str]:
    notes = []
    tot = case["totals"]
    if tot["converted"] == 0:
        notes.append("No eligible layer: the model is unchanged.")
    if tot.get("model_macs_before") is not None:
        notes.append(f"Whole model MACs (every op counted, as compare --model): "
                     f"{fmt_int(tot['model_macs_before'])} -> "
                     f"{fmt_int(tot['model_macs_after'])}")
    notes.append(
        f"Converted {tot['converted']} of {tot['layers']} Conv2d layers; model params "
        f"{fmt_int(tot['model_params_before'])} -> {fmt_int(tot['model_params_after'])}"
        + (f"; conv MACs {fmt_int(tot['conv_macs_before'])} -> "
           f"{fmt_int(tot['conv_macs_after'])}" if tot["conv_macs_before"] is not None
           else ""))
    for key in ("fidelity", "fidelity_on_calibration"):
        fid = case.get(key)
        if fid:
            agree = "-" if fid["agreement"] is None else f"{100 * fid['agreement']:.2f}%"
            if fid.get("agreement_meaningful") is False:
                agree += (f" (not meaningful: the original puts "
                          f"{100 * fid['majority_class_share']:.0f}% in one class)")
            err = fid["rel_output_error"]
            notes.append(f"Fidelity on the {fid['on']} inputs (n={fid['n']}): top-1 "
                         f"agreement {agree}, relative output error "
                         f"{'not finite' if err is None else sig3(err)}")
    cal = [la for la in case["layers"] if la.get("output_error")]
    if cal:
        notes.append("Calibrated (output error on the calibration inputs, SVD -> refit): "
                     + "; ".join(f"{la['name']} {sig3(la['output_error']['svd'])} -> "
                                 f"{sig3(la['output_error']['calibrated'])}"
                                 for la in cal[:8])
                     + (f"; … {len(cal) - 8} more" if len(cal) > 8 else ""))
    dist = case.get("distillation")
    if dist:
        notes.append(f"Distilled {dist['steps']} steps in {dist['seconds']:.1f} s: output error "
                     f"on the calibration inputs {sig3(dist['rel_output_error_before'])} -> "
                     f"{sig3(dist['rel_output_error_after'])}"
                     + ("" if dist["kept"] else " (no gain: the refit weights kept)")
                     + "; loss " + ", ".join(f"{sig3(v)} @{s}" for s, v in dist["loss"]))
    v = case["verification"]
    if v["verified"]:
        notes.append(f"Output check (eval, seed {v['seed']}, input "
                     f"{fmt_shape(v['input_shape'])}): max |diff| "
                     f"{sig3(v['max_abs_diff'])}, relative {sig3(v['rel_diff'])}")
    else:
        notes.append(f"Output check: {v['note']}.")
    ex = case.get("export")
    if ex:
        dims = ex.get("dynamic_dims") or {}
        batches = ex.get("checked_batches") or [ex["input_shape"][0]]
        shape = ("dynamic " + ", ".join(f"{n} (dim {i})" for n, i in dims.items())
                 if dims else "static shape")
        notes.append(f"Export ({ex['format']}, {ex['dtype']}, {fmt_int(ex['bytes'])} bytes, "
                     f"{shape}): checked at batch {' and '.join(map(str, batches))} against "
                     f"the converted model, max |diff| {sig3(ex['max_abs_diff'])} (allowed "
                     f"{sig3(ex['tolerance'])})" + (
                         f", int8 relative error {sig3(ex['int8']['rel_error'])}"
                         if ex.get("int8") else ""))
        if ex.get("note"):
            notes.append(f"  {ex['note']}")
    notes.extend(_int8_convert_notes(case))
    notes.extend(f"Warning: {w}" for w in case.get("warnings") or ())
    notes.append(case["output_note"])
    return notes


def _int8_convert_notes(case: dict[str, Any]) -> list[str]:
    """--quantize int8: fidelity against the original fp32 model beside the converted fp32
    model's; sizes and ORT latencies of the three graphs."""
    q = case.get("int8")
    if not q:
        return []

    def fid(f: dict[str, Any] | None) -> str:
        if not f:
            return "-"
        agree = "-" if f["agreement"] is None else f"{100 * f['agreement']:.2f}%"
        return f"agreement {agree}, error {sig3(f['rel_output_error'])}"

    f8 = q["fidelity"]
    fixes = [f"{q['equalised_pairs']} pair(s) equalised"] if q["equalised_pairs"] else []
    fixes += ["kept in fp32: " + ", ".join(n["node"] for n in q["fp32_nodes"])
              ] if q["fp32_nodes"] else []
    out = [f"int8 ({q['scheme']}, {q['format']}, calibrated on {q['calibration_inputs']} "
           f"inputs{'; ' + '; '.join(fixes) if fixes else ''}) vs the original fp32 on the "
           f"{f8['on']} inputs (n={f8['n']}): {fid(f8)}; converted fp32: "
           f"{fid(q.get('fidelity_fp32'))}"]
    names = {"original_fp32": "original fp32", "converted_fp32": "converted fp32",
             "converted_int8": "converted int8"}
    out.append("ONNX Runtime: " + "; ".join(
        f"{label} {fmt_ms(q['latency_ms'][k]['median_ms'])} ({fmt_bytes(q['bytes'][k])})"
        for k, label in names.items()))
    sp = q["speedups"]
    out.append(f"Speedups: int8 vs converted fp32 "
               f"{fmt_speedup(sp['converted_int8_vs_converted_fp32'], short=True)}; int8 vs "
               f"original {fmt_speedup(sp['converted_int8_vs_original_fp32'], short=True)}")
    if q.get("why"):
        out.append(f"  {q['why']}")
    return out


def convert_view(env: dict[str, Any], layout: Layout = Layout()) -> list[Table]:
    out = []
    for case in env["cases"]:
        t = Table(f"convert {case['name']} (init {case['options']['init']})",
                  list(CONVERT_COLS))
        for la in case["layers"]:
            t.add(_convert_row(la), None if la["status"] == "converted" else "dim")
            if la.get("note"):
                t.notes.append(f"{la['name']}: {la['note']}")
        t.notes.extend(_convert_notes(case))
        out.append(t)
        if case.get("latency"):
            out.append(_latency_table(case["latency"]))
    return out


def _interval(ci: list[float] | None) -> str:
    return "-" if not ci else f"[{sig3(ci[0])}, {sig3(ci[1])}]"


def _latency_table(lat: dict[str, Any]) -> Table:
    """``--target-latency``: each layer's conv and DS times (the chosen form, else the
    fastest), with the interval of each median; the rounds and the verdict under it."""
    t = Table(f"latency in {lat['runtime']} ({lat['device']}, {lat['threads']} threads, "
              f"{lat['memory_format']}, {lat['dtype']}): target {lat['target']:g} of the "
              "original's", ["layer", *LATENCY_COLS])
    for la in lat["layers"]:
        m = la["chosen"]
        forms = {f["multiplier"]: f for f in la["ds"]}
        ds = forms.get(m) or min(la["ds"], key=lambda f: f["median_ms"])
        choice = f"m={m}" if m is not None else "keep conv"
        t.add([la["name"], _num(la["conv"]["median_ms"]), _interval(la["conv"]["ci95"]),
               _num(ds["median_ms"]), _interval(ds["ci95"]),
               choice if m is not None else f"{choice} (m={ds['multiplier']} timed)",
               str(la["calls"])], None if m is not None else "dim")
        if la.get("flag"):
            t.notes.append(f"{la['name']}: {la['flag']}")
    for i, r in enumerate(lat["rounds"], 1):
        line = f"Round {i}: budget {r['budget']:.3f}, predicted {r['predicted']:.3f}"
        if r.get("measured") is not None:
            line += (f", measured {r['measured']:.3f} {_interval(r['ci95'])} (p "
                     f"{r['p_value']:.2g}; original {fmt_ms(r['original_ms'])}, converted "
                     f"{fmt_ms(r['converted_ms'])}, {r['converted_layers']} layer(s) "
                     "converted)")
        t.notes.append(line)
    t.notes.extend(lat.get("notes") or ())
    c = lat["cache"]
    t.notes.append(f"Layer times: {c['measured']} shape(s) measured, {c['cached']} from the "
                   f"cache ({c['path']}); planning and checking took {lat['seconds']:.1f} s")
    pick = lat.get("chosen_round")
    r = lat["rounds"][pick - 1] if pick else None
    measured = (f"{r['measured']:.3f} {_interval(r['ci95'])}"
                if r and r.get("measured") is not None else "not measured")
    t.summary = (f"Latency ratio (converted / original, 95% CI): {measured}; target "
                 f"{lat['target']:g}: {lat['verdict']}")
    return t


# ------------------------------------------------------------------------- profile

PROFILE_COLS = ("case", "source", "params", "MACs")
#: "speedup" is the interleaved A/B estimate a budget judges, beside its 95% interval and
#: the standard (or original) side's median; never a ratio of medians taken apart
PROFILE_TIMED = ("median ms", "std ms", "IQR ms", "speedup", "95% CI", "theory x",
                 "roofline", "baseline")
PROFILE_END = ("budget", "verdict")
COLUMNS["profile_view"] = (*PROFILE_COLS, *PROFILE_TIMED, "vs", *PROFILE_END)
_FAILED = ("fail", "error")


def _is_marginal(c: dict[str, Any]) -> bool:
    return c.get("verdict") == "marginal" or bool(c.get("marginal"))


def verdict_counts(cases: list[dict[str, Any]]) -> str:
    """Verdicts first: ``1 failed, 0 marginal, 2 passed (3 cases)``."""
    failed = sum(c.get("verdict") in _FAILED for c in cases)
    marginal = sum(_is_marginal(c) and c.get("verdict") not in _FAILED for c in cases)
    planned = sum(c.get("verdict") == "planned" for c in cases)
    passed = len(cases) - failed - marginal - planned
    n = f"{len(cases)} case{'s' if len(cases) != 1 else ''}"
    if planned:
        return f"{failed} failed, {planned} planned ({n}; dry run: analytic budgets only)"
    return f"{failed} failed, {marginal} marginal, {passed} passed ({n})"


def _profile_row(c: dict[str, Any], planned: bool, has_vs: bool) -> list[str]:
    a = c["analytic"]
    row = [c["name"], str(c["source"].get("kind", "-")), fmt_int(a.get("params")),
           fmt_int(a.get("macs"))]
    if not planned:
        m = c.get("measured")
        sp = c.get("speedup") or {}
        b = c.get("baseline")
        std = c.get("standard_measured") or (c.get("original") or {}).get("measured")
        ab = sp if sp.get("estimate") is not None else None  # the A/B, or nothing
        row += [_num(m["median_ms"]) if m else "-", _num(std["median_ms"]) if std else "-",
                _num(m["iqr_ms"]) if m else "-", *_speedup_cells(ab),
                fmt_ratio(sp.get("theoretical")),
                _pct(m.get("roofline_fraction")) if m else "-",
                (f"{100 * b['change']:+.1f}% {b['status']}" if "change" in b
                 else b["status"]) + (" (cross-env)" if b.get("cross_environment") else "")
                if b else "-"]
        if has_vs:
            vs = c.get("vs")
            row += [f"{vs['source']}: {fmt_speedup(vs['speedup'], short=True)} "
                    f"{vs['speedup'].get('verdict', '')}".strip() if vs else "-"]
    budget = c.get("budget", {})
    ok = sum(v["ok"] for v in budget.values())
    pending = c.get("budget_pending", [])
    btxt = f"{ok}/{len(budget)} met" if budget else "-"
    if pending:
        btxt += f" ({', '.join(pending)} need a run)"
    verdict = "marginal" if _is_marginal(c) and c["verdict"] == "pass" else c["verdict"]
    return row + [btxt, verdict.upper() if verdict in _FAILED else verdict]


def profile_view(env: dict[str, Any], layout: Layout = Layout()) -> list[Table]:
    """Verdict counts and failures first, then one row per case (failed, then marginal,
    then the rest, each in run order)."""
    cases = env["cases"]
    planned = bool(env.get("dry_run")) or (
        bool(cases) and all(c["verdict"] == "planned" for c in cases))
    has_vs = any(c.get("vs") for c in cases)
    cols = [*PROFILE_COLS, *(() if planned else PROFILE_TIMED),
            *(("vs",) if has_vs and not planned else ()), *PROFILE_END]
    t = Table("dsconv profile" + (" (dry run: analytic only)" if planned else ""), cols,
              conventions=COUNTING_NOTE, brief=COUNTING_BRIEF)
    t.summary = verdict_counts(cases)
    gate = _gate_alerts(env)
    if env.get("missing_shards"):
        t.summary = "INCOMPLETE (a shard never reported): " + t.summary
    elif env.get("missing_cases"):
        t.summary = (f"INCOMPLETE (never ran: {listing(env['missing_cases'], 5)}): "
                     + t.summary)
    t.notes.extend(f"warning: {w}" for w in env.get("warnings") or [])

    def rank(c: dict[str, Any]) -> int:
        return 0 if c["verdict"] in _FAILED else 1 if _is_marginal(c) else 2

    for c in sorted(cases, key=rank):
        bad = c["verdict"] in _FAILED
        t.add(_profile_row(c, planned, has_vs), "bold red" if bad else None)
        t.alerts.extend(f"{c['name']}: {f}" for f in c.get("failures", []))
        if c.get("error"):
            t.alerts.append(f"{c['name']}: could not run: {c['error']}")
        if c["source"].get("format"):
            t.notes.append(f"{c['name']}: {c['source']['path']} ({c['source']['format']})")
        t.notes.extend(f"{c['name']}: {note}" for note in _case_notes(c))
    t.alerts[:0] = gate
    return [t]


def _case_notes(c: dict[str, Any]) -> list[str]:
    """What a reviewer must read beside a case's figures: its noisy or implausible
    measurements, a baseline comparison too noisy to call, nothing to convert."""
    out = list(c.get("flags") or [])
    b = c.get("baseline") or {}
    if b.get("noise"):
        out.append(f"baseline: {b['noise']}")
    note = (c.get("conversion") or {}).get("note")
    if note:
        out.append(note)
    return out


def _gate_alerts(env: dict[str, Any]) -> list[str]:
    """What fails a run or a merge beyond its cases, first: shards that never reported or
    failed, runtimes that could not run."""
    shards = env.get("shards") or []
    count = shards[0]["shard"]["count"] if shards else "?"
    out = [f"shard {i}/{count} never reported" for i in env.get("missing_shards") or []]
    out += [f"shard {s['shard']['index']}/{s['shard']['count']} exited with status "
            f"{s['exit_status']}" for s in shards if s.get("exit_status")]
    if env.get("missing_cases"):
        out.append(f"never ran (a shard was interrupted): {listing(env['missing_cases'], 5)}")
    out += [f"runtime {rt}: {why}" for rt, why in (env.get("runtime_errors") or {}).items()]
    return out


# ------------------------------------------------------------------------- a whole model

MODEL_COLS = ("module", "type", "output", "params", "MACs", "MAC share", "bytes", "FLOP/B")
#: "ms" includes the modules a row calls, "self ms" excludes them (means of the same forwards)
MODEL_TIMED = ("ms", "self ms", "time share", "roofline")
MODEL_VS = ("speedup", "theory x")
MODEL_DS = ("DS params", "DS MACs", "DS MACs x", "reason")
COLUMNS["model_view"] = (*MODEL_COLS, *MODEL_TIMED, *MODEL_VS, *MODEL_DS)
#: ``--sort`` keys: the largest first
SORTS = ("saving", "macs", "time")


def _ds_after(la: dict[str, Any]) -> tuple[int | None, int | None]:
    """(params, MACs) of this row with its eligible convs converted, or (None, None)."""
    ds = la.get("ds")
    if ds:
        return ds["params"], ds["macs"]
    if la.get("macs_if_ds") is not None:  # a module holding eligible convs
        return la["params_if_ds"], la["macs_if_ds"]
    return None, None


def _ds_cells(la: dict[str, Any], parents: set[str]) -> list[str]:
    params, macs = _ds_after(la)
    if params is not None:
        return [fmt_int(params), fmt_int(macs),
                fmt_ratio(la["macs"] / macs if macs else None), ""]
    if la.get("ds_skipped"):
        why = short_reason(la["ds_skipped"])
    elif la["name"] in parents or la["depth"] == 0:
        why = "no eligible conv"
    else:
        why = "not a conv"
    return ["-", "-", "-", why]


def _sort_key(how: str) -> Any:
    def key(la: dict[str, Any]) -> float:
        if how == "macs":
            return la["macs"]
        if how == "time":
            mt = la.get("measured")
            return mt.get("inclusive_ms", mt["median_ms"]) if mt else -1.0
        macs = _ds_after(la)[1]
        return la["macs"] - macs if macs is not None else 0

    return key


def _parents(names: Iterable[str]) -> set[str]:
    """Every module name that has a child among ``names`` (dotted paths)."""
    out: set[str] = set()
    for n in names:
        parts = n.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return out


def _module_rows(case: dict[str, Any], layout: Layout) -> tuple[list[dict[str, Any]], int]:
    """The rows shown (to ``depth_shown``; with ``--sort``, the innermost shown modules,
    largest first, under the model row; ``--top`` keeps the first N) and how many more
    there were."""
    depth = case.get("depth_shown", 3)
    rows = [la for la in case["layers"] if la["depth"] <= depth]
    if layout.sort:
        shown_parents = _parents(la["name"] for la in rows)
        inner = [la for la in rows if la["depth"] > 0 and la["name"] not in shown_parents]
        top = [la for la in rows if la["depth"] == 0]
        rows = top + sorted(inner, key=_sort_key(layout.sort), reverse=True)
    if layout.top is None:
        return rows, 0
    head = [la for la in rows if la["depth"] == 0]
    body = [la for la in rows if la["depth"] > 0]
    return head + body[:layout.top], max(0, len(body) - layout.top)


def _time_cells(la: dict[str, Any]) -> list[str]:
    """ms (inclusive), self ms, time share (of the hooked whole), roofline; a row hooks
    could not time says why (``fused``, the runtime) instead of a share."""
    mt = la.get("measured")
    if not mt:
        why = la.get("unattributed")
        return [why.split(":")[0] if why else "-", "-", "-", "-"]
    own = mt.get("self_ms") if la["depth"] else None  # the model's own is "(other)"
    return [_num(mt.get("inclusive_ms", mt["median_ms"])), _num(own), _pct(mt["share_time"]),
            _pct(mt["roofline_fraction"])]


def _model_table(case: dict[str, Any], layout: Layout) -> Table:
    m = case["model"]
    measured, has_vs = "measured" in case, bool(case.get("vs"))
    cols = [*MODEL_COLS, *(MODEL_TIMED if measured else ()), *(MODEL_VS if has_vs else ()),
            *MODEL_DS]
    t = Table(f"{case['name']} (input {fmt_shape(m['input_shape'])}, counted on "
              f"{m['counted_on'].split(' ')[0]})", cols, conventions=MODEL_COUNTING_NOTE,
              brief=MODEL_COUNTING_BRIEF)
    parents = _parents(la["name"] for la in case["layers"])
    rows, rest = _module_rows(case, layout)
    for la in rows:
        row = [la["name"] if la["depth"] else "(model)", la["type"],
               fmt_shape(la["output_shape"] or []), fmt_int(la["params"]),
               fmt_int(la["macs"]), _pct(la["share_macs"]), fmt_bytes(la["bytes"]),
               _num(la["flop_per_byte"])]
        if measured:
            row += _time_cells(la)
        if has_vs:
            sp = la.get("speedup")
            row += ([fmt_ratio(sp["measured"]), fmt_ratio(sp["theoretical"])] if sp
                    else ["-", "-"])
        row += _ds_cells(la, parents)
        flat = layout.sort is not None
        t.add(row, "bold" if la["depth"] == 0 else None,
              0 if flat else max(0, la["depth"] - 1))
    if rest:
        t.notes.append(f"… {rest} more module(s) (--top {layout.top} shows the first "
                       f"{layout.top}{', by ' + layout.sort if layout.sort else ''})")
    tot = case["totals"]
    if measured and tot.get("other_ms") is not None:
        row = ["(other)", *[""] * 7,  # outside the top-level modules (see the note)
               _num(tot["other_ms"]), _num(tot["other_ms"]), _pct(tot.get("other_share")), ""]
        t.add(row + [""] * (len(cols) - len(row)), "dim")
    return t


def model_view(env: dict[str, Any], layout: Layout = Layout()) -> list[Table]:
    """A saved model or an architecture: per-module counts (to ``depth_shown``), the DS form
    of every eligible conv (or why not), the ops that could not be counted, and timings if
    measured."""
    out = []
    for case in env["cases"]:
        t = _model_table(case, layout)
        t.notes.extend(_model_notes(case))
        out.append(t)
    return out


def _vs_notes(case: dict[str, Any]) -> list[str]:
    notes = []
    vs, sp = case.get("vs"), case.get("speedup")
    if vs and vs.get("totals"):
        vt, diffs = vs["totals"], vs.get("layers", [])
        notes.append(f"--vs {vs['source']}: {fmt_int(vt['params'])} params, "
                     f"{fmt_int(vt['macs'])} MACs; {len(diffs)} common "
                     f"module(s) differ, {vs.get('only_in_model', 0)} only in the model, "
                     f"{vs.get('only_in_vs', 0)} only in --vs.")
        for d in diffs[:10]:
            notes.append(f"  {d['name'] or '(model)'}: params {fmt_int(d['params'][0])} "
                         f"-> {fmt_int(d['params'][1])}, MACs {fmt_int(d['macs'][0])} -> "
                         f"{fmt_int(d['macs'][1])}")
        notes.extend(more(10, len(diffs)))
    if sp and vs:
        if vs["kind"] == "ds":
            notes.append(f"Measured speedup of the DS form (time now / time converted): "
                         f"{fmt_speedup(sp)}; theoretical {fmt_ratio(sp['theoretical'])} "
                         "(MACs now / MACs converted).")
            notes.extend(f"  in {o['runtime']}: {fmt_speedup(o, short=True)} ({o['verdict']})"
                         for o in case.get("speedup_by_runtime") or ())
            if any(la.get("speedup", {}).get("estimate") is not None
                   for la in case["layers"] if la.get("ds")):
                notes.append("Per-layer speedups of converted convs: the latency table "
                             "(conv and DS form alone at the layer's input, interleaved), "
                             "as convert --target-latency uses.")
        else:
            notes.append(f"Measured speedup over --vs {vs['source']} (time vs / time "
                         f"model): {fmt_speedup(sp)}; MACs ratio "
                         f"{fmt_ratio(sp['theoretical'])}.")
    return notes


def _model_notes(case: dict[str, Any]) -> list[str]:
    m, tot, opp = case["model"], case["totals"], case["ds_opportunity"]
    notes = [
        f"Totals: {fmt_int(tot['params'])} params, {fmt_int(tot['macs'])} MACs, "
        f"{fmt_int(tot['elementwise_ops'])} elementwise ops, {fmt_bytes(tot['bytes'])} "
        f"moved; output {fmt_shape(tot['output_shape'])}.",
        f"DS opportunity (depth multiplier {opp['depth_multiplier']}, "
        f"{opp['eligible_convs']} eligible conv(s)): MACs {fmt_int(opp['macs_now'])} -> "
        f"{fmt_int(opp['macs_after'])} ({fmt_ratio(opp['reduction_macs'])}), params "
        f"{fmt_int(opp['params_now'])} -> {fmt_int(opp['params_after'])} "
        f"({fmt_ratio(opp['reduction_params'])})."]
    notes.extend(runtime_notes(case, None, None))
    if "measured" in case:
        mm = case["measured"]
        notes.append(f"Whole model: {fmt_ms(mm['median_ms'])} median "
                     f"({mm['memory_format']}); per-module times: "
                     f"{case.get('attribution', '-')}.")
        if tot.get("attributed_ms") is not None:
            notes.append(f"Hooked whole: {fmt_ms(tot['attributed_ms'])} per forward, "
                         f"{fmt_ms(tot['unhooked_ms'])} without hooks in the same runs "
                         f"(hooks add {100 * (tot['hook_overhead'] or 0):+.1f}%).")
    notes.extend(int8_notes("model", case.get("int8")))
    notes.extend(_vs_notes(case))
    if not m["counted_on"].startswith("meta"):
        notes.append(f"Counted on {m['counted_on']}.")
    unc = case["uncounted"]
    if unc:
        notes.append("Uncounted ops (not in MACs or elementwise ops): " + "; ".join(
            f"{u['op']} x{u['calls']} in {', '.join(n or '(model)' for n in u['modules'])}"
            for u in unc))
    else:
        notes.append("Every op with an output was counted (MACs, elementwise or free).")
    return notes


MODEL_COUNTING_BRIEF = ("Counting: FlopCounterMode / 2; rows include children; see "
                        "docs/CONVENTIONS.md")
MODEL_COUNTING_NOTE = (
    "Counting (ATen dispatch level, as torch's FlopCounterMode / 2): MACs = convolutions, "
    "mm/addmm/bmm/baddbmm (linear, matmul, einsum) and attention; elementwise ops = one per "
    "output element of pointwise ops, norms, pooling, softmax, reductions and copies; "
    "views and creation are free; bytes = each op's inputs read and outputs written "
    "(unfused); a row includes its children; params count shared tensors once.")
