"""Property fuzz of the surfaces issue 30 hardened: plans (``validate_plan`` /
``apply_plan``, as a dict and as a file) and names (the one sanitiser, the CSV cell).
Examples per property: ``DSCONV_FUZZ_EXAMPLES`` (200 by default; ``benchmarks/fuzz.py
--tests tests/test_fuzz_plans.py`` runs 10x more)."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("DSCONV_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))
#: the longest one-line error a plan may give (a name is cut, never echoed whole)
MESSAGE_MAX = 400

#: what a terminal would obey: ESC, BEL, the C1 controls, bidi overrides, surrogates
OBEYED = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

TEXT = st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF,
                             exclude_categories=()), max_size=60)
ESCAPES = st.sampled_from(["\x1b[2J", "\x1b]0;pwn\x07", "\x1b]8;;http://x\x1b\\", "\x9b31m",
                           "\x1bP+q\x1b\\", "\x07", "\r", "\n", "\t", "\u202e", "\x1b",
                           "\x1b[", "\ud800"])
NAMES = st.lists(st.one_of(TEXT, ESCAPES), max_size=6).map("".join)


@FUZZ
@given(name=NAMES)
def test_the_sanitiser_leaves_nothing_a_terminal_obeys(name: str) -> None:
    from dsconv_cli.names import safe_text, short_name

    out = safe_text(name)
    assert not OBEYED.search(out), repr(out)
    out.encode("utf-8")  # no lone surrogate survives
    assert safe_text(out) == out  # idempotent: sanitising twice changes nothing
    short = short_name(name * 50)
    assert not OBEYED.search(short) and len(short) <= 120


@FUZZ
@given(cell=st.one_of(NAMES, st.integers(), st.floats(allow_nan=False),
                      st.from_regex(r"[=+\-@\t\r][^\n]{0,10}", fullmatch=True)))
def test_a_csv_cell_never_starts_a_formula(cell: Any) -> None:
    from dsconv_cli.names import csv_cell

    out = csv_cell(cell)
    if not isinstance(cell, str):
        assert out == cell
        return
    assert isinstance(out, str) and not OBEYED.search(out)
    number = re.fullmatch(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", cell)
    if out.startswith(("=", "+", "-", "@")) and out != "-":
        assert number, (cell, out)  # only a number may (-3 stays a number)


LAYER_KEYS = ["name", "depth_multiplier", "in_channels", "out_channels", "kernel", "rank",
              "calibrated", "extra"]
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2, 1 << 30), st.floats(), NAMES,
                   st.lists(st.integers(-1, 9), max_size=3), st.just("x" * 2_000))


def plans() -> Any:
    layer = st.dictionaries(st.sampled_from(LAYER_KEYS), VALUES, max_size=6)
    good = st.fixed_dictionaries({
        "name": st.sampled_from(["0", "1", "conv", "missing"]) | NAMES,
        "depth_multiplier": st.integers(-1, 3), "in_channels": st.sampled_from([8, 16, 7]),
        "out_channels": st.sampled_from([8, 16]), "kernel": st.just([3, 3])})
    return st.one_of(
        VALUES, st.lists(VALUES, max_size=2),
        st.fixed_dictionaries({"plan_version": st.one_of(st.just(1), VALUES),
                               "layers": st.one_of(VALUES, st.lists(layer | good,
                                                                    max_size=3))}))


def _net() -> Any:
    from torch import nn

    return nn.Sequential(nn.Conv2d(16, 16, 3), nn.ReLU(), nn.Conv2d(16, 8, 3))


@FUZZ
@given(doc=plans(), as_file=st.booleans(), deep=st.booleans())
def test_a_plan_gives_a_model_or_one_short_line(doc: Any, as_file: bool, deep: bool) -> None:
    """Whatever a plan holds: a model, or one ``ValueError`` line under MESSAGE_MAX that
    names the file it came from and echoes nothing a terminal obeys (a plan that is
    neither a dict nor a path is a ``TypeError``)."""
    import pytest

    import dsconv_cli

    with tempfile.TemporaryDirectory() as tmp:
        plan: Any = doc
        path = Path(tmp) / "p.plan.json"
        if as_file or deep:
            path.write_text("[" * 200_000 + "]" * 200_000 if deep else
                            json.dumps(doc, allow_nan=True))
            plan = path
        elif not isinstance(doc, (dict, str)):
            with pytest.raises(TypeError):
                dsconv_cli.apply_plan(_net(), plan)
            return
        try:
            dsconv_cli.apply_plan(_net(), plan)
        except ValueError as e:
            msg = str(e)
            assert "\n" not in msg and len(msg) <= MESSAGE_MAX, msg[:500]
            assert not OBEYED.search(msg), repr(msg[:300])
            if plan is path:
                assert str(path) in msg
