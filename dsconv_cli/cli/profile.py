"""``dsconv profile config.yaml``: a YAML-described benchmark with budgets, for CI."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

if TYPE_CHECKING:  # the config module builds pydantic models: loaded only when used
    from ..config import Config, PlannedCase
from ..errors import DsconvError, InputError
from ..gate import DEFAULT_REGRESSION_THRESHOLD, check_budget, compare_baseline, env_mismatch
from ..render import OutputFormat, envelope, format_report, profile_view
from .common import check_reports, emit, handle_errors, progress, status, warn
from .options import FormatOpt, JsonOpt, RecalibrateOpt, ReportOpt

GATE = "Gating"


@handle_errors
def profile(
    config: Annotated[Optional[Path], typer.Argument(
        help="The YAML config (see the README for every key).", show_default=False)] = None,
    only: Annotated[Optional[list[str]], typer.Option(
        help="Run only cases whose name matches this glob (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Validate and print the plan with analytic numbers; measure "
        "nothing (does not import torch).")] = False,
    baseline: Annotated[Optional[Path], typer.Option(
        help="A previous JSON report: per-case change of the median.",
        rich_help_panel=GATE)] = None,
    regression_threshold: Annotated[float, typer.Option(
        help="Slowdown (fraction) beyond which a case with non-overlapping IQR ranges is a "
        "regression.", rich_help_panel=GATE)] = DEFAULT_REGRESSION_THRESHOLD,
    strict_env: Annotated[bool, typer.Option(
        "--strict-env", help="A baseline from another environment is an error, not a "
        "warning.", rich_help_panel=GATE)] = False,
    save_baseline: Annotated[Optional[Path], typer.Option(
        help="Write this run's JSON report here, as the next baseline.",
        rich_help_panel=GATE, dir_okay=False)] = None,
    plot: Annotated[Optional[Path], typer.Option(
        help="Draw theoretical vs measured speedup per case (PNG; needs dsconv[plot]).",
        dir_okay=False)] = None,
    recalibrate: RecalibrateOpt = False,
    schema: Annotated[bool, typer.Option(
        "--schema", help="Print the config's JSON Schema and exit.")] = False,
    fmt: FormatOpt = OutputFormat.table,
    as_json: JsonOpt = False,
    report: ReportOpt = None,
) -> None:
    """Run a YAML benchmark with budgets and baselines (for CI).

    Exit 0 when every budget is met; 1 when one fails, a regression is found or a case
    cannot run; 2 for a config or usage error.
    """
    from ..config import load_config, plan_cases, schema_text

    if schema:
        print(schema_text(), end="")
        return
    if config is None:
        raise InputError("Missing argument 'CONFIG'", hint="dsconv profile config.yaml")
    reports = check_reports(report)
    if regression_threshold <= 0:
        raise InputError(f"--regression-threshold must be > 0, got {regression_threshold}")
    for p in (save_baseline, plot):
        if p is not None and not p.parent.exists():
            raise InputError(f"{p}: folder {p.parent} does not exist")
    if plot is not None:
        _check_matplotlib()
    cfg = load_config(config)
    planned = plan_cases(cfg, only)
    base = _load_baseline(baseline) if baseline else None

    if dry_run:
        cases = [_case_dict(pc, cfg, verdict="planned") for pc in planned]
        for pc, c in zip(planned, cases, strict=True):
            if pc.model is not None:
                c["source"]["format"] = _model_format(cfg, pc)
        emit(envelope(cases, config=str(config)), profile_view, fmt, as_json, reports)
        return

    cases, environment = _run(cfg, planned, recalibrate)
    if base is not None:
        mismatch = env_mismatch(environment, base.get("environment", {}))
        if mismatch:
            msg = "baseline from a different environment: " + "; ".join(mismatch)
            if strict_env:
                raise InputError(msg, hint="drop --strict-env to compare anyway")
            warn(msg)
        by_name = {c.get("name"): c for c in base.get("cases", [])}
        for c in cases:
            old = by_name.get(c["name"], {}).get("measured")
            c["baseline"] = compare_baseline(c.get("measured"), old, regression_threshold)
            if c["baseline"]["status"] == "regression":
                c["verdict"] = "fail"
                c.setdefault("failures", []).append(
                    f"regression: median {100 * c['baseline']['change']:+.1f}% vs baseline")
    failed = [c for c in cases if c["verdict"] != "pass"]
    env = envelope(cases, environment=environment, config=str(config),
                   summary={"cases": len(cases), "failed": len(failed),
                            "passed": len(cases) - len(failed)})
    if save_baseline is not None:
        reports.append((save_baseline, OutputFormat.json))
    emit(env, profile_view, fmt, as_json, reports)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(format_report(env, OutputFormat.markdown, profile_view))
    if plot is not None:
        _plot(cases, plot)
    if failed:
        warn(f"{len(failed)} of {len(cases)} case(s) failed: "
             + ", ".join(c["name"] for c in failed[:5]) + (" ..." if len(failed) > 5 else ""))
        raise typer.Exit(1)


def _check_matplotlib() -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise InputError("--plot needs matplotlib: pip install 'dsconv[plot]'")


def _load_baseline(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"--baseline {path}: no such file") from None
    except (OSError, ValueError) as e:
        raise InputError(f"--baseline {path}: not a JSON report ({e})") from None
    if not isinstance(data, dict) or data.get("schema_version") != 1 or not isinstance(
            data.get("cases"), list):
        raise InputError(f"--baseline {path}: not a dsconv report (schema_version 1)")
    return data


def _model_format(cfg: Config, pc: PlannedCase) -> str:
    from ..config import model_file_format

    return model_file_format(cfg, pc.index) + ", needs torch"


def _case_dict(pc: PlannedCase, cfg: Config, verdict: str) -> dict[str, Any]:
    from ..config import model_path

    if pc.layer is not None:
        source: dict[str, Any] = {"kind": "layer", **{
            k: list(v) if isinstance(v, tuple) else v for k, v in pc.layer.request.items()}}
    elif pc.preset is not None:
        p = pc.preset
        source = {"kind": "preset", "name": p.name, "width": p.width,
                  "resolution": p.resolution, "classes": p.classes}
    else:
        assert pc.model is not None
        source = {"kind": "model", "path": str(model_path(cfg, pc.model)),
                  "input_shape": pc.model.input_shape, "convert": pc.model.convert}
    analytic = pc.analytic(cfg.batch, cfg.dtype)
    d = {"name": pc.name, "source": source, "analytic": analytic,
         "budget": check_budget({k: v for k, v in pc.budget.items()
                                 if k not in ("max_latency_ms", "min_speedup")}, analytic)
         if verdict == "planned" else {}, "verdict": verdict}
    if verdict == "planned":
        d["budget_pending"] = [k for k in pc.budget if k in ("max_latency_ms", "min_speedup")]
    return d


def _run(cfg: Config, planned: list[PlannedCase], recalibrate: bool
         ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from ..config import arch_spec, model_path
    from ..plan import PlanOptions
    from ..torch_backend.convert import load_model
    from ..torch_backend.measure import (
        measure_layer_case,
        measure_model,
        measure_preset,
        open_session,
    )
    from ..torch_backend.timing import MeasureOptions

    fmts = (("nchw", "channels_last") if cfg.memory_format == "both" else (cfg.memory_format,))
    opts = MeasureOptions(cfg.device, cfg.dtype, cfg.threads, fmts, cfg.timing.min_time,
                          cfg.timing.warmup)
    session = open_session(opts, recalibrate, on_status=status)
    # models load before anything is measured: an unsafe or broken file is a config error
    models = {}
    for pc in planned:
        if pc.model is not None:
            m = pc.model
            try:
                models[pc.name] = load_model(
                    model_path(cfg, m), trust_pickle=m.trust_pickle,
                    state_dict_key=m.state_dict_key, arch=arch_spec(cfg, m),
                    arch_kwargs=m.arch_kwargs,
                    warn=warn).model
            except InputError as e:
                raise cfg.error(e.message, ("cases", pc.index, "model"), e.hint) from None
    cases = []
    interrupted = False
    with progress(len(planned), "profiling") as advance:
        for pc in planned:
            d = _case_dict(pc, cfg, verdict="pass")
            try:
                if pc.layer is not None:
                    detail = measure_layer_case(pc.layer, pc.layer.to_dict(), session)
                    d["measured"] = detail["candidate"]["measured"]
                    d["standard_measured"] = detail["standard"]["measured"]
                    d["speedup"] = {k: detail["speedup"][k] for k in ("measured", "theoretical")}
                    d["verdict_why"] = detail["verdict"]
                    d["timed_s"] = timed_seconds(detail)
                elif pc.preset is not None:
                    detail = measure_preset(pc.preset, pc.preset.to_dict(cfg.batch, cfg.dtype),
                                            session)
                    d["measured"] = detail["measured"]
                    d["stages"] = [{"stage": s["stage"], "share_macs": s["share_macs"],
                                    "share_time": s["measured"]["share_time"]}
                                   for s in detail["stages"]]
                    d["timed_s"] = timed_seconds(detail)
                else:
                    assert pc.model is not None
                    m = pc.model
                    res = measure_model(models[pc.name], tuple(m.input_shape), session,
                                        m.convert, PlanOptions(m.min_channels, (), (),
                                                               m.depth_multiplier))
                    d["analytic"] = {**d["analytic"], **res["analytic"]}
                    d["analytic"].pop("needs", None)
                    d["measured"] = res["measured"]
                    for k in ("original", "speedup", "conversion"):
                        if k in res:
                            d[k] = res[k]
                    d["timed_s"] = timed_seconds(res)
            except KeyboardInterrupt:
                interrupted = True
                break
            except (DsconvError, RuntimeError) as e:
                d["verdict"] = "error"
                d["error"] = str(e).splitlines()[0]
                warn(f"{pc.name}: could not run: {d['error']}")
            advance(pc.name)
            if d["verdict"] != "error":
                values = {**d["analytic"],
                          "latency_ms": d.get("measured", {}).get("median_ms"),
                          "speedup": d.get("speedup", {}).get("measured")}
                d["budget"] = check_budget(pc.budget, values)
                d["failures"] = [f"{k}: {v['value']} vs limit {v['limit']}"
                                 for k, v in d["budget"].items() if not v["ok"]]
                d["verdict"] = "fail" if d["failures"] else "pass"
            cases.append(d)
    if interrupted:
        warn(f"interrupted after {len(cases)} case(s)")
        from ..render import make_console, print_tables

        print_tables(profile_view(envelope(cases)), make_console())
        raise typer.Exit(130)
    return cases, session.environment


def timed_seconds(obj: Any) -> float:
    """Seconds spent in timed runs for every measurement inside ``obj``."""
    if isinstance(obj, dict):
        own = obj["median_ms"] * obj["calls"] / 1e3 if "calls" in obj else 0.0
        by_fmt = obj.get("measured_by_format")
        rest = {k: v for k, v in obj.items() if not (by_fmt and k == "measured")}
        return round(own + sum(timed_seconds(v) for v in rest.values()), 4)
    if isinstance(obj, list):
        return round(sum(timed_seconds(v) for v in obj), 4)
    return 0.0


def _plot(cases: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [c for c in cases if c.get("speedup", {}).get("measured") is not None]
    names = [c["name"] for c in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(rows) + 2), 4))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [c["speedup"]["theoretical"] or 0 for c in rows], 0.4,
           label="theoretical (MACs)")
    ax.bar([x + 0.2 for x in xs], [c["speedup"]["measured"] for c in rows], 0.4,
           label="measured")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xticks(list(xs), names, rotation=30, ha="right")
    ax.set_ylabel("speedup vs standard (x)")
    ax.set_title("dsconv profile: theoretical vs measured speedup")
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)

