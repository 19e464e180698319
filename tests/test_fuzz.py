"""The contract, fuzzed (hypothesis): whatever the command line or the YAML holds, dsconv
exits 0, 1 or 2, prints no traceback, leaves no file behind and finishes in bounded time.

Runs through the installed entry point's ``main`` (what a user's shell runs). Examples per
property: ``DSCONV_FUZZ_EXAMPLES`` (200 by default; benchmarks/fuzz.py runs 10x more).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsconv_cli.__main__ import main

EXAMPLES = int(os.environ.get("DSCONV_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))
#: seconds any one invocation may take
BOUND_S = 20.0

WEIRD = ["0", "-1", "1", "3", "8", "16", "64", "3x5", "2x1", "same", "nan", "inf", "-inf",
         "1e30", "1e-9", "0.5", "6", "abc", "", " ", "1,2,3", "8,16", "99999999999",
         "2000000", "1x1x1", "x", "0x3", "ＡＢ", "--in", "1,,2", "3.5", "True"]
OPTIONS = ["--in", "--out", "-k", "--hw", "--stride", "--padding", "--dilation", "--groups",
           "--batch", "--depth-multiplier", "--expansion", "--expanded-channels",
           "--squeeze-channels", "--eca-k", "--kind", "--activation", "--dtype", "--format",
           "--max-cases", "--model", "--width", "--resolution", "--classes", "--vs",
           "--depth", "--min-channels", "--input-shape", "--arch-kwargs"]
FLAGS = ["--bias", "--no-bias", "--se", "--no-se", "--per-layer", "--json", "--strict"]
KINDS = ["separable", "inverted-residual", "mbconv", "eca", "nope"]


def invoke(argv: list[str], cwd: Path) -> tuple[int, str, float]:
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        os.chdir(old)
    return code, out.getvalue() + err.getvalue(), time.perf_counter() - t0


def check(argv: list[str], cwd: Path, before: set[str]) -> None:
    code, text, took = invoke(argv, cwd)
    assert code in (0, 1, 2), (argv, code, text[-2000:])
    assert "Traceback" not in text and "internal error" not in text, (argv, text[-2000:])
    assert took < BOUND_S, (argv, took)
    assert {p.name for p in cwd.iterdir()} == before, (argv, sorted(cwd.iterdir()))


#: mostly values a layer can take, so runs get past parsing into the engine and views
PLAUSIBLE = ["1", "2", "3", "4", "5", "6", "7", "8", "12", "16", "24", "32", "64", "3x5",
             "2x1", "1,2", "8,16"]
option_values = st.lists(st.tuples(
    st.sampled_from(OPTIONS),
    st.one_of(st.sampled_from(PLAUSIBLE), st.sampled_from(WEIRD + KINDS + [
        "mobilenet_v2", "ds", "full-conv", "fp16", "csv", "markdown", "relu", "hswish"]))),
    max_size=6)


@FUZZ
@given(options=option_values, flags=st.lists(st.sampled_from(FLAGS), max_size=3),
       kind=st.sampled_from(KINDS[:4]),
       base=st.sampled_from([["--in", "8", "--hw", "4"], ["--in", "32", "--hw", "16"],
                             ["--model", "mobilenet_v2"], []]))
def test_compare_command_line_keeps_the_contract(options: list[tuple[str, str]],
                                                 flags: list[str], kind: str,
                                                 base: list[str]) -> None:
    argv = ["compare", *base, "--kind", kind, *(a for pair in options for a in pair), *flags]
    with tempfile.TemporaryDirectory() as tmp:
        check(argv, Path(tmp), set())


@st.composite
def layer_argv(draw: Any) -> list[str]:
    """A layer comparison whose options all apply to its kind, with plausible or weird
    values: these runs get past parsing into the engine, the registry and the views."""
    from dsconv_cli.kinds import KINDS as REGISTRY

    kind = draw(st.sampled_from(list(REGISTRY)))
    opts = sorted(REGISTRY[kind].options | {"in", "hw", "batch"})
    chosen = draw(st.lists(st.sampled_from(opts), max_size=4, unique=True))
    argv = ["compare", "--kind", kind, "--in", draw(st.sampled_from(PLAUSIBLE)),
            "--hw", draw(st.sampled_from(PLAUSIBLE))]
    for field in chosen:
        name = "--" + field.replace("_", "-")
        if field in ("bias", "se"):
            argv.append(name if draw(st.booleans()) else "--no-" + field.replace("_", "-"))
            continue
        value = draw(st.one_of(st.sampled_from(PLAUSIBLE), st.sampled_from(WEIRD),
                               st.sampled_from(["relu", "relu6", "hswish", "silu"])))
        argv += [name, value]
    return argv + draw(st.sampled_from([[], ["--json"], ["--format", "csv"],
                                        ["--format", "markdown"]]))


@FUZZ
@given(argv=layer_argv())
def test_compare_layer_options_keep_the_contract(argv: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        check(argv, Path(tmp), set())


SCALARS = st.one_of(st.integers(-5, 70000), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(WEIRD + KINDS), st.booleans(), st.none())
KEYS = ["in", "out", "kernel", "hw", "stride", "padding", "dilation", "groups", "kind",
        "depth_multiplier", "expansion", "bias", "se", "activation", "eca_k", "inn"]
LAYER = st.dictionaries(st.sampled_from(KEYS), st.one_of(SCALARS, st.lists(SCALARS,
                                                                           max_size=3)),
                        max_size=6)
CASE = st.fixed_dictionaries(
    {"name": st.one_of(st.text(max_size=8), st.integers())},
    optional={"layer": LAYER,
              "preset": st.dictionaries(st.sampled_from(["name", "width", "resolution",
                                                         "classes"]),
                                        st.one_of(SCALARS, st.just("mobilenet_v2"))),
              "budget": st.dictionaries(st.sampled_from(["max_params", "max_macs",
                                                         "min_speedup", "max_latency_ms"]),
                                        SCALARS, max_size=2),
              "model": st.dictionaries(st.sampled_from(["path", "arch", "input_shape",
                                                        "trust_pickle"]), SCALARS,
                                       max_size=3)})
CONFIG = st.fixed_dictionaries(
    {},
    optional={"cases": st.one_of(st.lists(CASE, max_size=3), SCALARS),
              "threads": SCALARS, "batch": SCALARS, "max_cases": SCALARS,
              "timing": st.dictionaries(st.sampled_from(["min_time", "warmup"]), SCALARS),
              "device": st.sampled_from(["cpu", "cuda", "tpu"]),
              "version": st.sampled_from([1, 2, "1"])})


@FUZZ
@given(config=CONFIG, extra=st.sampled_from([[], ["--only", "a*"], ["--json"],
                                             ["--format", "markdown"]]))
def test_profile_yaml_keeps_the_contract(config: dict[str, Any], extra: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "c.yaml"
        p.write_text(yaml.safe_dump(config, allow_unicode=True))
        check(["profile", str(p), "--dry-run", *extra], Path(tmp), {"c.yaml"})


@FUZZ
@given(text=st.text(max_size=300))
def test_profile_any_text_keeps_the_contract(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "c.yaml"
        p.write_text(text)
        check(["profile", str(p), "--dry-run"], Path(tmp), {"c.yaml"})
