"""Whole-model analysis: the user's network counted per module at the ATen dispatch level,
with the depthwise separable form of every Conv2d ``convert`` would take; optionally
measured, and against its own conversion (``--vs ds``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cost import flops
from ..errors import InputError, user_code
from ..options import MeasureOptions, did_you_mean
from ..plan import PlanOptions, decide
from ..results import DsForm, ModelAnalysis, ModuleRow, ModuleTime, Speedup, UncountedOp
from . import Hooks

__all__ = ["ModelSource", "NetworkRequest", "analyse", "analyse_network", "load_source",
           "looks_like_file"]

MODEL_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")


def looks_like_file(value: str) -> bool:
    """``--model``: a file if it exists, has a path separator or a model file suffix;
    otherwise a preset name."""
    return (Path(value).exists() or "/" in value or "\\" in value
            or value.lower().endswith(MODEL_SUFFIXES))


@dataclass(frozen=True)
class ModelSource:
    """Where the model comes from, as given on the command line (or a config)."""

    path: Path | None = None
    arch: str | None = None
    arch_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    trust_pickle: bool = False
    state_dict_key: str | None = None
    map_location: str = "cpu"
    #: a live ``nn.Module`` (the Python API): analysed as given, counted on a meta copy
    module: Any = None

    def describe(self) -> dict[str, Any]:
        live = self.module is not None
        d: dict[str, Any] = {"source": str(self.path) if self.path else
                             "module" if live else "arch", "arch": self.arch}
        if self.arch_kwargs:
            d["arch_kwargs"] = self.arch_kwargs
        return d


def load_source(src: ModelSource, weights: bool, hooks: Hooks = Hooks()) -> Any:
    """The model: loaded from its file (safely), or built from ``arch`` alone, on meta
    unless its weights are needed (measuring)."""
    from ..torch_backend.loading import build_arch, build_arch_meta, load_model

    if src.module is not None:  # measuring copies it; counting has its own meta copy
        return src.module
    if src.path is not None:
        loaded = load_model(src.path, map_location=src.map_location,
                            trust_pickle=src.trust_pickle, state_dict_key=src.state_dict_key,
                            arch=src.arch, arch_kwargs=src.arch_kwargs, warn=hooks.warn)
        for note in loaded.notes:
            hooks.status(f"note: {note}")
        return loaded.model
    if src.arch is None:
        raise InputError("give --model FILE or --arch to analyse a network")
    return (build_arch if weights else build_arch_meta)(src.arch, src.arch_kwargs)


def analyse(model: Any, src: ModelSource, input_shape: tuple[int, ...], plan: PlanOptions,
            name: str | None = None) -> ModelAnalysis:
    """Count ``model`` per module and price the DS form of every eligible Conv2d."""
    from torch import nn

    from ..torch_backend.convert import conv_facts
    from ..torch_backend.counting import count_model

    c = count_model(model, input_shape)
    total_macs = c.macs
    ds_forms: dict[str, DsForm] = {}
    skipped: dict[str, str] = {}
    saved_macs = saved_params = 0
    saving: dict[str, tuple[int, int]] = {}  # conv -> (params saved, MACs saved)
    names: dict[int, list[str]] = {}
    for n, m in model.named_modules(remove_duplicate=False):
        if isinstance(m, nn.Conv2d):
            names.setdefault(id(m), []).append(n)
    for n, m in model.named_modules():
        if not isinstance(m, nn.Conv2d) or n not in c.conv_shapes:
            continue
        shapes = c.conv_shapes[n]
        d = decide(conv_facts(m, names[id(m)], shapes[0]), plan)
        if not d.convert or d.rank is None or d.params_after is None:
            skipped[n] = d.reason
            continue
        calls = len(shapes)
        macs_after = d.macs_after
        ds_forms[n] = DsForm(
            depth_multiplier=d.rank, params=d.params_after,
            macs=None if macs_after is None else macs_after * calls,
            reduction_macs=(round(d.macs_before / macs_after, 4)
                            if d.macs_before and macs_after else None),
            reduction_params=round(d.params_before / d.params_after, 4))
        saved_params += d.params_before - d.params_after
        saving[n] = (d.params_before - d.params_after, 0)
        if d.macs_before is not None and macs_after is not None:
            saved_macs += (d.macs_before - macs_after) * calls
            saving[n] = (saving[n][0], (d.macs_before - macs_after) * calls)
    rows = []
    for r in c.modules.values():
        if r.calls == 0:
            continue
        inside = [v for k, v in saving.items()
                  if r.name == "" or k == r.name or k.startswith(r.name + ".")]
        rows.append(ModuleRow(
            name=r.name or "(model)", type=r.type, depth=r.depth, calls=r.calls,
            output_shape=list(r.output_shape) if r.output_shape else None, params=r.params,
            macs=r.macs, flops=flops(r.macs), bytes=r.bytes * 1,
            elementwise_ops=r.elementwise,
            share_macs=round(r.macs / total_macs, 4) if total_macs else 0.0,
            flop_per_byte=round(flops(r.macs) / r.bytes, 3) if r.bytes else None,
            ds=ds_forms.get(r.name), ds_skipped=skipped.get(r.name),
            macs_if_ds=r.macs - sum(m for _, m in inside) if inside else None,
            params_if_ds=r.params - sum(p for p, _ in inside) if inside else None))
    after_macs, after_params = total_macs - saved_macs, c.params - saved_params
    return ModelAnalysis(
        name=name or (str(src.path) if src.path else str(src.arch)),
        model={**src.describe(), "input_shape": list(input_shape), "counted_on": c.counted_on},
        totals={"params": c.params, "macs": total_macs, "flops": flops(total_macs),
                "bytes": c.bytes, "elementwise_ops": c.elementwise,
                "input_shape": list(c.input_shape), "output_shape": list(c.output_shape),
                "flop_per_byte": round(flops(total_macs) / c.bytes, 3) if c.bytes else None},
        layers=rows,
        uncounted=[UncountedOp(op, calls, mods) for op, (calls, mods) in c.uncounted.items()],
        ds_opportunity={
            "eligible_convs": len(ds_forms), "depth_multiplier": plan.depth_multiplier,
            "macs_now": total_macs, "macs_after": after_macs,
            "params_now": c.params, "params_after": after_params,
            "reduction_macs": round(total_macs / after_macs, 4) if after_macs else None,
            "reduction_params": round(c.params / after_params, 4) if after_params else None},
    )


# --------------------------------------------------------------------------- versus

@dataclass
class Other:
    """What a model is compared with (``--vs``): its conversion, a preset or a file."""

    kind: str  # "ds" | "preset" | "file"
    label: str
    model: Any
    analysis: ModelAnalysis | None = None

    def annotate(self, a: ModelAnalysis) -> ModelAnalysis:
        """The analysis with the other model's totals and the per-layer differences."""
        vs: dict[str, Any] = {"kind": self.kind, "source": self.label}
        if self.analysis is not None:
            b = self.analysis
            vs["totals"] = {k: b.totals[k] for k in ("params", "macs", "flops")}
            mine = {r.name: r for r in a.layers}
            theirs = {r.name: r for r in b.layers}
            vs["layers"] = [
                {"name": n, "params": [mine[n].params, theirs[n].params],
                 "macs": [mine[n].macs, theirs[n].macs]}
                for n in mine if n in theirs and (mine[n].params, mine[n].macs) != (
                    theirs[n].params, theirs[n].macs)]
            vs["only_in_model"] = sum(1 for n in mine if n not in theirs)
            vs["only_in_vs"] = sum(1 for n in theirs if n not in mine)
        return dataclasses.replace(a, vs=vs)


def versus(spec: str, model: Any, src: ModelSource, shape: tuple[int, ...], plan: PlanOptions,
           vs_arch: str | None, vs_kwargs: dict[str, Any], weights: bool,
           hooks: Hooks = Hooks()) -> Other:
    """``--vs``: ``ds`` (the model converted in memory; needs its weights, so --measure),
    a preset name, or a model file loaded like ``--model``."""
    from ..presets import PRESETS, get_preset

    if spec == "ds":
        if not weights:
            raise InputError("Invalid value for '--vs': ds measures the model against its "
                             "conversion: add --measure")
        import copy

        from ..torch_backend.convert import ConvertOptions, convert_model
        from ..torch_backend.loading import Loaded

        converted = copy.deepcopy(model)
        convert_model(Loaded(converted, "module", "in memory"), ConvertOptions(plan, shape))
        other = Other("ds", "the model converted in memory", converted)
    elif spec in PRESETS:
        from ..torch_backend.build import build_preset

        def build() -> Any:
            return build_preset(get_preset(spec, **vs_kwargs))

        if weights:
            net = build()
        else:
            import torch

            with torch.device("meta"):
                net = build()
        other = Other("preset", spec, net)
    elif looks_like_file(spec):
        vsrc = ModelSource(Path(spec), vs_arch, vs_kwargs, src.trust_pickle, None,
                           src.map_location)
        if not Path(spec).is_file():
            raise InputError(f"--vs {spec}: no such file")
        other = Other("file", spec, load_source(vsrc, weights=True, hooks=hooks))
    else:
        raise InputError(f"Invalid value for '--vs': {spec!r} is not ds, a preset "
                         f"({', '.join(PRESETS)}) or a model file",
                         hint=did_you_mean(spec, ("ds", *PRESETS)))
    other.analysis = analyse(other.model, ModelSource(arch=other.label), shape, plan,
                             name=other.label)
    return other


# --------------------------------------------------------------------------- the request

@dataclass(frozen=True)
class NetworkRequest:
    """A whole-network analysis as the command line (or a config) asks for it."""

    source: ModelSource
    input_shape: tuple[int, ...]
    plan: PlanOptions
    #: module depth the table shows (and per-module times are taken to)
    depth: int = 3
    #: ``--vs``: ds, a preset name or a model file
    vs: str | None = None
    vs_arch: str | None = None
    vs_arch_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: the report's name (default: the file or the arch)
    name: str | None = None


def _counted(src: ModelSource, net: Any) -> Any:
    """What is counted: a live module's meta copy (the user's module is never touched),
    else the model loaded for the purpose."""
    from ..torch_backend.counting import meta_copy

    if src.module is None:
        return net
    with user_code("copying the model (deepcopy)"):
        return meta_copy(net)


def analyse_network(request: NetworkRequest, opts: MeasureOptions | None, recalibrate: bool,
                    hooks: Hooks = Hooks()) -> tuple[ModelAnalysis, dict[str, Any] | None]:
    """Load (or build) the model, count it per module with its DS opportunity, compare it
    with ``--vs``, and with ``opts`` measure it. Returns the analysis and the environment
    (None unless measured)."""
    weights = opts is not None
    net = load_source(request.source, weights=weights, hooks=hooks)
    result = analyse(_counted(request.source, net), request.source, request.input_shape,
                     request.plan, name=request.name)
    other = None
    if request.vs is not None:
        other = versus(request.vs, net, request.source, request.input_shape, request.plan,
                       request.vs_arch, request.vs_arch_kwargs, weights=weights, hooks=hooks)
        result = other.annotate(result)
    if opts is None:
        return result, None
    return measure(result, net, request.input_shape, request.plan, other, opts, recalibrate,
                   request.depth, hooks)


# --------------------------------------------------------------------------- measuring

def measure(analysis: ModelAnalysis, model: Any, input_shape: tuple[int, ...],
            plan: PlanOptions, other: Other | None, opts: MeasureOptions, recalibrate: bool,
            depth: int, hooks: Hooks = Hooks()) -> tuple[ModelAnalysis, dict[str, Any]]:
    """Whole-model medians per layout; each module's time (hooks) beside its MAC share and
    roofline fraction; with ``other`` (``--vs``) an interleaved A/B of the two models:
    speedup = time(other) / time(model), with its 95% interval, and per-module speedups
    where the modules match (``--vs ds``). Returns the analysis and the environment."""
    import copy

    from ..torch_backend.measure import (
        ab_modules,
        check_memory,
        int8_versus_fp32,
        measure_all,
        measure_module,
        open_session,
    )

    session = open_session(opts, recalibrate, on_status=hooks.status, on_warn=hooks.warn)
    e = session.dtype.itemsize if hasattr(session.dtype, "itemsize") else 4
    peak = max((_numel(r.output_shape) for r in analysis.layers if r.output_shape), default=0)
    check_memory(3 * (analysis.totals["params"] + peak) * e, session, analysis.name)
    cost = _as_cost(analysis, e)
    with hooks.progress(2 + (session.fp32 is not None) + 3 * (other is not None),
                        "measuring") as advance:
        advance(f"{analysis.name}: whole model")
        best, by_fmt, by_rt = measure_all(lambda: copy.deepcopy(model), input_shape, cost,
                                          session)
        advance(f"{analysis.name}: per module")
        per = _module_times(model, input_shape, best.memory_format, session, depth)
        out = _with_times(analysis, per, session, depth)
        out = dataclasses.replace(out, measured=best, measured_by_format=by_fmt,
                                  measured_by_runtime=by_rt)
        if session.fp32 is not None:  # --dtype int8: the model against its fp32 self
            advance(f"{analysis.name}: int8 vs fp32")
            out = dataclasses.replace(out, int8=int8_versus_fp32(
                lambda: copy.deepcopy(model), input_shape, session))
        if other is None or other.analysis is None:
            return out, session.environment
        advance(f"{other.label}: whole model")
        o_best, _ = measure_module(lambda: copy.deepcopy(other.model), input_shape,
                                   _as_cost(other.analysis, e), session)
        advance(f"{other.label}: per module")
        o_per = _module_times(other.model, input_shape, o_best.memory_format, session, depth)
        advance(f"{analysis.name} vs {other.label}: A/B")
        mine, theirs = ab_modules(lambda: copy.deepcopy(model), input_shape, best.memory_format,
                                  lambda: copy.deepcopy(other.model), input_shape,
                                  o_best.memory_format, session)
    speedups = _speedups(analysis, model, other, input_shape, session, mine, theirs,
                         (best if other.kind != "ds" else o_best).memory_format, hooks.status)
    table = _ds_table(model, input_shape, plan, out, session, hooks) if (
        other.kind == "ds") else {}
    rows = []
    for r in out.layers:
        t_mine = per.inclusive.get(_key(r.name)) if per else None
        t_theirs = o_per.inclusive.get(_key(r.name)) if o_per else None
        macs_ds = r.ds.macs if r.ds is not None else r.macs_if_ds
        if r.name == "(model)" and other.kind == "ds":
            # the whole model's row shows the one speedup: the A/B's, not the hooks'
            r = dataclasses.replace(r, speedup=speedups[0])
        elif r.name in table and r.ds is not None:
            # a converted conv: its conv and DS form from the latency table (interleaved)
            r = dataclasses.replace(r, speedup=table[r.name])
        elif other.kind == "ds" and macs_ds and t_mine and t_theirs:
            r = dataclasses.replace(r, speedup=Speedup(
                measured=round(t_mine / t_theirs, 4),
                theoretical=round(r.macs / macs_ds, 4)))
        rows.append(r)
    vs = {**(out.vs or {}), "measured": o_best}
    return dataclasses.replace(out, layers=rows, speedup=speedups[0], vs=vs,
                               speedup_by_runtime=speedups if len(speedups) > 1 else None
                               ), session.environment


def _speedups(a: ModelAnalysis, model: Any, other: Other, input_shape: tuple[int, ...],
              session: Any, mine: Any, theirs: Any, memory_format: str,
              advance: Any) -> list[Speedup]:
    """The speedup in each runtime asked for, each from an interleaved A/B of the two
    models in that runtime (the first one's is ``mine``/``theirs``): the A/B estimate is the
    one figure, inside its own interval (never a ratio of medians taken apart)."""
    import copy

    from ..stats import compare_samples, sig
    from ..torch_backend.measure import ab_modules

    assert other.analysis is not None
    o_macs, macs = other.analysis.totals["macs"], a.totals["macs"]
    # speedup of the model over what it is compared with: time(vs) / time(model); for
    # --vs ds the question is the other way round (how much the conversion buys)
    theory = (round(macs / o_macs, 4) if o_macs else None) if other.kind == "ds" else (
        round(o_macs / macs, 4) if macs else None)
    out = []
    for i, (name, rt) in enumerate(session.runtimes.items()):
        if i:
            advance(f"{a.name} vs {other.label}: A/B in {name}")
            mine, theirs = ab_modules(lambda: copy.deepcopy(model), input_shape, "nchw",
                                      lambda: copy.deepcopy(other.model), input_shape, "nchw",
                                      session, runtime=rt)
        fast, slow = (theirs, mine) if other.kind == "ds" else (mine, theirs)
        ab = compare_samples(fast.samples_ms or [], slow.samples_ms or [])
        out.append(Speedup(measured=sig(ab.estimate), theoretical=theory,
                           memory_format=memory_format if not i else "nchw",
                           runtime=name).with_ab(ab))
    return out


def _ds_table(model: Any, input_shape: tuple[int, ...], plan: PlanOptions, a: ModelAnalysis,
              session: Any, hooks: Hooks) -> dict[str, Speedup]:
    """Each converted conv's speedup from the latency table ``convert --target-latency``
    uses (its conv and DS form built alone at the input the layer sees, timed interleaved
    in the session's runtime, cached): one source for the per-layer DS-vs-conv times."""
    from ..stats import compare_samples, sig
    from ..torch_backend.convert import candidates
    from ..torch_backend.latency import layer_table, weight_error

    ms = {r.name: r.ds.depth_multiplier for r in a.layers if r.ds is not None}
    found = [(f, c) for f, c in candidates(model, plan, input_shape) if f.name in ms]
    with hooks.progress(len(found), "timing layers") as advance:
        table, _ = layer_table(found, session, weight_error, warn=hooks.warn, advance=advance,
                               only=lambda f: [ms[f.name]])
    out = {}
    for t in table:
        la, m = t.times, ms[t.times.name]
        if m not in la.ds:
            continue
        row = next(r for r in a.layers if r.name == la.name)
        assert row.ds is not None
        # the DS form's speedup over the conv: time(conv) / time(DS)
        sp = compare_samples(la.ds[m].samples_ms, la.conv.samples_ms)
        out[la.name] = Speedup(
            measured=sig(sp.estimate), memory_format=None,
            theoretical=round(row.macs / row.ds.macs, 4) if row.ds.macs else None,
            flag=t.problem).with_ab(sp)
    return out


def _key(name: str) -> str:
    return "" if name == "(model)" else name


def _numel(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _as_cost(a: ModelAnalysis, e: int) -> Any:
    from ..cost import Cost

    t = a.totals
    return Cost(kind="model", params=t["params"], macs=t["macs"],
                input_shape=tuple(t["input_shape"]), output_shape=tuple(t["output_shape"]),
                bytes=t["bytes"], elementwise=t["elementwise_ops"], peak_activation_elems=0,
                dtype_bytes=e)


def _module_times(model: Any, input_shape: tuple[int, ...], memory_format: str,
                  session: Any, depth: int) -> Any:
    """Per-module times (``torch_backend.measure.ModuleTimes``) of a copy of ``model``, or
    None where hooks cannot attribute: a runtime other than eager (torch.compile fuses
    across modules, ONNX Runtime runs a graph with no modules in it)."""
    import copy

    from ..torch_backend.measure import module_times

    if session.runtime.name != "eager":
        return None
    return module_times(copy.deepcopy(model), input_shape, memory_format, session,
                        max_depth=depth)


def _attribution(per: Any, session: Any, depth: int) -> str:
    """How the per-module times were taken (the case's ``attribution``)."""
    if per is None:
        return (f"none: the {session.runtime.name} runtime fuses or replaces the modules, so "
                "hooks cannot time them (use --runtime eager for per-module times)")
    sync = "; CUDA synchronised at each hook" if session.device.type == "cuda" else ""
    return (f"forward pre/post hooks on modules to depth {depth}, means of the same "
            f"{per.runs} hooked forwards{sync}: 'ms' includes the modules a module calls, "
            "'self' excludes them; the top-level modules plus 'other' (outside them, hook "
            "costs around them included) make the hooked whole")


def _row_time(r: ModuleRow, per: Any, whole: float, session: Any) -> ModuleTime | None:
    from ..torch_backend.timing import roofline_bound_ms

    key = _key(r.name)
    ms = per.inclusive.get(key)
    if ms is None:
        return None
    own = per.own[key]
    bound = roofline_bound_ms(r.flops, r.bytes, session.calibration)
    return ModuleTime(
        median_ms=round(per.medians[key], 6), share_time=round(ms / whole, 4) if whole else 0.0,
        roofline_fraction=round(bound / ms, 4) if ms else None, inclusive_ms=round(ms, 6),
        self_ms=round(own, 6), self_share=round(own / whole, 4) if whole else 0.0)


def _unattributed(r: ModuleRow, per: Any, depth: int, runtime: str) -> str | None:
    """Why a row shown at this depth has no time (the word before ':' is the table's)."""
    if r.depth > depth:
        return None
    if per is None:
        return f"{runtime}: the {runtime} runtime runs no modules that hooks could time"
    if _key(r.name) in per.hooked:
        return ("fused: hooked but never called through its own forward (its caller runs "
                "it); its time is in the caller's self time")
    return None


def _with_times(a: ModelAnalysis, per: Any, session: Any, depth: int) -> ModelAnalysis:
    """Each row's inclusive and self time from the same hooked forwards; "other" is the
    root's self time, so the top-level rows' inclusive times plus "other" (and every row's
    self time plus "other") equal the hooked whole by construction."""
    rows = []
    for r in a.layers:
        mt = _row_time(r, per, per.whole_ms, session) if per else None
        why = None if mt else _unattributed(r, per, depth, session.runtime.name)
        rows.append(dataclasses.replace(r, measured=mt, unattributed=why))
    out = dataclasses.replace(a, layers=rows, attribution=_attribution(per, session, depth))
    if per is None:
        return out
    whole, other = per.whole_ms, per.own.get("", 0.0)
    totals = {**a.totals, "other_ms": round(other, 6),
              "other_share": round(other / whole, 4) if whole else None,
              "attributed_ms": round(whole, 6), "unhooked_ms": round(per.unhooked_ms, 6),
              "hook_overhead": round(whole / per.unhooked_ms - 1, 4) if per.unhooked_ms
              else None}
    return dataclasses.replace(out, totals=totals)
