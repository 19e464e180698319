"""``profile`` orchestration: planned cases run, budgets checked, baselines compared."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import DsconvError, InputError
from ..gate import check_budget, compare_baseline, env_mismatch, peak_scale
from ..results import ProfileCaseResult, Speedup, to_json
from ..suite import PlannedCase
from . import Hooks

__all__ = ["ProfileRun", "apply_baseline", "plan_results", "run_profile", "timed_seconds"]

#: budget metrics only a measurement can check
MEASURED_METRICS = ("max_latency_ms", "min_speedup")


@dataclass(frozen=True)
class ProfileRun:
    cases: list[ProfileCaseResult]
    environment: dict[str, Any]
    #: Ctrl-C stopped the run: ``cases`` holds the ones that finished
    interrupted: bool = False
    #: runtime -> why it failed (the others ran)
    runtime_errors: dict[str, str] = dataclasses.field(default_factory=dict)


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
        out.append(ProfileCaseResult(
            name=pc.name, source=source, analytic=analytic,
            budget=check_budget(static, analytic) if "needs" not in analytic else {},
            verdict="planned",
            budget_pending=[k for k in pc.budget
                            if k in MEASURED_METRICS or "needs" in analytic]))
    return out


def run_profile(cfg: Any, planned: list[PlannedCase], recalibrate: bool,
                hooks: Hooks = Hooks(),
                before_cases: Callable[[dict[str, Any]], None] | None = None) -> ProfileRun:
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
    session = open_session(opts, recalibrate, on_status=hooks.status, on_warn=hooks.warn)
    if before_cases is not None:
        before_cases(session.environment)
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
                                   others.get(pc.name))
            except KeyboardInterrupt:
                interrupted = True
                break
            except (Exception, SystemExit) as e:  # user code never decides the exit code
                first = str(e).splitlines()[0] if str(e) else ""
                error = first if isinstance(e, DsconvError) else (
                    f"{type(e).__name__}: {first}".rstrip(": "))
                hooks.warn(f"{pc.name}: could not run: {error}")
                result = ProfileCaseResult(pc.name, _source(pc, cfg),
                                           pc.analytic(cfg.batch, cfg.dtype), {}, "error",
                                           error=error)
            advance(pc.name)
            cases.append(result)
    if interrupted:
        hooks.warn(f"interrupted after {len(cases)} case(s)")
    return ProfileRun(cases, session.environment, interrupted, dict(session.errors))


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


def _ab_vs(model: Any, other: Any, shape: tuple[int, ...], session: Any) -> Speedup:
    """The model against its ``vs:`` in one job: speedup = time(vs) / time(model)."""
    import copy

    from ..stats import compare_samples
    from ..torch_backend.measure import ab_modules

    fmt = session.options.memory_formats[-1]
    mine, theirs = ab_modules(lambda: copy.deepcopy(model), shape, fmt,
                              lambda: copy.deepcopy(other), shape, fmt, session)
    ab = compare_samples(mine.samples_ms or [], theirs.samples_ms or [])
    return Speedup(measured=round(theirs.median_ms / mine.median_ms, 4), theoretical=None,
                   memory_format=fmt).with_ab(ab)


def _run_case(pc: PlannedCase, cfg: Any, session: Any, model: Any,
              other: Any = None) -> ProfileCaseResult:
    from ..plan import PlanOptions
    from ..torch_backend.measure import measure_model
    from .compare import measure_layer, measure_preset_in

    analytic = pc.analytic(cfg.batch, cfg.dtype)
    r = ProfileCaseResult(pc.name, _source(pc, cfg), analytic, {}, "pass")
    if pc.layer is not None:
        layer = measure_layer(pc.layer, session)
        assert layer.speedup is not None
        r = dataclasses.replace(
            r, measured=layer.candidate.measured, standard_measured=layer.standard.measured,
            speedup_by_runtime=layer.speedup_by_runtime,
            speedup=Speedup(layer.speedup.measured, layer.speedup.theoretical),
            why=layer.why, timed_s=timed_seconds(layer))
    elif pc.preset is not None:
        preset = measure_preset_in(pc.preset, cfg.batch, cfg.dtype, session)
        r = dataclasses.replace(
            r, measured=preset["measured"],
            stages=[{"stage": s["stage"], "share_macs": s["share_macs"],
                     "share_time": s["measured"].share_time} for s in preset["stages"]],
            timed_s=timed_seconds(preset))
    else:
        m = pc.model
        res = measure_model(model, tuple(m.input_shape), session, m.convert,
                            PlanOptions(m.min_channels, (), (), m.depth_multiplier))
        r = dataclasses.replace(
            r, analytic={**{k: v for k, v in analytic.items() if k != "needs"},
                         **res.analytic},
            measured=res.measured, original=res.original, speedup=res.speedup,
            conversion=res.conversion, timed_s=timed_seconds(res))
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
            r = dataclasses.replace(r, vs={"source": label, "speedup": _ab_vs(
                model, other, tuple(m.input_shape), session)})
    vs_sp: Speedup | None = r.vs["speedup"] if r.vs else None
    slowdown = (round(1 / vs_sp.estimate - 1, 4) if vs_sp is not None and vs_sp.estimate
                else None)
    values = {**r.analytic,
              "latency_ms": r.measured.median_ms if r.measured else None,
              "speedup": r.speedup.measured if r.speedup else None, "slowdown": slowdown}
    budget = check_budget(pc.budget, values)
    if "max_slowdown" in budget and vs_sp is not None and slowdown is not None:
        # asv's rule: slower beyond the threshold AND significant, else no alarm
        limit = budget["max_slowdown"].limit
        p = vs_sp.p_value if vs_sp.p_value is not None else 1.0
        budget["max_slowdown"] = dataclasses.replace(
            budget["max_slowdown"], ok=not (slowdown > limit and p < 0.01))
    failures = [f"{k}: {v.value} vs limit {v.limit}" for k, v in budget.items() if not v.ok]
    return dataclasses.replace(r, budget=budget, failures=failures,
                               verdict="fail" if failures else "pass")


def apply_baseline(cases: list[ProfileCaseResult], base: dict[str, Any], threshold: float,
                   environment: dict[str, Any], normalize: bool = False
                   ) -> list[ProfileCaseResult]:
    """Each case's change against the stored baseline (U test + threshold); a regression
    fails the case. A baseline from another environment is marked cross-environment and,
    with ``normalize``, scaled by the ratio of calibrated peaks for the case's bound."""
    by_name = {c.get("name"): c for c in base.get("cases", [])}
    cross = bool(env_mismatch(environment, base.get("environment", {})))
    out = []
    for c in cases:
        old = by_name.get(c.name, {}).get("measured")
        scale = 1.0
        if normalize and cross and c.measured is not None:
            scale = peak_scale(base.get("environment", {}), environment, c.measured.bound)
        check = compare_baseline(to_json(c.measured) if c.measured else None, old, threshold,
                                 scale=scale)
        if cross:
            check["cross_environment"] = True
        c = dataclasses.replace(c, baseline=check)
        if check["status"] == "regression":
            c = dataclasses.replace(c, verdict="fail", failures=[
                *(c.failures or []),
                f"regression: median {100 * check['change']:+.1f}% vs baseline"])
        out.append(c)
    return out


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
