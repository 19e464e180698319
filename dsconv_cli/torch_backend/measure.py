"""Measurement primitives on real modules: a session (device, dtype, calibration, runtime),
one module timed in every requested layout, memory checks, and a whole loaded model.

Orchestration (which modules, in which order, what the results mean) lives in
:mod:`dsconv_cli.services`; this module only measures.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..cost import DTYPE_BYTES, Cost
from ..errors import BackendError, InputError
from ..options import check_int8
from ..results import BlockStats, Measurement, Speedup
from ..stats import compare_samples, sig
from .runtimes import Runtime, RuntimeFailure, get_runtime
from .timing import (
    ABOVE_ROOFLINE,
    Calibration,
    MeasureOptions,
    available_memory,
    check_dtype,
    environment,
    is_oom,
    load_calibration,
    noise_flag,
    prepare,
    resolve_device,
    roofline,
    time_call,
)

__all__ = ["ModelTiming", "Session", "SkipCase", "check_memory", "is_oom", "measure_all",
           "measure_model", "measure_module", "module_times", "ModuleTimes", "open_session"]

Progress = Callable[[str], None]


class SkipCase(BackendError):
    """A case that cannot run here (too big for memory); the rest still runs. Exit 1."""


@dataclass
class Session:
    """Everything a run needs once: device, dtype, options, calibration, runtime, environment."""

    options: MeasureOptions
    device: torch.device
    dtype: torch.dtype
    calibration: Calibration
    runtimes: dict[str, Runtime]
    environment: dict[str, Any]
    #: runtime -> why it failed (the first failure; the other runtimes went on)
    errors: dict[str, str] = dataclasses.field(default_factory=dict)
    #: the calibration was redone in this run (a measurement landed above its roofline)
    recalibrated: bool = False
    on_warn: Progress | None = None
    #: ``--dtype int8``: the fp32 ONNX runtime the int8 one is timed against
    fp32: Runtime | None = None

    def judge(self, flops: int, bytes_moved: int, t: BlockStats) -> Measurement:
        """The roofline of one timing. A first one above its bound (fraction >
        ``ABOVE_ROOFLINE``) redoes the calibration once for the run and is judged again:
        what is still above stays flagged implausible."""
        m = roofline(flops, bytes_moved, t, self.calibration)
        if self.fp32 is not None and m.roofline_fraction > ABOVE_ROOFLINE:
            # int8 arithmetic has its own peak, above the calibrated fp32 one: not a sign
            # of a stale calibration, and not implausible
            return dataclasses.replace(m, flag=noise_flag(t))
        if m.roofline_fraction > ABOVE_ROOFLINE and not self.recalibrated:
            self.recalibrated = True
            if self.on_warn:
                self.on_warn(f"a measurement ran at {100 * m.roofline_fraction:.0f}% of the "
                             "calibrated roofline: recalibrating once")
            self.calibration = load_calibration(
                self.device, self.options.dtype, self.options.threads, recalibrate=True,
                on_warn=self.on_warn)
            self.environment["calibration"] = calibration_record(self.calibration)
            self.environment["recalibrated"] = True
            m = roofline(flops, bytes_moved, t, self.calibration)
        return m

    @property
    def runtime(self) -> Runtime:
        """The first runtime asked for: A/B comparisons and per-module times use it."""
        return next(iter(self.runtimes.values()))


def check_threads(threads: int | None) -> None:
    """1 to this machine's logical CPUs: more makes OpenMP crash (100000 segfaulted)."""
    cpus = os.cpu_count() or 1
    if threads is not None and not 1 <= threads <= cpus:
        raise InputError(f"--threads must be 1 to {cpus} (this machine's logical CPUs), got "
                         f"{threads}")


def calibration_record(cal: Calibration) -> dict[str, Any]:
    """A calibration as the report's ``environment.calibration`` holds it."""
    return {"peak_gflops": cal.peak_gflops, "spread": cal.spread,
            "bandwidth_gbps": [{"bytes": s, "copy": c, "read": r} for s, c, r in cal.bandwidth]}


def open_session(options: MeasureOptions, recalibrate: bool = False,
                 on_status: Progress | None = None, on_warn: Progress | None = None,
                 on_environment: Callable[[dict[str, Any]], None] | None = None) -> Session:
    """Check the options against this machine (``InputError`` -> exit 2) and calibrate.
    ``on_environment`` sees the environment (without its calibration) first: a check
    that needs no calibration (``--strict-env``) fails before one is taken."""
    from ..errors import InputError

    check_threads(options.threads)
    if not (math.isfinite(options.min_time) and 0 < options.min_time <= 3600):
        raise InputError(f"--min-time must be a finite number of seconds in (0, 3600], got "
                         f"{options.min_time}")
    if options.warmup < 0:
        raise InputError(f"--warmup must be >= 0, got {options.warmup}")
    device = resolve_device(options.device)
    check_int8(options)
    fp32 = None
    if options.dtype == "int8":
        runtimes, fp32 = _int8_runtimes(options, device)
        td = torch.float32  # int8 is quantized from the fp32 module's ONNX graph
    else:
        runtimes = {name: get_runtime(name, device, options.threads)
                    for name in options.runtimes}
        td = check_dtype(options.dtype, device)
    env = environment(device, options.dtype, options.threads)
    env["runtime"] = options.runtimes[0]
    if len(runtimes) > 1 or options.runtimes != ("eager",):
        env["runtimes"] = {name: rt.record() for name, rt in runtimes.items()}
    if on_environment is not None:
        on_environment(env)
    cal_dtype = "fp32" if options.dtype == "int8" else options.dtype
    cal = load_calibration(device, cal_dtype, options.threads, recalibrate, on_status,
                           on_warn)
    env["calibration"] = calibration_record(cal)
    return Session(options, device, td, cal, runtimes, env, on_warn=on_warn, fp32=fp32)


def _int8_runtimes(options: MeasureOptions, device: torch.device
                   ) -> tuple[dict[str, Runtime], Runtime]:
    """``--dtype int8``: ONNX Runtime's int8 variant (timed) and its fp32 self (the
    reference it is timed against)."""
    from .runtimes.onnx import Int8Options, OnnxRuntime

    cal = None
    if options.calibration_data:
        from pathlib import Path

        from .calibrate import load_inputs

        cal = load_inputs(Path(options.calibration_data), "--calibration-data")
    rt = OnnxRuntime(device, options.threads, Int8Options(options.quantize_scheme, cal))
    return {rt.name: rt}, OnnxRuntime(device, options.threads)


Timed = tuple[Measurement, "dict[str, Measurement] | None"]


def measure_module(make: Callable[[], nn.Module], shape: tuple[int, ...], c: Cost,
                   s: Session) -> Timed:
    """Time a freshly built module in every requested layout, in the session's runtime.

    Returns the best layout's measurement and, when more than one layout was measured,
    every layout's."""
    by_fmt = _in_runtime(s.runtime, make, shape, c, s)
    if not by_fmt:
        raise RuntimeFailure(f"{s.runtime.name}: {s.errors.get(s.runtime.name, 'failed')}")
    best = min(by_fmt.values(), key=lambda m: m.median_ms)
    return best, (by_fmt if len(by_fmt) > 1 else None)


def _in_runtime(rt: Runtime, make: Callable[[], nn.Module], shape: tuple[int, ...], c: Cost,
                s: Session) -> dict[str, Measurement]:
    """One runtime, every layout it takes; a failure is recorded in ``s.errors``."""
    by_fmt: dict[str, Measurement] = {}
    fmts = [f for f in s.options.memory_formats if rt.layouts is None or f in rt.layouts]
    for fmt in fmts or list(rt.layouts or ()):
        module, x = prepare(make(), shape, s.device, s.dtype, fmt)
        try:
            prepared = rt.prepare(module, x)
        except RuntimeFailure as e:
            s.errors.setdefault(rt.name, str(e))
            return by_fmt
        t = time_call(prepared.fn, s.device, min_time=s.options.min_time,
                      warmup=s.options.warmup, threads=s.options.threads, memory_format=fmt)
        m = s.judge(c.flops, c.bytes, t)
        by_fmt[fmt] = dataclasses.replace(m, runtime=rt.name, **prepared.info)
        del module, x, prepared
    return by_fmt


def measure_all(make: Callable[[], nn.Module], shape: tuple[int, ...], c: Cost,
                s: Session) -> tuple[Measurement, dict[str, Measurement] | None,
                                     list[Measurement] | None]:
    """The first runtime as :func:`measure_module` does, plus, with several runtimes, each
    runtime's best layout (a runtime that fails is in ``s.errors`` and left out)."""
    best, by_fmt = measure_module(make, shape, c, s)
    if len(s.runtimes) == 1:
        return best, by_fmt, None
    per = [best]
    for rt in list(s.runtimes.values())[1:]:
        got = _in_runtime(rt, make, shape, c, s)
        if got:
            per.append(min(got.values(), key=lambda m: m.median_ms))
    return best, by_fmt, per


@dataclass(frozen=True)
class ModuleTimes:
    """Per-module times attributed inside the same hooked forwards (ms per forward, means
    over ``runs`` forwards; the root is ``""``).

    ``inclusive``: a module's calls, the modules they call included; ``own``: the same
    minus the time of the hooked modules called inside it (exclusive). The root's
    inclusive time is the whole hooked forward and its own time is "other" (what runs
    outside every top-level module, hook costs around them included). Means of the same
    forwards add up, medians do not: by construction the own times of all modules sum to
    the whole, and a module's inclusive time is its own plus its callees' inclusive times.
    ``medians`` are the inclusive times' medians (for reference only)."""

    inclusive: dict[str, float]
    own: dict[str, float]
    medians: dict[str, float]
    #: the modules that had hooks (one that did and has no time was never called
    #: through its forward: fused into, or inlined by, its parent)
    hooked: frozenset[str]
    runs: int
    #: mean of forwards without hooks, interleaved with the hooked ones
    unhooked_ms: float

    @property
    def whole_ms(self) -> float:
        return self.inclusive.get("", 0.0)


class _Clock:
    """Forward pre/post hooks keeping a stack of open calls: each call's elapsed time goes to
    its module's inclusive time and to its caller's "called" sum, so own = elapsed - called.
    One synchronised clock reading per hook, taken last in the pre-hook and first in the
    post-hook (a hook's own cost falls in the caller's time, never in the module's)."""

    def __init__(self, names: dict[int, str], sync: Callable[[], None]) -> None:
        self.names, self.sync = names, sync
        self.stack: list[list[float]] = []
        self.inclusive: dict[str, float] = {}
        self.own: dict[str, float] = {}

    def pre(self, mod: nn.Module, args: Any) -> None:
        self.sync()
        self.stack.append([time.perf_counter(), 0.0])

    def post(self, mod: nn.Module, args: Any, out: Any) -> None:
        self.sync()
        t1 = time.perf_counter()
        t0, called = self.stack.pop()
        dt = (t1 - t0) * 1e3
        name = self.names[id(mod)]
        self.inclusive[name] = self.inclusive.get(name, 0.0) + dt
        self.own[name] = self.own.get(name, 0.0) + dt - called
        if self.stack:
            self.stack[-1][1] += dt

    def reset(self) -> None:
        self.stack.clear()
        self.inclusive, self.own = {}, {}


def module_times(model: nn.Module, shape: tuple[int, ...], memory_format: str, s: Session,
                 max_depth: int = 3, runs: int = 7) -> ModuleTimes:
    """Each module's inclusive and own time per forward (:class:`ModuleTimes`), from forward
    pre/post hooks in the same forwards (one synchronised clock reading per hook); modules
    deeper than ``max_depth`` are not hooked (hooks cost time too), their time is their
    parent's own. Forwards without hooks, interleaved, measure what the hooks cost."""
    module, x = prepare(model, shape, s.device, s.dtype, memory_format)
    names = {id(m): n for n, m in module.named_modules()}
    sync = (lambda: torch.cuda.synchronize(s.device)) if s.device.type == "cuda" else (
        lambda: None)
    clock = _Clock(names, sync)
    hooked = [m for n, m in module.named_modules() if n == "" or n.count(".") + 1 <= max_depth]

    def forward(with_hooks: bool) -> float:
        clock.reset()
        hooks = [h for m in hooked for h in (m.register_forward_pre_hook(clock.pre),
                                             m.register_forward_hook(clock.post))
                 ] if with_hooks else []
        try:
            sync()
            t0 = time.perf_counter()
            module(x)
            sync()
            return (time.perf_counter() - t0) * 1e3
        finally:
            for h in hooks:
                h.remove()

    hooked_runs: list[tuple[dict[str, float], dict[str, float]]] = []
    bare: list[float] = []
    warm = max(1, s.options.warmup)
    before = torch.get_num_threads()
    if s.options.threads:
        torch.set_num_threads(s.options.threads)
    try:
        with torch.inference_mode():
            for i in range(warm + runs):
                order = (False, True) if i % 2 else (True, False)  # alternate who goes first
                for with_hooks in order:
                    ms = forward(with_hooks)
                    if i < warm:
                        continue
                    if not with_hooks:
                        bare.append(ms)
                        continue
                    hooked_runs.append((clock.inclusive, clock.own))
    finally:
        torch.set_num_threads(before)
    return _attribute(hooked_runs, bare, frozenset(names[id(m)] for m in hooked))


def _attribute(hooked_runs: list[tuple[dict[str, float], dict[str, float]]],
               bare: list[float], hooked: frozenset[str]) -> ModuleTimes:
    """Means over the same hooked forwards; a forward over twice the median whole (an
    interruption) is left out of every module's mean alike, so the sums still hold."""
    import statistics

    cut = 2 * statistics.median(i.get("", 0.0) for i, _ in hooked_runs)
    kept = [r for r in hooked_runs if r[0].get("", 0.0) <= cut]
    incl: dict[str, list[float]] = {}
    own: dict[str, float] = {}
    for inclusive, own_ in kept:
        for k, v in inclusive.items():
            incl.setdefault(k, []).append(v)
            own[k] = own.get(k, 0.0) + own_[k]
    n = len(kept)
    bare_cut = 2 * statistics.median(bare)
    bare = [b for b in bare if b <= bare_cut]
    return ModuleTimes(
        inclusive={k: sum(v) / n for k, v in incl.items()},
        own={k: v / n for k, v in own.items()},
        medians={k: statistics.median(v) for k, v in incl.items()},
        hooked=hooked, runs=n, unhooked_ms=sum(bare) / len(bare))


def ab_modules(make_a: Callable[[], nn.Module], shape_a: tuple[int, ...], fmt_a: str,
               make_b: Callable[[], nn.Module], shape_b: tuple[int, ...], fmt_b: str,
               s: Session, width: float | None = None, time_cap: float = 0.0,
               alpha: float = 0.05, runtime: Runtime | None = None) -> tuple[Any, Any]:
    """Two modules timed interleaved (``timing.ab_time``), each in its layout, in the
    session's runtime (or ``runtime``); returns both sides' block statistics. With
    ``width``, sequential: rounds are added until the ratio's ``1 - alpha`` interval is
    narrower than ``width`` (:func:`dsconv_cli.stats.settled`) or ``time_cap`` seconds
    have passed."""
    from functools import partial

    from ..stats import settled
    from .timing import ab_time

    rt = runtime or s.runtime
    ma, xa = prepare(make_a(), shape_a, s.device, s.dtype, fmt_a)
    mb, xb = prepare(make_b(), shape_b, s.device, s.dtype, fmt_b, seed=1)
    return ab_time(rt.prepare(ma, xa).fn, rt.prepare(mb, xb).fn, s.device,
                   min_time=s.options.min_time, rounds=s.options.rounds,
                   warmup=s.options.warmup, threads=s.options.threads,
                   formats=(fmt_a, fmt_b), time_cap=time_cap,
                   until=None if width is None else partial(settled, width=width,
                                                            alpha=alpha))


def check_memory(need: int, s: Session, what: str) -> None:
    free = available_memory(s.device)
    if need > 0.8 * free:
        raise SkipCase(f"{what} needs about {need / 1e9:.2f} GB on {s.device.type}; "
                       f"{free / 1e9:.2f} GB free")


#: a model case with ``convert: true`` whose model has no layer to convert
NOTHING_TO_CONVERT = "nothing to convert: no layer is eligible, so there is no speedup to measure"


@dataclass(frozen=True)
class ModelTiming:
    """A loaded model timed (and, when converting, its conversion timed beside it)."""

    #: params and MACs of the model the budgets apply to (the converted one when converting)
    analytic: dict[str, Any]
    measured: Measurement
    original: dict[str, Any] | None = None
    speedup: Speedup | None = None
    conversion: dict[str, Any] | None = None


def measure_model(model: nn.Module, input_shape: tuple[int, ...], s: Session,
                  convert: bool = False, plan: Any = None,
                  on_progress: Progress | None = None) -> ModelTiming:
    """Time a loaded model, and with ``convert`` its depthwise separable conversion too.

    The caller's model is never changed: it is timed as a copy (moving a module to a
    device, dtype or layout is in place in PyTorch), and converted as another copy."""
    import copy

    from .convert import ConvertOptions, Loaded, convert_model
    from .counting import model_cost

    e = DTYPE_BYTES[s.options.dtype]
    before = model_cost(model, input_shape, e)
    check_memory(3 * (before.params + before.peak_activation_elems) * e, s, "model")

    def run(m: nn.Module, c: Cost, label: str) -> Measurement:
        if on_progress:
            on_progress(label)
        return measure_module(lambda: copy.deepcopy(m), c.input_shape, c, s)[0]

    if not convert:
        return ModelTiming({"params": before.params, "macs": before.macs, "memory_mb": None},
                           run(model, before, "model"))
    converted = copy.deepcopy(model)
    rep = convert_model(Loaded(converted, "module", "profile"),
                        ConvertOptions(plan, input_shape))
    if rep.totals.converted == 0:  # the same model twice is no speedup: say so, time once
        return ModelTiming(
            {"params": before.params, "macs": before.macs, "memory_mb": None},
            run(model, before, "model"),
            conversion={"converted": 0, "layers": rep.totals.layers,
                        "rel_output_diff": None, "note": NOTHING_TO_CONVERT})
    after = model_cost(converted, input_shape, e)
    original = run(model, before, "original")
    measured = run(converted, after, "converted")
    if on_progress:
        on_progress("A/B")
    # the speedup a budget judges: the two models interleaved, converted = A
    mine, theirs = ab_modules(lambda: copy.deepcopy(converted), input_shape,
                              measured.memory_format, lambda: copy.deepcopy(model),
                              input_shape, original.memory_format, s)
    ab = compare_samples(mine.samples_ms or [], theirs.samples_ms or [])
    return ModelTiming(
        analytic={"params": after.params, "macs": after.macs, "memory_mb": None},
        measured=measured,
        original={"params": before.params, "macs": before.macs,
                  "measured": original},
        speedup=Speedup(measured=sig(original.median_ms / measured.median_ms),
                        theoretical=round(before.macs / after.macs, 4) if after.macs else None,
                        memory_format=measured.memory_format).with_ab(ab),
        conversion={"converted": rep.totals.converted, "layers": rep.totals.layers,
                    "rel_output_diff": rep.verification.rel_diff},
    )


#: node types in ORT's profile of an int8 graph: int8 arithmetic (and ops that move int8
#: values as they are), the conversions between int8 and fp32, and layout changes (ORT's
#: int8 convs run NHWC: a Transpose on each side); anything else ran in fp32 between a
#: DequantizeLinear and a QuantizeLinear
INT8_OPS = frozenset({"QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul",
                      "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearConcat",
                      "QLinearLeakyRelu", "QLinearSigmoid", "QGemm", "MatMulInteger",
                      "ConvInteger", "MaxPool", "Reshape", "Flatten", "Squeeze",
                      "Unsqueeze"})
CONVERSIONS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})
LAYOUT = frozenset({"Transpose", "ReorderInput", "ReorderOutput"})


def int8_versus_fp32(make: Callable[[], nn.Module], shape: tuple[int, ...], s: Session,
                     time_cap: float = 0.0) -> Any:
    """``--dtype int8``: the module in the session's int8 runtime and in its fp32 self,
    timed interleaved (``timing.ab_time``); the node types ORT ran for the int8 graph
    from its profile, and, where int8 is not faster, what ran instead of int8 kernels."""
    from ..results import Int8Timing, OpTime
    from ..stats import compare_samples
    from .quantize import ran_ops
    from .timing import ab_time

    assert s.fp32 is not None, "int8_versus_fp32 needs a --dtype int8 session"
    module, x = prepare(make(), shape, s.device, s.dtype, "nchw")
    p8, p32 = s.runtime.prepare(module, x), s.fp32.prepare(module, x)
    a, b = ab_time(p8.fn, p32.fn, s.device, min_time=s.options.min_time,
                   rounds=s.options.rounds, warmup=s.options.warmup,
                   threads=s.options.threads, time_cap=time_cap)
    ab = compare_samples(a.samples_ms or [], b.samples_ms or [])  # > 1: int8 faster
    ops = [OpTime(**r) for r in ran_ops(p8.artifact or b"", x.detach().cpu().numpy(),
                                        s.options.threads)] if p8.artifact else []
    sp = Speedup(measured=sig(b.median_ms / a.median_ms), theoretical=None).with_ab(ab)
    why = None if ab.verdict == "faster" else int8_why(ops, ab.verdict)
    return Int8Timing(scheme=str(p8.info.get("scheme")), fp32_ms=round(b.median_ms, 6),
                      int8_ms=round(a.median_ms, 6), speedup=sp,
                      rel_error=float(p8.info.get("rel_error", float("nan"))), ops=ops,
                      why=why)


def int8_why(ops: list[Any], verdict: str | None) -> str:
    """Why int8 was not faster, from the node types ORT ran: the share of node time spent
    converting between int8 and fp32, and the ops that ran in fp32 (no int8 kernel)."""
    conv = sum(o.share for o in ops if o.op in CONVERSIONS)
    layout = sum(o.share for o in ops if o.op in LAYOUT)
    fp32 = [o for o in ops if o.op not in CONVERSIONS | INT8_OPS | LAYOUT]
    fp32_share = sum(o.share for o in fp32)
    head = "int8 is slower" if verdict == "slower" else "int8 is not measurably faster"
    ran = ", ".join(f"{o.op} x{o.calls} {100 * o.share:.0f}%" for o in ops[:6])
    parts = [f"ORT ran {ran}"]
    if conv:
        parts.append(f"{100 * conv:.0f}% of node time converts between int8 and fp32 "
                     "(QuantizeLinear/DequantizeLinear)")
    if layout:
        parts.append(f"{100 * layout:.0f}% changes layout (Transpose: ORT's int8 convs run "
                     "NHWC)")
    if fp32:
        parts.append(f"{100 * fp32_share:.0f}% runs in fp32 between them ("
                     + ", ".join(sorted({o.op for o in fp32})) + ": no int8 kernel)")
    return f"{head}: " + "; ".join(parts)


def ort_latencies(graphs: dict[str, bytes], x: torch.Tensor, options: Any) -> dict[str, Any]:
    """ONNX graphs (name -> bytes; the first is the reference) timed in ONNX Runtime on
    ``x``, each pair interleaved (``timing.ab_time``): ``latency_ms`` per graph (median
    and IQR of its blocks in its first pairing) and ``speedups``: "A_vs_B" = time(B) /
    time(A) with its interval, for every later graph against every earlier one."""
    import itertools

    from ..stats import compare_samples
    from .export import onnx_session
    from .timing import ab_time

    feed_x = x.detach().cpu().contiguous().numpy()
    fns = {}
    for name, data in graphs.items():
        sess = onnx_session(data, options.threads)
        feed = {sess.get_inputs()[0].name: feed_x}
        fns[name] = (lambda sess=sess, feed=feed: sess.run(None, feed))
    latency: dict[str, dict[str, float]] = {}
    speedups: dict[str, Speedup] = {}
    for early, late in itertools.combinations(list(graphs), 2):
        a, b = ab_time(fns[late], fns[early], torch.device("cpu"), min_time=options.min_time,
                       rounds=options.rounds, warmup=options.warmup, threads=options.threads)
        for name, st in ((late, a), (early, b)):
            latency.setdefault(name, {"median_ms": round(st.median_ms, 6),
                                      "iqr_ms": round(st.iqr_ms, 6)})
        ab = compare_samples(a.samples_ms or [], b.samples_ms or [])
        speedups[f"{late}_vs_{early}"] = Speedup(
            measured=sig(b.median_ms / a.median_ms), theoretical=None).with_ab(ab)
    return {"latency_ms": {n: latency[n] for n in graphs}, "speedups": speedups}
