"""The merge re-judging, fuzzed (issue 30): hand-edited shard reports (a verdict, an
``ok`` flag, a limit, a value, an interval, ``dry_run``, ``strict``, ``interrupted``, the
expected cases, anything) merged with and without ``--strict``. Whatever the edit, the
contract holds (exit 0, 1 or 2, no traceback, bounded time, no file left behind), and a
merge that answers (exit 0 or 1) never calls a case passed that its own figures fail,
judged here by hand: a budget whose value misses its limit, or lies outside its own
interval, or is not a finite number, is never in a passing merge.

Examples per property: ``DSCONV_FUZZ_EXAMPLES`` (200 by default; benchmarks/fuzz.py
``--tests tests/test_fuzz_merge.py`` runs 10x more).
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.test_fuzz import FUZZ, KEYS, SCALARS, _edit, _paths, invoke
from tests.test_merge_judge import measured_case

_DRY: dict[str, Any] = {}


def _dry_reports() -> dict[str, Any]:
    """Two dry-run shard reports of one config, one case failing its budget (made once)."""
    if not _DRY:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "c.yaml").write_text(
                "cases:\n  - name: a\n    layer: {in: 8, hw: 8}\n    budget: {max_params: 9}\n"
                "  - name: b\n    layer: {in: 16, hw: 8}\n    budget: {max_params: 99999}\n"
                "  - name: c\n    layer: {in: 24, hw: 8}\n")
            for i in (1, 2):
                code, text, _ = invoke(["profile", "c.yaml", "--dry-run", "--shard", f"{i}/2",
                                        "--report", f"s{i}.json"], folder)
                assert code in (0, 1), text
                _DRY[f"s{i}.json"] = json.loads((folder / f"s{i}.json").read_text())
    return _DRY


def _measured_reports() -> dict[str, Any]:
    """Two measured shard reports (as profile writes them): passing, marginal, failing."""
    from dsconv_cli import __version__

    shards = [[measured_case("a"), measured_case("m", ci=(1.4, 1.6), estimate=1.5,
                                                  min_speedup=1.45)],
              [measured_case("f", ci=(0.9, 1.1), estimate=1.0, min_speedup=1.5),
               measured_case("n", flags=["measured: noisy: IQR 0.5 ms (50% of the median)"])]]
    out = {}
    for i, cases in enumerate(shards, 1):
        out[f"s{i}.json"] = {
            "schema_version": 1, "tool": {"name": "dsconv", "version": __version__},
            "environment": {"device": "cpu", "threads": 2}, "cases": cases,
            "config_digest": "0123456789abcdef", "shard": {"index": i, "count": 2},
            "expected_cases": [c["name"] for c in cases],
            "exit_status": int(any(c["verdict"] == "fail" for c in cases))}
    return out


#: the fields a hostile edit goes for first, then any path at all
TARGETS = ["verdict", "ok", "limit", "value", "interval", "marginal", "dry_run", "strict",
           "interrupted", "exit_status", "expected_cases", "estimate", "ci95", "params",
           "flags", "cases", "shard", "index", "count", "name", "median_ms"]
EDIT_VALUES = st.one_of(
    SCALARS, st.sampled_from(["pass", "fail", "marginal", "planned", "error", 1.0, 2.0, 0.5,
                              400, -1, [], [0.5], [2.0, 1.0], [0.1, 9.0], ["a", "b"], ["zz"],
                              "a\ud800", math.nan]),
    st.lists(SCALARS, max_size=2),
    st.dictionaries(st.sampled_from(KEYS + ["index", "count"]), SCALARS, max_size=2))
MAX = {"max_params", "max_macs", "max_latency_ms", "max_memory_mb", "max_slowdown"}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _misses(metric: str, b: dict[str, Any]) -> bool:
    """By hand: whether a stored budget's own figures fail it."""
    value, limit, interval = b.get("value"), b.get("limit"), b.get("interval")
    if not (_number(value) and _number(limit)):
        return True
    beyond = (lambda x: x > limit) if metric in MAX else (lambda x: x < limit)
    if interval is None:
        return beyond(value)
    lo, hi = interval
    if value < lo - 1e-3 * abs(lo) or value > hi + 1e-3 * abs(hi):
        return True
    return beyond(lo) and beyond(hi)  # the whole interval on the wrong side


@FUZZ
@given(data=st.data(), value=EDIT_VALUES, delete=st.booleans(),
       which=st.sampled_from(["s1.json", "s2.json"]), kind=st.sampled_from(["dry", "measured"]),
       strict=st.booleans(), targeted=st.booleans())
def test_merge_rejudging_keeps_the_contract(data: Any, value: Any, delete: bool, which: str,
                                            kind: str, strict: bool, targeted: bool) -> None:
    reports = _dry_reports() if kind == "dry" else _measured_reports()
    doc = copy.deepcopy(reports[which])
    paths = _paths(doc)
    if targeted:
        paths = [p for p in paths if p and p[-1] in TARGETS] or paths
    path = data.draw(st.sampled_from(paths))
    doc = _edit(doc, path, value, delete)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in ("s1.json", "s2.json"):
            (folder / name).write_text(json.dumps(doc if name == which else reports[name],
                                                  allow_nan=True))
        before = {p.name for p in folder.iterdir()}
        argv = ["profile", "--merge", "s1.json", "s2.json", "--json",
                *(["--strict"] if strict else [])]
        code, text, took = invoke(argv, folder)
        assert code in (0, 1, 2), (path, value, code, text[-2000:])
        assert "Traceback" not in text and "internal error" not in text, (path, text[-2000:])
        assert took < 20, (path, took)
        assert {p.name for p in folder.iterdir()} == before
    if code == 2:
        return
    merged, _ = json.JSONDecoder().raw_decode(text)  # the report, then stderr's lines
    expected = [n for r in (doc if which == "s1.json" else reports["s1.json"],
                            doc if which == "s2.json" else reports["s2.json"])
                for n in r.get("expected_cases", [])]
    names = [c["name"] for c in merged["cases"]]
    missing = set(expected) - set(names)
    # what never ran is named, never silently dropped
    assert not missing or (code == 1 and set(merged.get("missing_cases", [])) >= missing), (
        path, value, missing)
    for c in merged["cases"]:
        bad = [m for m, b in c["budget"].items() if _misses(m, b)]
        if bad or c.get("error") is not None:
            assert c["verdict"] in ("fail", "error"), (path, value, c)
            assert code == 1, (path, value, c)
        if strict and (c.get("flags") or any(b.get("marginal") for b in c["budget"].values())):
            assert c["verdict"] in ("fail", "error"), (path, value, c)
    if code == 0:
        assert all(c["verdict"] in ("pass", "marginal", "planned") for c in merged["cases"])
        assert sorted(names) == sorted(expected), (path, value)
        assert not (kind == "dry") or all(c["verdict"] == "planned" for c in merged["cases"])
