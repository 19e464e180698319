"""Command views: a report envelope -> :class:`Table` objects, one view per command.

A view never writes anything: the format writers in :mod:`.formats` do. So the table, CSV
and Markdown always show the same numbers as the JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["COUNTING_NOTE", "Cell", "Table", "View", "compare_view", "convert_view", "fmt_bytes",
           "fmt_int", "preset_view", "profile_view"]


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    styles: list[str | None] = field(default_factory=list)  # per-row Rich style


View = Callable[[dict[str, Any]], list[Table]]


class Cell(str):
    """A table cell: the text a person reads, and the raw number CSV writes."""

    raw: int | float | None

    def __new__(cls, text: str, raw: int | float | None) -> Cell:
        cell = super().__new__(cls, text)
        cell.raw = raw
        return cell


def fmt_int(n: int | float | None) -> str:
    if n is None:
        return "-"
    return Cell(f"{int(n):,}", int(n))


def fmt_bytes(n: int | float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return Cell(f"{n / scale:.2f} {unit}", int(n))
    return Cell(f"{int(n)} B", int(n))


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else Cell(f"{x:.2f}x", round(x, 4))


def fmt_speedup(sp: dict[str, Any] | None, short: bool = False) -> str:
    """``3.21x [3.10, 3.33]``: the A/B estimate and its 95% interval (with the p-value and
    verdict unless ``short``); a plain ratio of medians where no A/B ran."""
    if not sp:
        return "-"
    if sp.get("estimate") is None:
        return fmt_ratio(sp.get("measured"))
    lo, hi = sp["ci95"]
    text = f"{sp['estimate']:.2f}x [{lo:.2f}, {hi:.2f}]"
    if short:
        return text
    return (f"{text} (95% CI, interleaved A/B over {sp['rounds']} rounds: p={sp['p_value']:.2g}, "
            f"{sp['verdict']}; smallest detectable change {100 * sp['mde']:.1f}%)")


def fmt_shape(s: Iterable[int]) -> str:
    s = list(s)
    return str(s[0]) if len(s) == 2 and s[0] == s[1] else "x".join(str(v) for v in s)


def _measured_cells(m: dict[str, Any] | None) -> list[str]:
    if not m:
        return ["-", "-", "-", "-"]
    roof = m.get("roofline_fraction")
    roof_s = "-" if roof is None else f"{100 * roof:.0f}%" + ("!" if m.get("flag") else "")
    return [f"{m['median_ms']:.3f} ± {m['iqr_ms']:.3f}", f"{m['gflops']:.1f}",
            f"{m['gbps']:.1f}", roof_s]


def _cost_cells(c: dict[str, Any]) -> list[str]:
    return [fmt_int(c["params"]), fmt_int(c["macs"]), fmt_int(c["flops"]),
            fmt_shape(c["output_shape"]), fmt_int(c["activation_elems"]),
            fmt_bytes(c["bytes"]), f"{c['arithmetic_intensity']:.1f}"]


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


def _rt_cell(m: dict[str, Any]) -> str:
    extra = []
    if m.get("compile_s") is not None:
        extra.append(f"compiled in {m['compile_s']:.1f} s, not timed")
    if m.get("exporter"):
        extra.append(f"{m['exporter']} exporter")
    roof = m.get("roofline_fraction")
    if roof is not None:
        extra.append(f"roofline {100 * roof:.0f}%")
    return f"{m['median_ms']:.3f} ms ({m['memory_format']}" + (
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
            line += f" -> {by_rt[rt]:.2f}x"
        out.append(line)
    fs, fc = std.get("fastest"), (cand or {}).get("fastest")
    if fs and fc:
        out.append(f"Fastest: standard in {fs['runtime']}/{fs['memory_format']}, candidate in "
                   f"{fc['runtime']}/{fc['memory_format']}: "
                   f"{fmt_ratio((by_rt or {}).get('fastest'))} between the fastest sides")
    return out


def _compare_single(case: dict[str, Any], measured: bool) -> Table:
    cols = ["layer", "params", "MACs", "FLOPs", "output", "activations", "bytes", "FLOP/B"]
    if measured:
        cols += ["median ms ± IQR", "GFLOP/s", "GB/s", "roofline"]
    std, cand = case["standard"], case["candidate"]
    t = Table(f"{case['name']}: {_describe(case['input'])}", cols)

    def add(label: str, c: dict[str, Any], style: str | None = None) -> None:
        row = [label, *_cost_cells(c)]
        if measured:
            row += _measured_cells(c.get("measured"))
        t.rows.append(row)
        t.styles.append(style)

    plain = std["kind"] in ("conv", "grouped conv")
    std_label = "standard" if plain else f"standard ({std['kind']})"
    add(std_label, std)
    for name, part in cand.get("parts", {}).items():
        add(f"  {name}", part, "dim")
    add(f"{cand['kind']} total", cand, "bold")
    red = case["reduction"]
    t.notes.append(f"Reduction (standard / {cand['kind']}): params {fmt_ratio(red['params'])}, "
                   f"MACs {fmt_ratio(red['macs'])}")
    th = case.get("theory")
    if th:
        red_th = th["reduction"]
        change = (f"{red_th:.2f}x fewer params and MACs" if red_th > 1.0005 else
                  f"{1 / red_th:.2f}x more params and MACs (the DS form is larger)"
                  if red_th < 0.9995 else "the same params and MACs")
        t.notes.append(f"Theory: {th['formula']} = {th['ratio']:.4f} -> {change}")
    sp = case.get("speedup")
    if sp:
        t.notes.append(f"Measured speedup: {fmt_speedup(sp)}"
                       + ("! (implausible, see below)" if sp.get("flag") else "")
                       + f" (theoretical {fmt_ratio(sp['theoretical'])}); best layout: "
                       f"{sp.get('memory_format', '-')}")
    if case.get("why"):
        t.notes.append(f"Why: {case['why']}")
    t.notes.extend(runtime_notes(std, cand, case.get("speedup_by_runtime")))
    for w in case.get("warnings", []):
        t.notes.append(f"Note: {w}")
    t.notes.append(COUNTING_NOTE)
    return t


def compare_view(env: dict[str, Any]) -> list[Table]:
    cases = env["cases"]
    measured = any("measured" in c["standard"] or c.get("skipped") for c in cases)
    if len(cases) == 1 and not cases[0].get("skipped"):
        return [_compare_single(cases[0], measured)]
    cols = ["case", "std params", "params", "params x", "std MACs", "MACs", "MACs x",
            "theory x"]
    if measured:
        cols += ["std ms", "ms", "measured x"]
    t = Table(f"{len(cases)} cases", cols)
    for c in cases:
        if c.get("skipped"):
            t.rows.append([c["name"], *(["-"] * (len(cols) - 2)), "skipped"])
            t.notes.append(f"{c['name']}: skipped: {c['skipped']}")
            continue
        std, cand, red = c["standard"], c["candidate"], c["reduction"]
        th = c.get("theory")
        row = [c["name"], fmt_int(std["params"]), fmt_int(cand["params"]),
               fmt_ratio(red["params"]), fmt_int(std["macs"]), fmt_int(cand["macs"]),
               fmt_ratio(red["macs"]), fmt_ratio(th["reduction"] if th else None)]
        if measured:
            sm, cm = std.get("measured"), cand.get("measured")
            row += [f"{sm['median_ms']:.3f}" if sm else "-",
                    f"{cm['median_ms']:.3f}" if cm else "-",
                    fmt_speedup(c.get("speedup"), short=True)]
        t.rows.append(row)
    t.notes.append(COUNTING_NOTE)
    return [t]


def _pct(x: float | None) -> str:
    return "-" if x is None else Cell(f"{100 * x:.1f}%", x)


def preset_view(env: dict[str, Any]) -> list[Table]:
    out = []
    for case in env["cases"]:
        m = case["model"]
        fc = case.get("full_conv")
        measured = "measured" in case
        cols = ["stage", "blocks", "output", "params", "MACs", "MAC share"]
        if measured:
            cols += ["median ms", "time share"]
        if fc:
            cols += ["full-conv params", "full-conv MACs", "MACs x"]
        t = Table(f"{m['name']} (width {m['width']}, {m['resolution']}x{m['resolution']}, "
                  f"{m['classes']} classes, batch {m['batch']}, {m['dtype']})", cols)
        fc_stages = {s["stage"]: s for s in fc["stages"]} if fc else {}
        for s in case["stages"]:
            row = [s["stage"], str(s["blocks"]), fmt_shape(s["output_shape"]),
                   fmt_int(s["params"]), fmt_int(s["macs"]), _pct(s["share_macs"])]
            if measured:
                sm = s["measured"]
                row += [f"{sm['median_ms']:.3f}", _pct(sm["share_time"])]
            if fc:
                f = fc_stages[s["stage"]]
                row += [fmt_int(f["params"]), fmt_int(f["macs"]),
                        fmt_ratio(f["macs"] / s["macs"] if s["macs"] else None)]
            t.rows.append(row)
            t.styles.append(None)
        tot = case["totals"]
        row = ["total", str(sum(s["blocks"] for s in case["stages"])),
               fmt_shape(tot["output_shape"]), fmt_int(tot["params"]), fmt_int(tot["macs"]),
               "100.0%"]
        if measured:
            row += [f"{case['measured']['median_ms']:.3f}", "(whole network)"]
        if fc:
            ft = fc["totals"]
            row += [fmt_int(ft["params"]), fmt_int(ft["macs"]),
                    fmt_ratio(ft["macs"] / tot["macs"])]
        t.rows.append(row)
        t.styles.append("bold")
        t.notes.extend(line.replace("standard", "network") for line in runtime_notes(
            case, None, None))
        if measured:
            t.notes.append("Time share: each stage's median over the sum of the stage medians "
                           "(stages timed on their own).")
        t.notes.append(COUNTING_NOTE)
        out.append(t)
        if case.get("layers"):
            lt = Table(f"{m['name']}: layers", ["stage", "layer", "kind", "output", "params",
                                                "MACs"])
            for la in case["layers"]:
                lt.rows.append([la["stage"], la["name"], la["kind"], fmt_shape(la["output_shape"]),
                                fmt_int(la["params"]), fmt_int(la["macs"])])
            out.append(lt)
    return out


def _pair(v: list[int] | None) -> str:
    return "-" if v is None else fmt_shape(v)


def _f(x: float | None, spec: str = ".4f") -> str:
    return "-" if x is None else Cell(format(x, spec), x)


def convert_view(env: dict[str, Any]) -> list[Table]:
    out = []
    for case in env["cases"]:
        t = Table(f"convert {case['name']} (init {case['options']['init']})",
                  ["layer", "input", "in>out", "kernel", "stride", "dil", "params before",
                   "params after", "MACs before", "MACs after", "rank/max", "energy",
                   "weight err", "status"])
        for la in case["layers"]:
            rank = "-" if la["rank"] is None else f"{la['rank']}/{la['max_rank']}"
            name = la["name"] + (f" (= {', '.join(la['aliases'])})" if la["aliases"] else "")
            t.rows.append([
                name, _pair(la["input_shape"]), f"{la['in_channels']}>{la['out_channels']}",
                _pair(la["kernel"]), _pair(la["stride"]), _pair(la["dilation"]),
                fmt_int(la["params_before"]), fmt_int(la["params_after"]),
                fmt_int(la["macs_before"]), fmt_int(la["macs_after"]), rank,
                _f(la["energy"]), _f(la["weight_error"]),
                la["status"] if la["status"] == "converted" else f"skipped: {la['reason']}",
            ])
            t.styles.append(None if la["status"] == "converted" else "dim")
            if la.get("note"):
                t.notes.append(f"{la['name']}: {la['note']}")
        tot = case["totals"]
        if tot["converted"] == 0:
            t.notes.append("No eligible layer: the model is unchanged.")
        if tot.get("model_macs_before") is not None:
            t.notes.append(f"Whole model MACs (every op counted, as compare --model): "
                           f"{fmt_int(tot['model_macs_before'])} -> "
                           f"{fmt_int(tot['model_macs_after'])}")
        t.notes.append(
            f"Converted {tot['converted']} of {tot['layers']} Conv2d layers; model params "
            f"{fmt_int(tot['model_params_before'])} -> {fmt_int(tot['model_params_after'])}"
            + (f"; conv MACs {fmt_int(tot['conv_macs_before'])} -> "
               f"{fmt_int(tot['conv_macs_after'])}" if tot["conv_macs_before"] is not None
               else ""))
        for key in ("fidelity", "fidelity_on_calibration"):
            fid = case.get(key)
            if fid:
                agree = ("-" if fid["agreement"] is None
                         else f"{100 * fid['agreement']:.2f}%")
                t.notes.append(f"Fidelity on the {fid['on']} inputs (n={fid['n']}): top-1 "
                               f"agreement {agree}, relative output error "
                               f"{fid['rel_output_error']:.4g}")
        cal = [la for la in case["layers"] if la.get("output_error")]
        if cal:
            t.notes.append("Calibrated (output error on the calibration inputs, SVD -> refit): "
                           + "; ".join(f"{la['name']} {la['output_error']['svd']:.3g} -> "
                                       f"{la['output_error']['calibrated']:.3g}"
                                       for la in cal[:8]) + (" ..." if len(cal) > 8 else ""))
        v = case["verification"]
        if v["verified"]:
            t.notes.append(f"Output check (eval, seed {v['seed']}, input "
                           f"{fmt_shape(v['input_shape'])}): max |diff| "
                           f"{v['max_abs_diff']:.3g}, relative {v['rel_diff']:.3g}")
        else:
            t.notes.append(f"Output check: {v['note']}.")
        t.notes.append(case["output_note"])
        out.append(t)
    return out


def profile_view(env: dict[str, Any]) -> list[Table]:
    cases = env["cases"]
    planned = all(c["verdict"] == "planned" for c in cases)
    cols = ["case", "source", "params", "MACs"]
    has_vs = any(c.get("vs") for c in cases)
    if not planned:
        cols += ["median ms ± IQR", "speedup meas/theory", "roofline", "baseline"]
        if has_vs:
            cols += ["vs: time vs / time model"]
    cols += ["budget", "verdict"]
    t = Table("dsconv profile" + (" (dry run: analytic only)" if planned else ""), cols)
    for c in cases:
        src = c["source"]["kind"]
        a = c["analytic"]
        row = [c["name"], src, fmt_int(a.get("params")), fmt_int(a.get("macs"))]
        if not planned:
            m = c.get("measured")
            sp = c.get("speedup") or {}
            b = c.get("baseline")
            row += [f"{m['median_ms']:.3f} ± {m['iqr_ms']:.3f}" if m else "-",
                    f"{fmt_ratio(sp.get('measured'))} / {fmt_ratio(sp.get('theoretical'))}"
                    if sp else "-",
                    _pct(m.get("roofline_fraction")) if m else "-",
                    (f"{100 * b['change']:+.1f}% {b['status']}" if "change" in b
                     else b["status"]) + (" (cross-env)" if b.get("cross_environment") else "")
                    if b else "-"]
            if has_vs:
                vs = c.get("vs")
                row += [f"{vs['source']}: {fmt_speedup(vs['speedup'], short=True)} "
                        f"{vs['speedup'].get('verdict', '')}" if vs else "-"]
        budget = c.get("budget", {})
        ok = sum(v["ok"] for v in budget.values())
        pending = c.get("budget_pending", [])
        btxt = f"{ok}/{len(budget)} met" if budget else "-"
        if pending:
            btxt += f" ({', '.join(pending)} need a run)"
        row += [btxt, c["verdict"].upper() if c["verdict"] in ("fail", "error") else c["verdict"]]
        t.rows.append(row)
        t.styles.append("bold red" if c["verdict"] in ("fail", "error") else None)
        for f in c.get("failures", []):
            t.notes.append(f"{c['name']}: {f}")
        if c.get("error"):
            t.notes.append(f"{c['name']}: could not run: {c['error']}")
        if c["source"].get("format"):
            t.notes.append(f"{c['name']}: {c['source']['path']} ({c['source']['format']})")
    s = env.get("summary")
    if s:
        t.notes.append(f"{s['passed']} of {s['cases']} case(s) passed"
                       + (f", {s['failed']} failed" if s["failed"] else ""))
    t.notes.append(COUNTING_NOTE)
    return [t]


def _ds_cells(la: dict[str, Any]) -> list[str]:
    ds = la.get("ds")
    if ds:
        return [fmt_int(ds["params"]), fmt_int(ds["macs"]), fmt_ratio(ds["reduction_macs"])]
    if la.get("macs_if_ds") is not None:  # a module holding eligible convs
        after = la["macs_if_ds"]
        return [fmt_int(la["params_if_ds"]), fmt_int(after),
                fmt_ratio(la["macs"] / after if after else None)]
    return ["-", "-", "-"]


def model_view(env: dict[str, Any]) -> list[Table]:
    """A saved model or an architecture: per-module counts (to ``depth_shown``), the DS form
    of every eligible conv, the ops that could not be counted, and timings if measured."""
    out = []
    for case in env["cases"]:
        m, tot, opp = case["model"], case["totals"], case["ds_opportunity"]
        depth = case.get("depth_shown", 3)
        measured = "measured" in case
        cols = ["module", "type", "output", "params", "MACs", "MAC share", "bytes", "FLOP/B"]
        if measured:
            cols += ["median ms", "time share", "roofline"]
        if case.get("vs"):
            cols += ["speedup meas/theory"]
        cols += ["DS params", "DS MACs", "DS MACs x"]
        t = Table(f"{case['name']} (input {fmt_shape(m['input_shape'])}, counted on "
                  f"{m['counted_on'].split(' ')[0]})", cols)
        for la in case["layers"]:
            if la["depth"] > depth:
                continue
            indent = "  " * max(0, la["depth"] - 1)
            name = la["name"] if la["depth"] else "(model)"
            row = [indent + name, la["type"], fmt_shape(la["output_shape"] or []),
                   fmt_int(la["params"]), fmt_int(la["macs"]), _pct(la["share_macs"]),
                   fmt_bytes(la["bytes"]), _f(la["flop_per_byte"], ".1f")]
            if measured:
                mt = la.get("measured")
                row += ([_f(mt["median_ms"], ".3f"), _pct(mt["share_time"]),
                         _pct(mt["roofline_fraction"])] if mt else ["-", "-", "-"])
            if case.get("vs"):
                sp = la.get("speedup")
                row += [f"{fmt_ratio(sp['measured'])} / {fmt_ratio(sp['theoretical'])}"
                        if sp else "-"]
            row += _ds_cells(la)
            t.rows.append(row)
            t.styles.append("bold" if la["depth"] == 0 else None)
        if measured and tot.get("other_ms") is not None:
            row = ["other (outside top-level modules)", "", "", "", "", "", "", ""]
            row += [_f(tot["other_ms"], ".3f"), _pct(tot.get("other_share")), ""]
            row += [""] * (len(cols) - len(row))
            t.rows.append(row)
            t.styles.append("dim")
        t.notes.append(
            f"Totals: {fmt_int(tot['params'])} params, {fmt_int(tot['macs'])} MACs, "
            f"{fmt_int(tot['elementwise_ops'])} elementwise ops, {fmt_bytes(tot['bytes'])} "
            f"moved; output {fmt_shape(tot['output_shape'])}.")
        t.notes.append(
            f"DS opportunity (depth multiplier {opp['depth_multiplier']}, "
            f"{opp['eligible_convs']} eligible conv(s)): MACs {fmt_int(opp['macs_now'])} -> "
            f"{fmt_int(opp['macs_after'])} ({fmt_ratio(opp['reduction_macs'])}), params "
            f"{fmt_int(opp['params_now'])} -> {fmt_int(opp['params_after'])} "
            f"({fmt_ratio(opp['reduction_params'])}).")
        t.notes.extend(runtime_notes(case, None, None))
        if measured:
            mm = case["measured"]
            t.notes.append(f"Whole model: {mm['median_ms']:.3f} ms median "
                           f"({mm['memory_format']}); per-module times: "
                           f"{case.get('attribution', '-')}.")
        vs, sp = case.get("vs"), case.get("speedup")
        if vs and vs.get("totals"):
            vt = vs["totals"]
            t.notes.append(f"--vs {vs['source']}: {fmt_int(vt['params'])} params, "
                           f"{fmt_int(vt['macs'])} MACs; {len(vs.get('layers', []))} common "
                           f"module(s) differ, {vs.get('only_in_model', 0)} only in the model, "
                           f"{vs.get('only_in_vs', 0)} only in --vs.")
            for d in vs.get("layers", [])[:10]:
                t.notes.append(f"  {d['name'] or '(model)'}: params {fmt_int(d['params'][0])} "
                               f"-> {fmt_int(d['params'][1])}, MACs {fmt_int(d['macs'][0])} -> "
                               f"{fmt_int(d['macs'][1])}")
        if sp and vs:
            if vs["kind"] == "ds":
                t.notes.append(f"Measured speedup of the DS form (time now / time converted): "
                               f"{fmt_speedup(sp)}; theoretical {fmt_ratio(sp['theoretical'])} "
                               "(MACs now / MACs converted).")
            else:
                t.notes.append(f"Measured speedup over --vs {vs['source']} (time vs / time "
                               f"model): {fmt_speedup(sp)}; MACs ratio "
                               f"{fmt_ratio(sp['theoretical'])}.")
        if not m["counted_on"].startswith("meta"):
            t.notes.append(f"Counted on {m['counted_on']}.")
        unc = case["uncounted"]
        if unc:
            t.notes.append("Uncounted ops (not in MACs or elementwise ops): " + "; ".join(
                f"{u['op']} x{u['calls']} in {', '.join(n or '(model)' for n in u['modules'])}"
                for u in unc))
        else:
            t.notes.append("Every op with an output was counted (MACs, elementwise or free).")
        t.notes.append(MODEL_COUNTING_NOTE)
        out.append(t)
    return out


MODEL_COUNTING_NOTE = (
    "Counting (ATen dispatch level, as torch's FlopCounterMode / 2): MACs = convolutions, "
    "mm/addmm/bmm/baddbmm (linear, matmul, einsum) and attention; elementwise ops = one per "
    "output element of pointwise ops, norms, pooling, softmax, reductions and copies; "
    "views and creation are free; bytes = each op's inputs read and outputs written "
    "(unfused); a row includes its children; params count shared tensors once.")
