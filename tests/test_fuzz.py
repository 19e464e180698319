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


# --------------------------------------------------------------------------- round three
# the surfaces of issue 22: data files, hand-edited reports, plans, special files. These
# properties import torch and run real work, so they get a tenth of the examples.

HEAVY = settings(FUZZ, max_examples=max(EXAMPLES // 10, 10))


def tiny() -> Any:
    """A model with one convertible layer (32 -> 32 channels, 3x3)."""
    from torch import nn

    return nn.Sequential(nn.Conv2d(3, 32, 3), nn.Conv2d(32, 32, 3))


class Hung(Exception):
    """An invocation ran past BOUND_S (a FIFO that blocked, a read that never ended)."""


@contextlib.contextmanager
def watchdog(seconds: float) -> Any:
    """SIGALRM after ``seconds``: a blocking open or read in the run raises ``Hung``."""
    import signal

    def ring(signum: int, frame: Any) -> None:
        raise Hung(f"no answer after {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def checked(argv: list[str], cwd: Path, before: set[str]) -> None:
    with watchdog(BOUND_S * 2):
        check(argv, cwd, before)


def _save_state_dict(folder: Path) -> Path:
    import torch

    p = folder / "sd.pt"
    torch.save(tiny().state_dict(), p)
    return p


DTYPES = ["float16", "bfloat16", "float32", "float64", "int8", "int64", "bool", "complex64"]
SHAPES = st.lists(st.integers(0, 5), max_size=5)
FILLS = st.sampled_from(["randn", "zeros", "nan", "inf", "huge"])


@st.composite
def data_file(draw: Any) -> tuple[str, Any]:
    """What a --calibration-data/--eval-data file holds: random bytes, or a tensor of any
    dtype and shape (NaN, inf, huge values included), as .pt or .npy."""
    if draw(st.booleans()):
        return draw(st.sampled_from([".pt", ".npy", ".bin"])), draw(st.binary(max_size=600))
    return (draw(st.sampled_from([".pt", ".npy"])),
            (draw(st.sampled_from(DTYPES)), draw(SHAPES), draw(FILLS)))


def _write_data(folder: Path, suffix: str, spec: Any) -> Path:
    import numpy as np
    import torch

    p = folder / f"data{suffix}"
    if isinstance(spec, bytes):
        p.write_bytes(spec)
        return p
    dtype, shape, fill = spec
    t = torch.randn(shape) if shape else torch.randn(())
    t = {"zeros": t * 0, "nan": t / 0 * 0, "inf": t / 0, "huge": t * 1e38}.get(fill, t)
    t = t.to(getattr(torch, dtype))
    if suffix == ".npy" and dtype != "bfloat16":
        np.save(p, t.numpy())
    else:
        torch.save(t, p)
    return p


@HEAVY
@given(spec=data_file(), option=st.sampled_from(["--calibration-data", "--eval-data"]))
def test_data_files_keep_the_contract(spec: tuple[str, Any], option: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sd = _save_state_dict(folder)
        data = _write_data(folder, *spec)
        checked(["convert", str(sd), "--arch", "tests.test_fuzz:tiny", "--dry-run", option,
                 str(data)], folder, {p.name for p in folder.iterdir()})


_REPORTS: dict[str, Any] = {}


def _shard_reports() -> dict[str, Any]:
    """Two dry-run shard reports of one config (made once): the material to hand-edit."""
    import json

    if not _REPORTS:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "c.yaml").write_text("cases:\n  - name: a\n    layer: {in: 8, hw: 8}\n"
                                           "  - name: b\n    layer: {in: 16, hw: 8}\n")
            for i in (1, 2):
                code, text, _ = invoke(["profile", "c.yaml", "--dry-run", "--shard",
                                        f"{i}/2", "--report", f"s{i}.json"], folder)
                assert code == 0, text
                _REPORTS[f"s{i}.json"] = json.loads((folder / f"s{i}.json").read_text())
            _REPORTS["c.yaml"] = (folder / "c.yaml").read_text()
    return _REPORTS


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _edit(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


@HEAVY
@given(data=st.data(), value=st.one_of(SCALARS, st.lists(SCALARS, max_size=2),
                                       st.dictionaries(st.sampled_from(KEYS), SCALARS,
                                                       max_size=2)),
       delete=st.booleans(), which=st.sampled_from(["s1.json", "s2.json"]),
       how=st.sampled_from(["merge", "baseline"]))
def test_hand_edited_reports_keep_the_contract(data: Any, value: Any, delete: bool,
                                               which: str, how: str) -> None:
    import copy
    import json

    reports = _shard_reports()
    doc = copy.deepcopy(reports[which])
    path = data.draw(st.sampled_from(_paths(doc)))
    doc = _edit(doc, path, value, delete)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "c.yaml").write_text(reports["c.yaml"])
        for name in ("s1.json", "s2.json"):
            text = json.dumps(doc if name == which else reports[name], allow_nan=True)
            (folder / name).write_text(text)
        # reading, validating and merging, then the table or the JSON of what passed
        argv = (["profile", "--merge", "s1.json", "s2.json"] if how == "merge"
                else ["profile", "c.yaml", "--dry-run", "--baseline", which])
        argv += ["--json"] if data.draw(st.booleans()) else []
        checked(argv, folder, {p.name for p in folder.iterdir()})


_PLAN: dict[str, Any] = {}


def _plan() -> dict[str, Any]:
    """A real plan (convert of tiny's state_dict), made once."""
    import json

    if not _PLAN:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            sd = _save_state_dict(folder)
            code, text, _ = invoke(["convert", str(sd), "--arch", "tests.test_fuzz:tiny",
                                    "-o", "out.pt"], folder)
            assert code == 0, text
            _PLAN.update(json.loads((folder / "out.pt.plan.json").read_text()))
    return _PLAN


@HEAVY
@given(data=st.data(), value=st.one_of(SCALARS, st.sampled_from([10**6, -1, 0, 2**63]),
                                       st.lists(SCALARS, max_size=3)),
       delete=st.booleans())
def test_plans_keep_the_contract(data: Any, value: Any, delete: bool) -> None:
    """apply_plan on a hand-edited plan: a model, or one ``ValueError`` line, before any
    tensor is made (a multiplier of a million never allocates)."""
    import copy

    from dsconv_cli import apply_plan

    doc = copy.deepcopy(_plan())
    doc = _edit(doc, data.draw(st.sampled_from(_paths(doc)[1:])), value, delete)
    t0 = time.perf_counter()
    with watchdog(BOUND_S):
        try:
            apply_plan(tiny(), doc)
        except ValueError as e:
            assert str(e) and "\n" not in str(e), repr(e)
    assert time.perf_counter() - t0 < BOUND_S


SPECIAL = ["fifo", "/dev/null", "/dev/zero", "folder", "dangling", "to-zero"]
#: (command line with {} for the special file, or a --merge / --baseline / data slot)
SLOTS = [
    ["profile", "{}", "--dry-run"],
    ["profile", "--merge", "{}", "{}"],
    ["profile", "c.yaml", "--dry-run", "--baseline", "{}"],
    ["profile", "c.yaml", "--dry-run", "--report", "{}"],
    ["profile", "c.yaml", "--only", "no-such-case", "--save-baseline", "{}"],
    ["convert", "sd.pt", "--arch", "tests.test_fuzz:tiny", "--dry-run",
     "--calibration-data", "{}"],
    ["convert", "sd.pt", "--arch", "tests.test_fuzz:tiny", "--dry-run", "--eval-data", "{}"],
    ["convert", "{}", "--dry-run"],
    ["convert", "sd.pt", "--arch", "tests.test_fuzz:tiny", "-o", "{}"],
    ["compare", "--model", "{}", "--input-shape", "1,3,8,8"],
    ["compare", "--in", "8", "--hw", "4", "--report", "{}"],
]


def _special(folder: Path, kind: str) -> str:
    if kind.startswith("/dev/"):
        return kind
    p = folder / kind
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "folder":
        p.mkdir()
    elif kind == "dangling":
        p.symlink_to(folder / "nowhere")
    else:
        p.symlink_to("/dev/zero")
    return str(p)


@FUZZ
@given(slot=st.sampled_from(SLOTS), kind=st.sampled_from(SPECIAL))
def test_special_files_as_every_input_and_output(slot: list[str], kind: str) -> None:
    """A FIFO, a device, a folder or a symlink to one, as any input or output: one line,
    exit 2 (or a run that ignores it correctly), never a hang or an unbounded read."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "c.yaml").write_text("cases:\n  - name: a\n    layer: {in: 8, hw: 8}\n")
        _save_state_dict(folder)
        target = _special(folder, kind)
        argv = [target if a == "{}" else a for a in slot]
        checked(argv, folder, {p.name for p in folder.iterdir()})
