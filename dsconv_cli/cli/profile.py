"""``dsconv profile config.yaml``: a YAML-described benchmark with budgets, for CI."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import InputError
from ..gate import DEFAULT_REGRESSION_THRESHOLD, env_mismatch
from ..render import OutputFormat, profile_view, render_text
from ..results import envelope
from .common import (
    HOOKS,
    check_distinct,
    check_format,
    check_reports,
    emit,
    finite,
    handle_errors,
    warn,
)
from .options import FormatOpt, JsonOpt, RecalibrateOpt, ReportOpt

GATE = "Gating"
TRUST = "Trust (a config cannot grant it)"


@handle_errors
def profile(
    config: Annotated[Optional[list[Path]], typer.Argument(
        help="The YAML config (see the README for every key); with --merge, the shard "
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
) -> None:
    """Run a YAML benchmark with budgets and baselines (for CI).

    Exit 0 when every budget is met; 1 when one fails, a regression is found or a case
    cannot run; 2 for a config or usage error.
    """
    from ..config import check_trust, load_config, schema_text
    from ..suite import plan_cases

    if schema:
        print(schema_text(), end="")
        return
    if not config:
        raise InputError("Missing argument 'CONFIG'", hint="dsconv profile config.yaml")
    check_format(fmt, as_json)
    reports = check_reports(report)
    if merge:
        return _merge(config, reports, fmt, as_json)
    if len(config) != 1:
        raise InputError(f"one CONFIG, got {len(config)} (--merge joins several reports)")
    config_path = config[0]
    part = _parse_shard(shard) if shard is not None else None
    finite("--regression-threshold", regression_threshold, hi=100)
    from ..atomic import check_writable

    outputs = [("--report", p) for p, _ in reports]
    for label, p in (("--save-baseline", save_baseline), ("--plot", plot)):
        if p is not None:
            check_writable(p, label, overwrite=True)
            outputs.append((label, p))
    check_distinct(outputs, [("CONFIG", config_path)]
                   + ([("--baseline", baseline)] if baseline else []))
    if plot is not None:
        _check_matplotlib()
    cfg = load_config(config_path)
    check_trust(cfg, trust_pickle=trust_pickle, trust_code=trust_code)
    planned = plan_cases(cfg, only)
    digest = hashlib.sha256(config_path.read_bytes()).hexdigest()[:16]
    extra_meta: dict[str, Any] = {"config_digest": digest}
    if part is not None:
        i, n = part
        planned = [pc for k, pc in enumerate(planned) if k % n == i - 1]
        extra_meta["shard"] = f"{i}/{n}"
    base = _load_baseline(baseline) if baseline else None

    from ..services.profile import apply_baseline, plan_results, run_profile

    if dry_run:
        emit(envelope(plan_results(cfg, planned), config=str(config_path), **extra_meta),
             profile_view, fmt, as_json, reports)
        return

    def check_env(environment: dict[str, Any]) -> None:
        """Before any case runs: --strict-env fails in seconds, not after the benchmark."""
        if base is None:
            return
        mismatch = env_mismatch(environment, base.get("environment", {}))
        if mismatch:
            msg = "baseline from a different environment: " + "; ".join(mismatch)
            if strict_env:
                raise InputError(msg, hint="drop --strict-env to compare anyway")
            warn(msg)

    run = run_profile(cfg, planned, recalibrate, HOOKS, before_cases=check_env)
    cases = run.cases
    if base is not None:
        cases = apply_baseline(cases, base, regression_threshold, run.environment, normalize)
    failed = [c for c in cases if c.verdict != "pass"]
    extra: dict[str, Any] = {**extra_meta, **({"interrupted": True} if run.interrupted else {})}
    if run.runtime_errors:
        extra["runtime_errors"] = run.runtime_errors
    env = envelope(cases, environment=run.environment, config=str(config_path),
                   summary={"cases": len(cases), "failed": len(failed),
                            "passed": len(cases) - len(failed)}, **extra)
    if save_baseline is not None and not run.interrupted:
        reports.append((save_baseline, OutputFormat.json))
    emit(env, profile_view, fmt, as_json, reports)
    for rt, why in run.runtime_errors.items():
        print(f"Error: runtime {rt}: {why}", file=sys.stderr)
    if run.interrupted:
        raise typer.Exit(130)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open(summary, "a", encoding="utf-8") as f:
                f.write(render_text(env, OutputFormat.markdown, profile_view))
        except OSError as e:
            warn(f"GITHUB_STEP_SUMMARY {summary}: cannot be written ({e.strerror}); "
                 "the report is on stdout")
    if plot is not None:
        _plot(env["cases"], plot)
    if run.runtime_errors and not failed:
        raise typer.Exit(1)
    if failed:
        warn(f"{len(failed)} of {len(cases)} case(s) failed: "
             + ", ".join(c.name for c in failed[:5]) + (" ..." if len(failed) > 5 else ""))
        raise typer.Exit(1)


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise InputError(f"--shard {text!r}: expected i/n, e.g. 2/4") from None
    if not 1 <= i <= n <= 1000:
        raise InputError(f"--shard {text!r}: needs 1 <= i <= n <= 1000")
    return i, n


def _merge(files: list[Path], reports: list[tuple[Path, OutputFormat]], fmt: OutputFormat,
           as_json: bool) -> None:
    """Shard reports of one config (same digest) joined: one report, one exit code."""
    datas = [_load_baseline(p, "--merge") for p in files]
    digests = {d.get("config_digest") for d in datas}
    if None in digests or len(digests) != 1:
        raise InputError("--merge: the reports come from different configs (config_digest "
                         f"{', '.join(sorted(str(d) for d in digests))}); merge shards of one "
                         "config")
    check_distinct([("--report", p) for p, _ in reports],
                   [("REPORT", p) for p in files])
    cases = [c for d in datas for c in d["cases"]]
    names = [c["name"] for c in cases]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"--merge: case {dupes[0]!r} is in more than one report (the same "
                         "shard twice?)")
    failed = [c for c in cases if c.get("verdict") in ("fail", "error")]
    interrupted = any(d.get("interrupted") for d in datas)
    env = envelope(cases, environment=datas[0].get("environment"),
                   config=datas[0].get("config"), config_digest=digests.pop(),
                   shards=[{"report": str(p), "shard": d.get("shard"),
                            "device_name": (d.get("environment") or {}).get("device_name")}
                           for p, d in zip(files, datas, strict=True)],
                   summary={"cases": len(cases), "failed": len(failed),
                            "passed": len(cases) - len(failed)},
                   **({"interrupted": True} if interrupted else {}))
    emit(env, profile_view, fmt, as_json, reports)
    if failed or interrupted:
        warn(f"{len(failed)} of {len(cases)} case(s) failed"
             + (" (a shard was interrupted)" if interrupted else ""))
        raise typer.Exit(1)


def _check_matplotlib() -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise InputError("--plot needs matplotlib: pip install 'dsconv[plot]'")


def _load_baseline(path: Path, what: str = "--baseline") -> dict[str, Any]:
    """A dsconv JSON report, validated (key paths in the errors)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{what} {path}: no such file") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{what} {path}: not a JSON report ({e})") from None
    if not isinstance(data, dict) or data.get("schema_version") != 1 or not isinstance(
            data.get("cases"), list):
        raise InputError(f"{what} {path}: not a dsconv report (schema_version 1)")
    for i, case in enumerate(data["cases"]):
        where = f"{what} {path}: cases[{i}]"
        if not isinstance(case, dict) or not isinstance(case.get("name"), str):
            raise InputError(f"{where}: a case must be an object with a string 'name'")
        m = case.get("measured")
        if m is None:
            continue
        if not isinstance(m, dict):
            raise InputError(f"{where}.measured: must be an object, got {type(m).__name__}")
        for key in ("median_ms", "q1_ms", "q3_ms"):
            v = m.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                    math.isfinite(v) and v > 0):
                raise InputError(f"{where}.measured.{key}: must be a positive finite number, "
                                 f"got {v!r}")
    return data


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

