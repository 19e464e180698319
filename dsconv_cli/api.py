"""The Python API: :func:`compare_layer`, :func:`analyse`, :func:`convert` and
:func:`profile`, over the services the command line calls, returning the typed results
it renders (:mod:`dsconv_cli.results`: ``.to_dict()`` is the command's JSON case,
``print(result)`` its table).

Keywords are the command's options, ``-`` spelt ``_`` (``--input-shape`` is
``input_shape``; ``--in``/``--out`` are ``in_channels``/``out_channels``), with the same
defaults. A bad value raises a :class:`~dsconv_cli.errors.DsconvError` subclass with the
command's one-line message, the option named by its keyword; what the command exits 1 for
(a refused conversion, a case that could not run) raises :class:`BackendError` or
:class:`BudgetError`, except a profile's budgets, which :class:`ProfileResult` reports.
Nothing here prints, exits or reads ``sys.argv``; status and warnings go to the
``dsconv`` logger, and a progress bar to stderr only with ``progress=True``.

The checks of option values are the command line's own functions (``dsconv_cli.cli``),
imported when a call needs them, so the two faces cannot disagree.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union, cast

from .errors import BackendError, BudgetError, DsconvError, InputError
from .gate import DEFAULT_REGRESSION_THRESHOLD
from .options import MeasureOptions
from .results import (
    ConvertExport,
    ConvertResult,
    LayerComparison,
    ModelAnalysis,
    ProfileResult,
)
from .services import Hooks

if TYPE_CHECKING:
    import numpy
    import torch
    from torch import nn

    from .services.convert import Converted

__all__ = ["Conversion", "analyse", "compare_layer", "convert", "profile"]

#: one layer size: 3, (3, 5) or "3x5"
Size = Union[int, tuple[int, int], str]
#: a whole input, batch included: (1, 3, 224, 224) or "1,3,224,224"
Shape = Union[Sequence[int], str]
PathLike = Union[str, "os.PathLike[str]"]
#: inputs for calibration or the fidelity check: a tensor, an array or a file of them
Data = Union["torch.Tensor", "numpy.ndarray", PathLike]

LOG = logging.getLogger("dsconv")
LOG.addHandler(logging.NullHandler())  # a library's logger prints nothing unless asked


# ---------------------------------------------------------------------- names and types

_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
#: options whose keyword is not the option with ``_`` for ``-``
_RENAMED = {"--in": "in_channels", "--out": "out_channels"}


def _keywords(text: str, names: frozenset[str]) -> str:
    """``text`` with each option of ``names`` written as its keyword (``--input-shape`` ->
    ``input_shape``); other text is left alone."""

    def keyword(m: re.Match[str]) -> str:
        name = _RENAMED.get(m.group(0), m.group(0)[2:].replace("-", "_"))
        return name if name in names else m.group(0)

    return _FLAG.sub(keyword, text)


@contextlib.contextmanager
def _named(names: frozenset[str]) -> Iterator[None]:
    """dsconv's errors raised inside, their options named by the keywords ``names``."""
    try:
        yield
    except DsconvError as e:
        e.message = _keywords(e.message, names)
        e.hint = _keywords(e.hint, names) if e.hint else e.hint
        e.args = (e.message,)
        raise


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else type(value).__name__


def _expected(name: str, what: str, value: Any) -> InputError:
    return InputError(f"Invalid value for '{name}': expected {what}, got {_shown(value)}")


def _int(name: str, value: Any, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _expected(name, "an integer", value)
    return value


def _float(name: str, value: Any, optional: bool = True) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _expected(name, "a number", value)
    return float(value)


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _expected(name, "True or False", value)
    return value


def _str(name: str, value: Any, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _expected(name, "a string", value)
    return value


def _path(name: str, value: Any, optional: bool = True) -> Path | None:
    if value is None and optional:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise _expected(name, "a path", value)
    return Path(value)


def _globs(name: str, value: Any) -> list[str] | None:
    """``include``/``exclude``: a glob or a list of them."""
    if value is None or isinstance(value, str):
        return None if value is None else [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise _expected(name, "a glob or a list of globs", value)


def _shape_text(name: str, value: Any, optional: bool = False) -> str | None:
    """A whole input shape as the command line writes it (``1,3,224,224``)."""
    if value is None and optional:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return ",".join(str(v) for v in value)
    raise _expected(name, "a shape like (1, 3, 224, 224)", value)


def _json_text(name: str, value: Any) -> str | None:
    """``arch_kwargs``: a dict, written as the JSON the command line parses."""
    import json

    if value is None:
        return None
    if not isinstance(value, dict):
        raise _expected(name, "a dict of keyword arguments", value)
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as e:
        raise InputError(f"Invalid value for '{name}': not JSON data ({e})") from None


def _hooks(progress: bool) -> Hooks:
    """Status and warnings to the ``dsconv`` logger; with ``progress``, the command's
    progress bar on stderr."""
    if not progress:
        return Hooks(status=LOG.info, warn=LOG.warning)
    from .cli.common import progress as bar

    return Hooks(status=LOG.info, warn=LOG.warning, progress=bar)


def _measure_values(device: Any, dtype: Any, threads: Any, memory_format: Any,
                    min_time: Any, warmup: Any, rounds: Any, runtime: Any) -> tuple[Any, ...]:
    """The measurement keywords as the command line's option values (its enums, a runtime
    list as text), their types and choices checked."""
    from .cli.common import finite
    from .cli.options import Device, Dtype, MemoryFormat
    from .options import choose

    device = choose("--device", _str("device", device), [d.value for d in Device])
    dtype = choose("--dtype", _str("dtype", dtype), [d.value for d in Dtype])
    memory_format = choose("--memory-format", _str("memory_format", memory_format),
                           [m.value for m in MemoryFormat])
    if not isinstance(runtime, str):
        if not (isinstance(runtime, (list, tuple)) and all(isinstance(r, str)
                                                           for r in runtime)):
            raise _expected("runtime", "a runtime name or a list of them", runtime)
        runtime = ",".join(runtime)
    min_time = _float("min_time", min_time, optional=False)
    finite("--min-time", min_time, hi=3600)
    return (Device(device), Dtype(dtype), _int("threads", threads, True),
            MemoryFormat(memory_format), min_time, _int("warmup", warmup),
            _int("rounds", rounds), runtime)


def _measure_options(*values: Any) -> MeasureOptions:
    """How to measure (:func:`_measure_values`' arguments), checked by the command line's
    own checks."""
    from .cli.options import measure_options

    return measure_options(*_measure_values(*values))


def _is_module(model: Any) -> bool:
    from torch import nn

    return isinstance(model, nn.Module)


# ---------------------------------------------------------------------- compare_layer

#: compare_layer's keyword -> the layer field (:data:`dsconv_cli.cases.FIELDS`)
_LAYER_FIELDS = {"in_channels": "in", "out_channels": "out", "kernel": "kernel", "hw": "hw",
                 "stride": "stride", "padding": "padding", "dilation": "dilation",
                 "groups": "groups", "batch": "batch", "depth_multiplier": "depth_multiplier",
                 "expansion": "expansion", "expanded_channels": "expanded_channels",
                 "squeeze_channels": "squeeze_channels", "eca_k": "eca_k", "bias": "bias",
                 "se": "se", "activation": "activation", "kind": "kind"}
_COMPARE_NAMES = frozenset({*_LAYER_FIELDS, "dtype", "measure", "device", "threads",
                            "memory_format", "min_time", "warmup", "rounds", "runtime",
                            "recalibrate", "progress"})


def _layer_value(keyword: str, field: str, value: Any) -> Any:
    """One layer value, typed as a config gives it, checked by the layer parser."""
    from .cases import FIELDS, parse_value

    typ = FIELDS[field]
    if typ == "bool":
        return _bool(keyword, value)
    if typ == "str":
        return _str(keyword, value)
    if isinstance(value, (list, tuple)):
        if typ in ("pair", "padding") and len(value) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            return (value[0], value[1])
        raise _expected(keyword, "one value (a sweep is a Python loop)" if typ != "pair"
                        else "an integer or (H, W)", value)
    if typ == "float" and isinstance(value, str):
        raise _expected(keyword, "a number", value)
    return parse_value(field, value)


def compare_layer(
    *, in_channels: int = 256, out_channels: int | None = None, kernel: Size | None = None,
    hw: Size = 14, stride: Size | None = None, padding: Size | None = None,
    dilation: Size | None = None, groups: int | None = None, bias: bool | None = None,
    kind: str = "separable", expansion: float | None = None,
    expanded_channels: int | None = None, se: bool | None = None,
    squeeze_channels: int | None = None, activation: str | None = None,
    eca_k: int | None = None, batch: int | None = None, dtype: str = "fp32",
    depth_multiplier: int | None = None, measure: bool = False, device: str = "cpu",
    threads: int | None = None, memory_format: str = "nchw", min_time: float = 0.2,
    warmup: int = 3, rounds: int = 10, runtime: str | Sequence[str] = "eager",
    recalibrate: bool = False, progress: bool = False,
) -> LayerComparison:
    """A standard conv against a depthwise separable block (or another ``kind``), as
    ``dsconv compare --in 256 --out 256 -k 3 --hw 14`` compares them; timed on real layers
    with ``measure=True`` (which imports torch; without it, torch is never imported).

    Layer options left ``None`` take the kind's default, as options not given do on the
    command line: ``out_channels`` = ``in_channels``, ``kernel`` 3, ``stride`` 1,
    ``padding`` ``d*(K-1)//2``, ``groups`` 1, no bias, ``expansion`` 6, ``se`` on.
    Counts are per forward of the whole ``batch``; MACs exclude bias, FLOPs = 2 x MACs."""
    from .cases import resolve_layer
    from .errors import FieldError

    given = dict(locals())
    with _named(_COMPARE_NAMES):
        values: dict[str, Any] = {}
        try:
            for keyword, field in _LAYER_FIELDS.items():
                if given[keyword] is not None:
                    values[field] = _layer_value(keyword, field, given[keyword])
            case = resolve_layer(values, _str("kind", kind), _str("dtype", dtype))
        except FieldError as e:
            keyword = {v: k for k, v in _LAYER_FIELDS.items()}.get(e.field, e.field)
            raise InputError(f"Invalid value for '{keyword}': {e.message}", e.hint) from None
        if not _bool("measure", measure):
            return case.to_result()
        opts = _measure_options(device, dtype, threads, memory_format, min_time, warmup,
                                rounds, runtime)
        from .services.compare import measure_layers

        run = measure_layers([case], opts, _bool("recalibrate", recalibrate),
                             _hooks(_bool("progress", progress)))
    if run.failed == "interrupted":
        raise KeyboardInterrupt
    problems = [f"{c.name}: skipped {c.skipped}" for c in run.cases if c.skipped]
    problems += [f"runtime {rt}: {why}" for rt, why in run.runtime_errors.items()]
    if problems:
        raise BackendError("; ".join(problems))
    return run.cases[0]


# ---------------------------------------------------------------------- analyse

_ANALYSE_NAMES = frozenset({
    "model", "input_shape", "arch", "arch_kwargs", "depth_multiplier", "min_channels",
    "include", "exclude", "depth", "vs", "vs_arch", "vs_arch_kwargs", "trust_pickle",
    "state_dict_key", "map_location", "measure", "device", "dtype", "threads",
    "memory_format", "min_time", "warmup", "rounds", "runtime", "recalibrate", "progress"})


def analyse(
    model: nn.Module | PathLike | None = None, input_shape: Shape = (1, 3, 224, 224), *,
    arch: str | None = None, arch_kwargs: dict[str, Any] | None = None,
    depth_multiplier: int = 1, min_channels: int = 32, include: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None, depth: int = 3, vs: str | None = None,
    vs_arch: str | None = None, vs_arch_kwargs: dict[str, Any] | None = None,
    trust_pickle: bool = False, state_dict_key: str | None = None, map_location: str = "cpu",
    measure: bool = False, device: str = "cpu", dtype: str = "fp32",
    threads: int | None = None, memory_format: str = "nchw", min_time: float = 0.2,
    warmup: int = 3, rounds: int = 10, runtime: str | Sequence[str] = "eager",
    recalibrate: bool = False, progress: bool = False,
) -> ModelAnalysis:
    """A whole network counted per module at the ATen dispatch level, with the depthwise
    separable form of every Conv2d ``convert`` would take (``ds_opportunity``), as
    ``dsconv compare --model FILE --input-shape ...`` (or ``--arch``) reports it.

    ``model`` is a live ``nn.Module`` (counted on a meta copy: no arithmetic, no weight
    copied, the module itself never touched), a saved model file (loaded as the command
    loads it: ``arch``, ``trust_pickle``, ``state_dict_key``, ``map_location``), or None
    with ``arch`` to analyse an architecture without weights. ``measure=True`` times it
    (whole and per module); ``vs`` compares it with ``"ds"`` (its conversion), a preset or
    a model file. Imports torch."""
    from .cli.compare import check_network_options, network_request

    live = model is not None and not isinstance(model, (str, os.PathLike))
    with _named(_ANALYSE_NAMES):
        if live and not _is_module(model):
            raise _expected("model", "an nn.Module or a model file", model)
        if live and arch is not None:
            raise InputError("Invalid value for 'arch': builds a model file's model (or "
                             "alone, an architecture); a live module is analysed as given")
        for name, value in (("depth", depth), ("min_channels", min_channels),
                            ("depth_multiplier", depth_multiplier)):
            _int(name, value)
        params: dict[str, Any] = {
            "model": None if live or model is None else str(_path("model", model)),
            "input_shape": _shape_text("input_shape", input_shape), "batch": None,
            "arch": _str("arch", arch, True), "arch_kwargs": _json_text("arch_kwargs",
                                                                         arch_kwargs),
            "depth_multiplier": str(depth_multiplier), "min_channels": min_channels,
            "include": _globs("include", include), "exclude": _globs("exclude", exclude),
            "depth": depth, "vs": _str("vs", vs, True), "vs_arch": _str("vs_arch", vs_arch, True),
            "vs_arch_kwargs": _json_text("vs_arch_kwargs", vs_arch_kwargs),
            "trust_pickle": _bool("trust_pickle", trust_pickle),
            "state_dict_key": _str("state_dict_key", state_dict_key, True),
            "map_location": _str("map_location", map_location)}
        check_network_options(params, [])
        request = network_request(params)
        if live:
            import dataclasses

            request = dataclasses.replace(
                request, source=dataclasses.replace(request.source, module=model),
                name=type(model).__name__)
        opts = (_measure_options(device, dtype, threads, memory_format, min_time, warmup,
                                 rounds, runtime) if _bool("measure", measure) else None)
        from .services.analyse import analyse_network

        result, _ = analyse_network(request, opts, _bool("recalibrate", recalibrate),
                                    _hooks(_bool("progress", progress)))
    import dataclasses

    return dataclasses.replace(result, depth_shown=depth)


# ---------------------------------------------------------------------- convert

_CONVERT_NAMES = frozenset({
    "model", "input_shape", "depth_multiplier", "target_macs", "target_latency", "energy",
    "max_error", "init", "allow_larger", "min_channels", "include", "exclude",
    "calibration_data", "eval_data", "refine_steps", "distill_steps", "calibration_batch",
    "min_agreement", "max_output_error", "seed", "arch", "arch_kwargs", "trust_pickle",
    "state_dict_key", "map_location", "runtime", "device", "threads", "memory_format",
    "recalibrate", "progress", "path", "force", "export"})


class Conversion:
    """A converted model (:func:`convert`): ``model`` is the converted ``nn.Module`` (the
    module converted was a copy), every figure of the command's report is an attribute
    (``layers``, ``totals``, ``fidelity``, ``verification``, ``distillation``...; the
    whole report is ``result``), ``plan`` the plan a state_dict is rebuilt with, and
    :meth:`save` / :meth:`export` write what ``dsconv convert -o`` / ``--export`` write."""

    def __init__(self, kept: Converted, live: bool) -> None:
        self._kept = kept
        self._live = live

    @property
    def result(self) -> ConvertResult:
        return self._kept.result

    @property
    def model(self) -> nn.Module:
        model: nn.Module = self._kept.loaded.model
        return model

    @property
    def plan(self) -> dict[str, Any]:
        """The ``.plan.json`` :meth:`save` writes beside the state_dict:
        ``dsconv_cli.apply_plan(MyNet(), plan)`` rebuilds the converted structure."""
        from .plan import plan_document

        k = self._kept
        return plan_document(k.decisions, k.loaded.source, k.calibrated, None, k.loaded.plan)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.result, name)

    def to_dict(self) -> dict[str, Any]:
        return self.result.to_dict()

    def __str__(self) -> str:
        return str(self.result)

    def __repr__(self) -> str:
        t = self.result.totals
        return (f"<Conversion of {self.result.name}: {t.converted} of {t.layers} conv(s) "
                f"converted, params {t.model_params_before:,} -> {t.model_params_after:,}>")

    def __rich__(self) -> Any:
        return self.result.__rich__()

    def _repr_markdown_(self) -> str:
        return self.result._repr_markdown_()

    def _repr_html_(self) -> str:
        return self.result._repr_html_()

    def save(self, path: PathLike, *, force: bool = False) -> list[Path]:
        """Write the converted model as ``dsconv convert -o PATH`` does (a live module: its
        state_dict at ``path`` and its plan beside it, ``PATH.plan.json``), atomically;
        an existing file is kept unless ``force``. Returns the files written."""
        import dataclasses

        from .atomic import check_writable, write_all_atomic
        from .torch_backend.convert import serialise

        with _named(_CONVERT_NAMES):
            out = _path("path", path, optional=False)
            assert out is not None
            k = self._kept
            loaded = dataclasses.replace(k.loaded, kind="state_dict") if self._live else k.loaded
            files = serialise(loaded, k.decisions, out, k.calibrated, None)
            for p, _ in files:
                check_writable(p, "path", overwrite=_bool("force", force))
            write_all_atomic(files, overwrite=force)
        return [p for p, _ in files]

    def export(self, path: PathLike, *, force: bool = False) -> ConvertExport:
        """Write a model that runs without dsconv or your code, as ``--export`` does:
        ``.pt2`` (torch.export) or ``.onnx`` by suffix, for the conversion's input shape,
        its output checked against the converted model before it is written."""
        from .atomic import check_writable, write_atomic
        from .names import export_format
        from .services.convert import export_converted

        with _named(_CONVERT_NAMES):
            out = _path("path", path, optional=False)
            assert out is not None
            shape = self._kept.input_shape
            if shape is None:
                raise InputError("--export: an export is made for one input shape: give "
                                 "convert() an input_shape (or calibration_data)")
            export_format(out)
            check_writable(out, "path", overwrite=_bool("force", force))
            info, data = export_converted(self.model, shape, self.result.verification.seed or 0,
                                          out, self.result.name)
            write_atomic(out, data)
        return info


def _data(name: str, value: Any) -> Any:
    """Calibration or eval inputs: a tensor as is, an array as a tensor, else a path."""
    if value is None or isinstance(value, (str, os.PathLike)):
        return _path(name, value)
    import torch

    if isinstance(value, torch.Tensor):
        return value
    if hasattr(value, "__array__") and hasattr(value, "dtype"):
        import numpy as np

        return torch.from_numpy(np.ascontiguousarray(value))
    raise _expected(name, "a tensor, an array or a file of them", value)


def convert(
    model: nn.Module | PathLike, input_shape: Shape | None = None, *,
    depth_multiplier: int | None = None, target_macs: float | None = None,
    target_latency: float | None = None, energy: float | None = None,
    max_error: float | None = None, init: str = "svd", allow_larger: bool = False,
    min_channels: int = 32, include: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None, calibration_data: Data | None = None,
    eval_data: Data | None = None, refine_steps: int = 0, distill_steps: int = 0,
    calibration_batch: int = 32, min_agreement: float | None = None,
    max_output_error: float | None = None, seed: int = 0, arch: str | None = None,
    arch_kwargs: dict[str, Any] | None = None, trust_pickle: bool = False,
    state_dict_key: str | None = None, map_location: str = "cpu",
    runtime: str = "eager", device: str = "cpu", threads: int | None = None,
    memory_format: str = "nchw", min_time: float = 0.2, warmup: int = 3, rounds: int = 10,
    recalibrate: bool = False, progress: bool = False,
) -> Conversion:
    """Replace the eligible Conv2d layers of ``model`` (a live ``nn.Module``, left as it
    was, or a saved model file loaded as ``dsconv convert`` loads it) with depthwise
    separable pairs initialised from the original weights, as ``dsconv convert`` does:
    ``depth_multiplier`` (default 1), ``energy`` or a ``target_macs`` budget pick the
    ranks; ``calibration_data`` refits the converted layers (``refine_steps``,
    ``distill_steps`` train further) and with ``eval_data`` measures fidelity. Nothing is
    written: :meth:`Conversion.save` and :meth:`Conversion.export` write. A conversion
    that ``min_agreement`` or ``max_output_error`` refuses raises :class:`BudgetError`.

    ``target_latency`` (a fraction (0, 1) of the original's latency; it picks the ranks
    itself) is measured in ``runtime`` on ``device`` with ``threads`` in ``memory_format``
    (``min_time``, ``warmup``, ``rounds`` as on the command line); a target missed raises
    :class:`BudgetError`. Imports torch."""
    from .cli.convert import Init, _check_budget, _check_fit, _check_latency, _plan_options
    from .cli.options import parse_arch_kwargs
    from .options import choose
    from .services.convert import ConvertRequest, convert_kept

    live = not isinstance(model, (str, os.PathLike))
    with _named(_CONVERT_NAMES):
        if live and not _is_module(model):
            raise _expected("model", "an nn.Module or a model file", model)
        cal, held = _data("calibration_data", calibration_data), _data("eval_data", eval_data)
        for name, value in (("refine_steps", refine_steps), ("distill_steps", distill_steps),
                            ("calibration_batch", calibration_batch), ("seed", seed),
                            ("min_channels", min_channels)):
            _int(name, value)
        f = {name: _float(name, value) for name, value in (
            ("target_macs", target_macs), ("target_latency", target_latency),
            ("energy", energy), ("max_error", max_error), ("min_agreement", min_agreement),
            ("max_output_error", max_output_error))}
        m = _int("depth_multiplier", depth_multiplier, True)
        how = Init(choose("--init", _str("init", init), [i.value for i in Init]))
        _check_fit(cal, held, refine_steps, calibration_batch, f["min_agreement"],
                   f["max_output_error"], distill_steps)
        _check_budget(f["target_macs"], f["energy"], m, how)
        shape = _shape_text("input_shape", input_shape, True)
        dev, _, n, layout, t_min, warm, blocks, rt = _measure_values(
            device, "fp32", threads, memory_format, min_time, warmup, rounds,
            _str("runtime", runtime))
        measure = _check_latency(f["target_latency"], f["target_macs"], f["energy"], m, how,
                                 shape, rt, dev, n, layout, t_min, warm, blocks)
        if not 0 <= seed < 1 << 64:  # the command's check: torch's seeds are 64-bit
            raise InputError(f"--seed must be 0 to 2**64 - 1, got {seed}")
        plan = _plan_options(min_channels, _globs("include", include),
                             _globs("exclude", exclude), 1 if m is None else m, how,
                             f["energy"], f["max_error"], _bool("allow_larger", allow_larger))
        request = ConvertRequest(
            model=Path(type(model).__name__) if live else Path(model),  # type: ignore[arg-type]
            module=cast("nn.Module", model) if live else None, dry_run=True, plan=plan,
            input_shape=shape, map_location=_str("map_location", map_location),
            trust_pickle=_bool("trust_pickle", trust_pickle),
            state_dict_key=_str("state_dict_key", state_dict_key, True),
            arch=_str("arch", arch, True),
            arch_kwargs=parse_arch_kwargs(_json_text("arch_kwargs", arch_kwargs)),
            target_macs=f["target_macs"], seed=seed, calibration_data=cal, eval_data=held,
            refine_steps=refine_steps, distill_steps=distill_steps,
            calibration_batch=calibration_batch, min_agreement=f["min_agreement"],
            max_output_error=f["max_output_error"], target_latency=f["target_latency"],
            measure=measure, recalibrate=_bool("recalibrate", recalibrate))
        kept = convert_kept(request, _hooks(_bool("progress", progress)))
        if kept.result.refusal:
            raise BudgetError(kept.result.refusal)
    return Conversion(kept, live)


# ---------------------------------------------------------------------- profile

_PROFILE_NAMES = frozenset({
    "config", "only", "dry_run", "baseline", "regression_threshold", "normalize", "strict",
    "strict_env", "trust_pickle", "trust_code", "recalibrate", "progress"})


def _config(config: Any) -> tuple[Any, Path | None]:
    """The config (a YAML file, or a dict of the same keys) and its file."""
    from .config import config_from_data, load_config

    if isinstance(config, dict):
        return config_from_data(config, "config"), None
    path = _path("config", config, optional=False)
    assert path is not None
    return load_config(path), path


def _meta(path: Path | None, config: Any, only: list[str] | None, planned: list[Any],
          strict: bool) -> dict[str, Any]:
    """The report keys that identify the run, as the command writes them; a dict's
    digest is of its canonical JSON."""
    import hashlib
    import json

    from .services.gate import run_meta

    names = [pc.name for pc in planned]
    if path is not None:
        return run_meta(path, None, only, names, strict)
    text = json.dumps(config, sort_keys=True, default=str).encode()
    return run_meta("<dict>", None, only, names, strict,
                    digest=hashlib.sha256(text).hexdigest()[:16])


def profile(
    config: PathLike | dict[str, Any], *, only: str | Sequence[str] | None = None,
    dry_run: bool = False, baseline: PathLike | None = None,
    regression_threshold: float = DEFAULT_REGRESSION_THRESHOLD, normalize: bool = False,
    strict: bool = False, strict_env: bool = False, trust_pickle: bool = False,
    trust_code: bool = False, recalibrate: bool = False, progress: bool = False,
) -> ProfileResult:
    """Run a profile config (a YAML file, or a dict with the same keys: docs/CONFIG.md)
    as ``dsconv profile`` does: every case against its budgets, and against ``baseline``
    (a previous JSON report). A failed budget raises nothing: ``.passed`` is whether the
    command would exit 0 and ``.failures`` lists what failed; a bad config raises
    :class:`~dsconv_cli.errors.ConfigError`. ``dry_run=True`` checks the analytic budgets
    without measuring (and without torch)."""
    from .cli.common import finite
    from .results import envelope
    from .services.gate import apply_baseline, exit_status, load_report, run_report
    from .suite import plan_cases

    with _named(_PROFILE_NAMES):
        threshold = _float("regression_threshold", regression_threshold, optional=False)
        finite("--regression-threshold", threshold, hi=100)
        cfg, path = _config(config)
        from .config import check_trust

        check_trust(cfg, trust_pickle=_bool("trust_pickle", trust_pickle),
                    trust_code=_bool("trust_code", trust_code))
        picked = _globs("only", only)
        planned = plan_cases(cfg, picked)
        meta = _meta(path, config, picked, planned, _bool("strict", strict))
        base_path = _path("baseline", baseline)
        base = load_report(base_path) if base_path is not None else None
        if _bool("dry_run", dry_run):
            from .services.profile import plan_results

            cases = plan_results(cfg, planned)
            env = envelope(cases, dry_run=True, **meta, exit_status=exit_status(cases, {}))
            return ProfileResult(cases, None, _rest(env))
        from .services.gate import baseline_environment_problem
        from .services.profile import run_profile

        hooks = _hooks(_bool("progress", progress))
        check_env = _bool("strict_env", strict_env)

        def before_cases(environment: dict[str, Any]) -> None:
            problem = baseline_environment_problem(base, environment)
            if problem is not None and check_env:
                raise InputError(problem, hint="drop --strict-env to compare anyway")
            if problem is not None:
                hooks.warn(problem)

        run = run_profile(cfg, planned, _bool("recalibrate", recalibrate), hooks,
                          before_cases=before_cases, strict=_bool("strict", strict))
    if run.interrupted:
        raise KeyboardInterrupt
    cases = run.cases
    if base is not None:
        cases = apply_baseline(cases, base, threshold, run.environment,
                               _bool("normalize", normalize), strict)
    env = run_report(run, cases, meta)
    return ProfileResult(cases, env.get("environment"), _rest(env))


def _rest(env: dict[str, Any]) -> dict[str, Any]:
    """A report's keys besides the envelope's own (what :class:`ProfileResult` keeps in
    ``meta``)."""
    return {k: v for k, v in env.items()
            if k not in ("schema_version", "tool", "environment", "cases")}
