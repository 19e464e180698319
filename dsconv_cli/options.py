"""What the command line and the config ask the services for: option records and the
parsers of their values (stdlib only, so that neither the CLI nor the config imports torch
to build one). :class:`MeasureOptions` is how a measurement runs; the torch backend reads it.

The names of devices and memory layouts are defined here once; the CLI's choices and the
backend's tables (``torch_backend.timing``) are keyed by them. Runtime names live in
:mod:`dsconv_cli.names`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["DEVICE_NAMES", "MEMORY_FORMAT_NAMES", "QUANTIZE_SCHEMES", "MeasureOptions",
           "check_int8", "choose", "did_you_mean", "parse_input_shape"]

#: where layers can be timed (``auto`` = cuda if available)
DEVICE_NAMES: tuple[str, ...] = ("cpu", "cuda", "auto")
#: tensor layouts a measurement can use
MEMORY_FORMAT_NAMES: tuple[str, ...] = ("nchw", "channels_last")


@dataclass(frozen=True)
class MeasureOptions:
    device: str = "cpu"
    dtype: str = "fp32"
    threads: int | None = None
    memory_formats: tuple[str, ...] = ("nchw",)
    min_time: float = 0.2
    warmup: int = 3
    #: runtimes to time in; the first is the one A/B comparisons and per-module times use
    runtimes: tuple[str, ...] = ("eager",)
    #: interleaved A/B rounds (blocks per side) wherever two things are timed together
    rounds: int = 10
    #: ``--dtype int8``: the weights' quantization scheme (per-channel or per-tensor)
    quantize_scheme: str = "per-channel"
    #: ``--dtype int8``: the inputs a model's ranges are calibrated on (a layer's are
    #: seeded random inputs)
    calibration_data: str | None = None


#: what ``--quantize-scheme`` takes: int8 weights per output channel or one range per tensor
QUANTIZE_SCHEMES: tuple[str, ...] = ("per-channel", "per-tensor")


def check_int8(opts: MeasureOptions) -> None:
    """``--dtype int8`` is ONNX Runtime's static quantization: it needs --runtime
    onnxruntime (alone) and ONNX Runtime installed. Checked before any work (exit 2)."""
    import importlib.util

    from .errors import InputError

    if opts.dtype != "int8":
        return
    if opts.runtimes != ("onnxruntime",):
        raise InputError("--dtype int8 is measured in ONNX Runtime (static quantization): "
                         "give --runtime onnxruntime")
    if importlib.util.find_spec("onnxruntime") is None:
        raise InputError("--dtype int8 needs ONNX Runtime: pip install 'dsconv[onnx]'")
    if opts.quantize_scheme not in QUANTIZE_SCHEMES:
        raise InputError(f"--quantize-scheme {opts.quantize_scheme!r}: choose from "
                         f"{', '.join(QUANTIZE_SCHEMES)}")


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``--input-shape`` (a config's ``input_shape``): the whole input, batch included."""
    from .errors import InputError

    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise InputError(f"--input-shape {text!r}: expected integers like 1,3,224,224") from None
    if len(shape) < 2 or min(shape) <= 0:
        raise InputError(f"--input-shape {text!r}: expected positive sizes like 1,3,224,224")
    return shape


def did_you_mean(value: str, choices: Iterable[str]) -> str | None:
    """The hint for a misspelt name: ``did you mean 'separable'?``, or None."""
    close = difflib.get_close_matches(value, list(choices), n=1)
    return f"did you mean {close[0]!r}?" if close else None


def choose(option: str, value: str, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``; else exit 2 naming the option, the choices and
    the closest one."""
    names = list(choices)
    if value in names:
        return value
    from .errors import InputError

    raise InputError(f"Invalid value for '{option}': {value!r} is not one of "
                     f"{', '.join(names)}", hint=did_you_mean(value, names))
