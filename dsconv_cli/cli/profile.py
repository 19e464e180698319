"""``dsconv profile config.yaml``: a YAML-described benchmark with budgets, for CI."""

from __future__ import annotations

import functools
import io
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer

from ..errors import DsconvError, InputError
from ..fmt import listing
from ..gate import DEFAULT_REGRESSION_THRESHOLD
from ..render import OutputFormat, View, bind, layout_for, profile_view, render_text
from ..results import ProfileCaseResult, envelope
from ..services.gate import (
    Shard,
    apply_baseline,
    baseline_environment_problem,
    exit_status,
    load_report,
    merge_reports,
    run_meta,
    run_report,
)
from .common import (
    HOOKS,
    check_distinct,
    check_format,
    check_reports,
    emit,
    finite,
    handle_errors,
    report_stream,
    warn,
)
from .options import ColumnsOpt, FormatOpt, JsonOpt, RecalibrateOpt, ReportOpt, WideOpt

GATE = "Gating"
F = TypeVar("F", bound=Callable[..., Any])
TRUST = "Trust (a config cannot grant it)"


def step_summary(text: str) -> None:
    """Append to GitHub's job summary (``$GITHUB_STEP_SUMMARY``) when it is set."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if not summary:
        return
    from ..atomic import append_text

    try:
        append_text(Path(summary), text, "GITHUB_STEP_SUMMARY")
    except OSError as e:
        warn(f"GITHUB_STEP_SUMMARY {summary}: cannot be written ({e.strerror}); "
             "the report is on stdout")
    except InputError as e:
        warn(f"{e}; the report is on stdout")


def _summary_on_usage_error(fn: F) -> F:
    """A config or usage error (exit 2) also writes its one ``Error:`` line to the step
    summary, so a CI job that failed on its config says why on its summary page."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DsconvError as e:
            if e.exit_code == 2:
                step_summary(f"Error: {e}" + (f" (hint: {e.hint})" if e.hint else "") + "\n")
            raise

    return wrapper  # type: ignore[return-value]


@handle_errors
@_summary_on_usage_error
def profile(
    config: Annotated[Optional[list[Path]], typer.Argument(
        help="The YAML config (every key: docs/CONFIG.md); with --merge, the shard "
        "reports to join.", show_default=False)] = None,
    shard: Annotated[Optional[str], typer.Option(
        "--shard", help="Run the i-th of n deterministic slices of the cases (i/n, after "
        "--only), for a CI matrix.", rich_help_panel="Shards")] = None,
    merge: Annotated[bool, typer.Option(
        "--merge", help="Join shard reports (JSON) of one config into one report and one "
        "exit code.", rich_help_panel="Shards")] = False,
    only: Annotated[Optional[list[str]], typer.Option(
        help="Run only cases whose name matches this glob (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Validate and print the plan with analytic numbers; measure "
        "nothing (does not import torch).")] = False,
    baseline: Annotated[Optional[Path], typer.Option(
        help="A previous JSON report: per-case change of the median.",
        rich_help_panel=GATE)] = None,
    regression_threshold: Annotated[float, typer.Option(
        help="Slowdown (fraction) against --baseline beyond which a case is a regression, "
        "if also significant (Mann-Whitney p < 0.01 on the block times).",
        rich_help_panel=GATE)] = DEFAULT_REGRESSION_THRESHOLD,
    normalize: Annotated[bool, typer.Option(
        "--normalize", help="Against a baseline from another environment, scale its times "
        "by the ratio of the calibrated peaks (FLOP/s or bandwidth, by each case's bound).",
        rich_help_panel=GATE)] = False,
    strict_env: Annotated[bool, typer.Option(
        "--strict-env", help="A baseline from another environment is an error, not a "
        "warning.", rich_help_panel=GATE)] = False,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Fail a case whose budget is marginal (its interval straddles the "
        "limit) or whose measurement is flagged noisy or implausible.",
        rich_help_panel=GATE)] = False,
    save_baseline: Annotated[Optional[Path], typer.Option(
        help="Write this run's JSON report here, as the next baseline.",
        rich_help_panel=GATE, dir_okay=False)] = None,
    plot: Annotated[Optional[Path], typer.Option(
        help="Draw theoretical vs measured speedup per case (PNG; needs dsconv\\[plot]).",
        dir_okay=False)] = None,
    trust_pickle: Annotated[bool, typer.Option(
        "--trust-pickle", help="Allow model cases that set trust_pickle: true (unpickling "
        "runs code from the file).", rich_help_panel=TRUST)] = False,
    trust_code: Annotated[bool, typer.Option(
        "--trust-code", help="Allow model cases whose arch names code to import and call "
        "(package.module:callable, file.py:callable).", rich_help_panel=TRUST)] = False,
    recalibrate: RecalibrateOpt = False,
    schema: Annotated[bool, typer.Option(
        "--schema", help="Print the config's JSON Schema and exit.")] = False,
    fmt: FormatOpt = OutputFormat.table,
    as_json: JsonOpt = False,
    report: ReportOpt = None,
    wide: WideOpt = False,
    columns: ColumnsOpt = None,
) -> None:
    """Run a YAML benchmark with budgets and baselines (for CI).

    Exit 0 when every budget is met; 1 when one fails, a regression is found, a case
    cannot run or (with --merge) a shard failed or never reported; 2 for a config or
    usage error.
    """
    from ..config import check_trust, input_files, load_config, schema_text
    from ..suite import plan_cases

    if schema:
        print(schema_text(), end="", file=report_stream())
        return
    if not config:
        raise InputError("--merge needs the shard reports to join" if merge else
                         "Missing argument 'CONFIG'", hint="dsconv profile --merge s1.json "
                         "s2.json" if merge else "dsconv profile config.yaml")
    check_format(fmt, as_json)
    view = bind(profile_view, layout_for([profile_view], wide, columns))
    reports = check_reports(report)
    _check_combinations(merge, shard=shard, dry_run=dry_run, plot=plot, baseline=baseline,
                        save_baseline=save_baseline, only=only)
    if merge:
        return _merge(config, reports, fmt, as_json, view, strict)
    if len(config) != 1:
        raise InputError(f"one CONFIG, got {len(config)} (--merge joins several reports)")
    part = Shard.parse(shard) if shard is not None else None
    finite("--regression-threshold", regression_threshold, hi=100)
    _check_outputs(config[0], reports, baseline, save_baseline, plot)
    cfg = load_config(config[0])
    check_trust(cfg, trust_pickle=trust_pickle, trust_code=trust_code)
    check_distinct(_outputs(reports, save_baseline, plot), input_files(cfg))
    planned = plan_cases(cfg, only)
    planned = part.select(planned) if part is not None else planned
    meta = run_meta(config[0], part, only, [pc.name for pc in planned], strict)
    base = load_report(baseline) if baseline else None
    if dry_run:
        from ..services.profile import plan_results

        cases = plan_results(cfg, planned)
        env = envelope(cases, dry_run=True, **meta, exit_status=exit_status(cases, {}))
        emit(env, view, fmt, as_json, reports)
        step_summary(render_text(env, OutputFormat.markdown, profile_view))  # warns if bad
        return _exit(env["exit_status"], cases)
    from ..services.profile import run_profile

    run = run_profile(cfg, planned, recalibrate, HOOKS,
                      before_cases=functools.partial(_check_env, base, strict_env),
                      strict=strict)
    cases = run.cases
    if base is not None:
        cases = apply_baseline(cases, base, regression_threshold, run.environment, normalize,
                               strict)
    env = run_report(run, cases, meta)
    if save_baseline is not None and not run.interrupted:
        reports.append((save_baseline, OutputFormat.json))
    emit(env, view, fmt, as_json, reports)
    for rt, why in run.runtime_errors.items():
        print(f"Error: runtime {rt}: {why}", file=sys.stderr)
    if run.interrupted:
        raise typer.Exit(env["exit_status"])
    step_summary(render_text(env, OutputFormat.markdown, profile_view))
    if plot is not None:
        _plot(env["cases"], plot)
    _exit(env["exit_status"], cases)


def _exit(status: int, cases: list[ProfileCaseResult]) -> None:
    """Name the failed cases and exit with ``status`` (nothing when 0)."""
    failed = [c for c in cases if c.verdict in ("fail", "error")]
    if failed:
        warn(f"{len(failed)} of {len(cases)} case(s) failed: "
             + listing([c.name for c in failed], 5))
    if status:
        raise typer.Exit(status)


def _check_combinations(merge: bool, **given: Any) -> None:
    """Options that cannot go together: exit 2 before any work."""
    if merge:
        clash = [f"--{k.replace('_', '-')}" for k, v in given.items() if v]
        if clash:
            raise InputError(f"--merge joins reports already run; it does not take "
                             f"{', '.join(clash)}")
    if given["dry_run"] and given["plot"] is not None:
        raise InputError("--plot draws measured speedups and --dry-run measures nothing; "
                         "give one of them")
    if given["dry_run"] and given["save_baseline"] is not None:
        raise InputError("--save-baseline keeps a measured run and --dry-run measures "
                         "nothing; give one of them")


def _check_outputs(config_path: Path, reports: list[tuple[Path, OutputFormat]],
                   baseline: Path | None, save_baseline: Path | None, plot: Path | None) -> None:
    """Every output writable and distinct from the inputs, before any work."""
    from ..atomic import check_writable

    outputs = _outputs(reports, save_baseline, plot)
    for label, p in outputs[len(reports):]:
        check_writable(p, label, overwrite=True)
    check_distinct(outputs, [("CONFIG", config_path), ("--baseline", baseline)])
    if plot is not None:
        _check_matplotlib()


def _outputs(reports: list[tuple[Path, OutputFormat]], save_baseline: Path | None,
             plot: Path | None) -> list[tuple[str, Path]]:
    """Every file the run writes, labelled (then checked against every input it reads: the
    config and baseline first, the files the config's cases read once it is loaded)."""
    return [("--report", p) for p, _ in reports] + [
        (label, p) for label, p in (("--save-baseline", save_baseline), ("--plot", plot))
        if p is not None]


def _check_env(base: dict[str, Any] | None, strict: bool, environment: dict[str, Any]) -> None:
    """Before any case runs: --strict-env fails in seconds, not after the benchmark."""
    problem = baseline_environment_problem(base, environment)
    if problem is None:
        return
    if strict:
        raise InputError(problem, hint="drop --strict-env to compare anyway")
    warn(problem)


def _merge(files: list[Path], reports: list[tuple[Path, OutputFormat]], fmt: OutputFormat,
           as_json: bool, view: View = profile_view, strict: bool = False) -> None:
    """Shard reports of one config joined: one report, one exit code, one step summary
    (``strict``: as ``--strict`` judges a run)."""
    inputs: list[tuple[str, Path | None]] = [("REPORT", p) for p in files]
    check_distinct([("--report", p) for p, _ in reports], inputs)
    merged = merge_reports(files, strict)
    emit(merged.report, view, fmt, as_json, reports)
    if merged.report.get("interrupted"):
        warn("a shard was interrupted: its report holds the cases that finished")
    for line in merged.problems:
        print(f"Error: {line}", file=sys.stderr)
    step_summary(render_text(merged.report, OutputFormat.markdown, profile_view))
    if merged.exit_status:
        raise typer.Exit(merged.exit_status)


def _check_matplotlib() -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise InputError("--plot needs matplotlib: pip install 'dsconv[plot]'")


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
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    from ..atomic import write_atomic

    write_atomic(path, buf.getvalue())

