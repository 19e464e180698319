"""``profile`` orchestration: planned cases run, budgets checked, baselines compared."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import DsconvError, InputError, describe, is_real_interrupt
from ..gate import MEASURED_METRICS, case_verdict, check_budget
from ..results import ProfileCaseResult, Speedup, to_json
from ..stats import sig
from ..suite import PlannedCase
from . import Hooks

__all__ = ["ProfileRun", "plan_results", "run_profile", "timed_seconds"]


@dataclass(frozen=True)
class ProfileRun:
    cases: list[ProfileCaseResult]
    environment: dict[str, Any]
    #: Ctrl-C stopped the run: ``cases`` holds the ones that finished
    interrupted: bool = False
    #: runtime -> why it failed (the others ran)
    runtime_errors: dict[str, str] = dataclasses.field(default_factory=dict)
    #: what the run warned about beyond its cases' flags (a calibration still
    #: implausible and not cached, a recalibration): the reports and step summary say it
    warnings: list[str] = dataclasses.field(default_factory=list)


def _source(pc: PlannedCase, cfg: Any) -> dict[str, Any]:
    from ..config import model_path

    if pc.layer is not None:
        return {"kind": "layer", **{k: list(v) if isinstance(v, tuple) else v
                                    for k, v in pc.layer.request.items()}}
    if pc.preset is not None:
        p = pc.preset
        return {"kind": "preset", "name": p.name, "width": p.width,
                "resolution": p.resolution, "classes": p.classes}
    assert pc.model is not None
    return {"kind": "model", "path": str(model_path(cfg, pc.model)),
            "input_shape": pc.model.input_shape, "convert": pc.model.convert}


def plan_results(cfg: Any, planned: list[PlannedCase]) -> list[ProfileCaseResult]:
    """``--dry-run``: each case with its analytic numbers and the budgets that can be
    checked without measuring; the measured ones are listed as pending."""
    from ..config import model_file_format, model_path
    from ..precheck import arch_problem, unsafe_globals

    out = []
    for pc in planned:
        source = _source(pc, cfg)
        if pc.model is not None:
            source["format"] = model_file_format(cfg, pc.index) + ", needs torch"
            m, key = pc.model, ("cases", pc.index, "model")
            unsafe = unsafe_globals(model_path(cfg, m))
            if unsafe and not m.trust_pickle:
                raise cfg.error(f"{model_path(cfg, m)} holds pickled objects ({unsafe[0]}); "
                                "a real run refuses it without trust_pickle: true (and "
                                "--trust-pickle)", (*key, "path"))
            problem = arch_problem(m.arch, cfg._dir) if m.arch else None
            if problem:
                raise cfg.error(f"arch {m.arch!r}: {problem}", (*key, "arch"))
        analytic = pc.analytic(cfg.batch, cfg.dtype)
        static = {k: v for k, v in pc.budget.items() if k not in MEASURED_METRICS}
        budget = check_budget(static, analytic) if "needs" not in analytic else {}
        verdict, failures = case_verdict(budget, dry_run=True)
        out.append(ProfileCaseResult(
            name=pc.name, source=source, analytic=analytic, budget=budget,
            verdict=verdict, failures=failures or None,  # type: ignore[arg-type]
            budget_pending=[k for k in pc.budget
                            if k in MEASURED_METRICS or "needs" in analytic]))
    return out


def run_profile(cfg: Any, planned: list[PlannedCase], recalibrate: bool,
                hooks: Hooks = Hooks(),
                before_cases: Callable[[dict[str, Any]], None] | None = None,
                strict: bool = False) -> ProfileRun:
    """Run every planned case; a case that cannot run is an ``error`` verdict and the rest
    go on. Models are loaded first: an unsafe or broken file is a config error (exit 2)
    before anything is measured."""
    from ..config import arch_spec, model_path
    from ..torch_backend.loading import load_model
    from ..torch_backend.measure import open_session
    from ..torch_backend.timing import MeasureOptions

    fmts = (("nchw", "channels_last") if cfg.memory_format == "both" else (cfg.memory_format,))
    names = [cfg.runtime] if isinstance(cfg.runtime, str) else list(cfg.runtime)
    opts = MeasureOptions(cfg.device, cfg.dtype, cfg.threads, fmts, cfg.timing.min_time,
                          cfg.timing.warmup, runtimes=tuple(dict.fromkeys(names)) or ("eager",))
    notes: list[str] = []

    def warn(message: str) -> None:
        notes.append(message)
        hooks.warn(message)

    # before_cases (--strict-env) sees the environment before any calibration is taken
    session = open_session(opts, recalibrate, on_status=hooks.status, on_warn=warn,
                           on_environment=before_cases)
    models, others = {}, {}
    for pc in planned:
        if pc.model is not None:
            m = pc.model
            try:
                models[pc.name] = load_model(
                    model_path(cfg, m), trust_pickle=m.trust_pickle,
                    state_dict_key=m.state_dict_key, arch=arch_spec(cfg, m),
                    arch_kwargs=m.arch_kwargs, warn=hooks.warn).model
            except InputError as e:
                raise cfg.error(e.message, ("cases", pc.index, "model"), e.hint) from None
            if m.vs is not None and m.vs != "ds":
                try:
                    others[pc.name] = _load_vs(cfg, m.vs, hooks)
                except InputError as e:
                    raise cfg.error(e.message, ("cases", pc.index, "model", "vs"),
                                    e.hint) from None
    cases: list[ProfileCaseResult] = []
    interrupted = False
    with hooks.progress(len(planned), "profiling") as advance:
        for pc in planned:
            try:
                result = _run_case(pc, cfg, session, models.get(pc.name),
                                   others.get(pc.name), strict)
                for flag in result.flags or []:
                    hooks.warn(f"{pc.name}: {flag}")
            except BaseException as e:  # user code never decides the exit code
                if is_real_interrupt(e):  # the user's Ctrl-C or SIGTERM, not a forward's
                    interrupted = True
                    break
                first = str(e).splitlines()[0] if str(e) else ""
                error = first if isinstance(e, DsconvError) else describe(e)
                hooks.warn(f"{pc.name}: could not run: {error}")
                result = ProfileCaseResult(pc.name, _source(pc, cfg),
                                           pc.analytic(cfg.batch, cfg.dtype), {}, "error",
                                           error=error)
            advance(pc.name)
            cases.append(result)
    if interrupted:
        hooks.warn(f"interrupted after {len(cases)} case(s)")
    return ProfileRun(cases, session.environment, interrupted, dict(session.errors),
                      list(dict.fromkeys(notes)))


def _load_vs(cfg: Any, vs: Any, hooks: Hooks) -> Any:
    """A ``vs:`` that names a model file (loaded like ``model:``) or a preset."""
    from ..config import arch_spec, model_path

    if vs.preset is not None:
        from ..presets import get_preset
        from ..torch_backend.build import build_preset

        p = vs.preset
        return build_preset(get_preset(p.name, p.width, p.resolution, p.classes))
    from ..torch_backend.loading import load_model

    return load_model(model_path(cfg, vs), trust_pickle=vs.trust_pickle,
                      state_dict_key=vs.state_dict_key, arch=arch_spec(cfg, vs),
                      arch_kwargs=vs.arch_kwargs, warn=hooks.warn).model


def _ab_vs(model: Any, other: Any, shape: tuple[int, ...], session: Any,
           width: float | None) -> Speedup:
    """The model against its ``vs:`` in one job: speedup = time(vs) / time(model).
    Sequential with ``width`` (the max_slowdown limit): rounds are added until the
    interval is narrower than it or the case's time cap is reached."""
    import copy

    from ..stats import compare_samples
    from ..torch_backend.measure import ab_modules

    fmt = session.options.memory_formats[-1]
    mine, theirs = ab_modules(lambda: copy.deepcopy(model), shape, fmt,
                              lambda: copy.deepcopy(other), shape, fmt, session,
                              width=width, time_cap=CASE_TIME_CAP_S)
    ab = compare_samples(mine.samples_ms or [], theirs.samples_ms or [])
    return Speedup(measured=sig(theirs.median_ms / mine.median_ms), theoretical=None,
                   memory_format=fmt).with_ab(ab)


#: seconds of timed runs one case may spend, re-measurement and sequential A/B rounds
#: included
CASE_TIME_CAP_S = 60.0
#: a re-measurement (a verdict its interval straddles) times this many times longer
REMEASURE_FACTOR = 3


def _run_case(pc: PlannedCase, cfg: Any, session: Any, model: Any, other: Any = None,
              strict: bool = False) -> ProfileCaseResult:
    """Measure and judge one case; a verdict its interval straddles is measured again
    (longer, more rounds) if the case's time cap allows, then given (``marginal`` if
    still straddling). ``strict``: marginal verdicts and flagged measurements fail."""
    r = _judge(pc, _measure_case(pc, cfg, session, model, other))
    first = r.timed_s or 0.0
    if r.verdict == "marginal" and first * (1 + REMEASURE_FACTOR) <= CASE_TIME_CAP_S:
        opts = session.options
        session.options = dataclasses.replace(
            opts, min_time=opts.min_time * REMEASURE_FACTOR,
            rounds=opts.rounds * REMEASURE_FACTOR)
        try:
            r = _judge(pc, _measure_case(pc, cfg, session, model, other))
        finally:
            session.options = opts
        r = dataclasses.replace(r, timed_s=round(first + (r.timed_s or 0.0), 4))
    return rejudge(r, strict) if strict else r


def rejudge(r: ProfileCaseResult, strict: bool) -> ProfileCaseResult:
    """The case's verdict and failures given again from its budgets, baseline and flags
    (after a baseline is applied, or with ``--strict``)."""
    verdict, failures = case_verdict(r.budget, baseline=r.baseline, flags=r.flags,
                                     error=r.error, strict=strict)
    return dataclasses.replace(r, verdict=verdict,  # type: ignore[arg-type]
                               failures=failures or None)


def _measure_case(pc: PlannedCase, cfg: Any, session: Any, model: Any,
                  other: Any = None) -> ProfileCaseResult:
    from ..plan import PlanOptions
    from ..torch_backend.measure import measure_model
    from .compare import measure_layer, measure_preset_in, speedup_flag

    analytic = pc.analytic(cfg.batch, cfg.dtype)
    r = ProfileCaseResult(pc.name, _source(pc, cfg), analytic, {}, "pass")
    if pc.layer is not None:
        layer = measure_layer(pc.layer, session)
        assert layer.speedup is not None
        r = dataclasses.replace(
            r, measured=layer.candidate.measured, standard_measured=layer.standard.measured,
            speedup_by_runtime=layer.speedup_by_runtime, speedup=layer.speedup,
            why=layer.why, timed_s=timed_seconds(layer))
    elif pc.preset is not None:
        preset = measure_preset_in(pc.preset, cfg.batch, cfg.dtype, session)
        r = dataclasses.replace(
            r, measured=preset.measured,
            stages=[{"stage": s.stage, "share_macs": s.share_macs,
                     "share_time": s.measured.share_time if s.measured else None}
                    for s in preset.stages],
            timed_s=timed_seconds(preset))
    else:
        m = pc.model
        res = measure_model(model, tuple(m.input_shape), session, m.convert,
                            PlanOptions(m.min_channels, (), (), m.depth_multiplier))
        sp = res.speedup
        if sp is not None and res.original is not None:
            flag = speedup_flag(sp, res.original["measured"], res.measured)
            sp = dataclasses.replace(sp, flag=flag) if flag else sp
        r = dataclasses.replace(
            r, analytic={**{k: v for k, v in analytic.items() if k != "needs"},
                         **res.analytic},
            measured=res.measured, original=res.original, speedup=sp,
            conversion=res.conversion, why=(res.conversion or {}).get("note"),
            timed_s=timed_seconds(res))
        if m.vs is not None:
            if m.vs == "ds":
                import copy

                from ..torch_backend.convert import ConvertOptions, convert_model
                from ..torch_backend.loading import Loaded

                other = copy.deepcopy(model)
                convert_model(Loaded(other, "module", "vs ds"), ConvertOptions(
                    PlanOptions(m.min_channels, (), (), m.depth_multiplier),
                    tuple(m.input_shape)))
            label = "ds" if m.vs == "ds" else (m.vs.path or m.vs.preset.name)
            vs = _ab_vs(model, other, tuple(m.input_shape), session,
                        pc.budget.get("max_slowdown"))
            r = dataclasses.replace(r, vs={"source": label, "speedup": vs})
    return r


def _intervals(r: ProfileCaseResult) -> dict[str, tuple[float, float]]:
    """Each measured budget value's 95% interval: the median latency's (order
    statistics), the speedup's (the interleaved A/B's) and the slowdown's against
    ``vs:`` (the A/B's)."""
    from ..stats import median_ci

    out: dict[str, tuple[float, float]] = {}
    if r.measured is not None and r.measured.samples_ms:
        out["latency_ms"] = median_ci(r.measured.samples_ms)
    sp = r.speedup
    if sp is not None and sp.ci95:
        out["speedup"] = (sp.ci95[0], sp.ci95[1])
    vs_sp: Speedup | None = r.vs["speedup"] if r.vs else None
    if vs_sp is not None and vs_sp.ci95 and min(vs_sp.ci95) > 0:
        out["slowdown"] = (1 / vs_sp.ci95[1] - 1, 1 / vs_sp.ci95[0] - 1)
    return out


def _flags(r: ProfileCaseResult) -> list[str]:
    """The case's noisy and implausible measurements, as ``compare`` flags them."""
    from ..torch_backend.timing import IMPLAUSIBLE, NOISY

    sides = [("measured", r.measured), ("standard", r.standard_measured),
             ("original", (r.original or {}).get("measured"))]
    out = [f"{name}: {part}" for name, m in sides if m is not None and m.flag
           for part in m.flag.split("; ") if part.startswith((NOISY, IMPLAUSIBLE))]
    if r.speedup is not None and r.speedup.flag:
        out.append(f"speedup: {r.speedup.flag}")
    return out


def _judge(pc: PlannedCase, r: ProfileCaseResult) -> ProfileCaseResult:
    """Budgets, each measured one with its interval: met, missed, or ``marginal`` when
    the interval straddles the limit (not a failure); the noisy/implausible flags. The
    value a budget judges is the one its interval belongs to: a speedup is the
    interleaved A/B estimate, never a ratio of medians taken at different times."""
    from .compare import headline

    vs_sp: Speedup | None = r.vs["speedup"] if r.vs else None
    slowdown = (round(1 / vs_sp.estimate - 1, 4) if vs_sp is not None and vs_sp.estimate
                else None)
    values = {**r.analytic,
              "latency_ms": r.measured.median_ms if r.measured else None,
              "speedup": headline(r.speedup) if r.speedup and r.speedup.measured else None,
              "slowdown": slowdown}
    intervals = {k: [sig(lo, 4), sig(hi, 4)] for k, (lo, hi) in _intervals(r).items()}
    budget = check_budget(pc.budget, values, intervals)
    r = dataclasses.replace(r, budget=budget, flags=_flags(r) or None)
    return rejudge(r, strict=False)


def timed_seconds(obj: Any) -> float:
    """Seconds spent in timed runs for every measurement inside ``obj`` (a result)."""
    return _timed(to_json(obj))


def _timed(obj: Any) -> float:
    if isinstance(obj, dict):
        own = obj["median_ms"] * obj["calls"] / 1e3 if "calls" in obj else 0.0
        by_fmt = obj.get("measured_by_format")
        rest = {k: v for k, v in obj.items() if not (by_fmt and k == "measured")}
        return round(own + sum(_timed(v) for v in rest.values()), 4)
    if isinstance(obj, list):
        return round(sum(_timed(v) for v in obj), 4)
    return 0.0
