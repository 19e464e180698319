"""The ``dsconv`` Typer app, and the command class every command is built with.

:class:`Command` keeps the help and the usage errors in dsconv's words, whatever Typer's
defaults: a metavar that reads as a value (``INT``, ``PATH``, ``fp32|fp16``; none on a
flag), derived from the option's type where the option does not name one; and a bad value
said plainly (``'seperable' is not one of separable, ...``, with "did you mean"), never in
the validation library's wording.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from enum import Enum
from importlib import import_module
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from typer._click.exceptions import BadParameter, UsageError
from typer.core import TyperArgument, TyperCommand, TyperGroup

from dsconv_cli import __version__

from ..options import did_you_mean
from .common import STATE

#: every subcommand, by the module of ``dsconv_cli.cli`` that defines it (a function of the
#: same name): only the module of the command that runs is imported
COMMANDS: tuple[str, ...] = ("compare", "convert", "profile")

#: metavar of a value by its Python type
METAVARS: dict[Any, str] = {int: "INT", float: "FLOAT", str: "TEXT", bool: "BOOL", Path: "PATH"}
#: how a message names a value of a type
VALUE_NAMES: dict[Any, str] = {int: "an integer", float: "a number", bool: "true or false",
                               Path: "a path", str: "text"}


class UsageHint(BadParameter):
    """A bad value, said with its hint (``did you mean``) as dsconv's own errors are:
    ``Invalid value for '--kind': ... (hint: did you mean 'separable'?)``."""

    def __init__(self, message: str, hint: str | None, original: BadParameter) -> None:
        super().__init__(message, ctx=original.ctx, param=original.param,
                         param_hint=original.param_hint)
        self.hint = hint

    def format_message(self) -> str:
        text = super().format_message()
        return f"{text} (hint: {self.hint})" if self.hint else text


def _choices(param: Any) -> list[str] | None:
    desc = getattr(param, "type_descriptor", None)
    if desc is None or not desc.is_choice:
        return None
    return [c.value if isinstance(c, Enum) else str(c) for c in desc.choices or ()]


def _base_type(param: Any) -> Any:
    desc = getattr(param, "type_descriptor", None)
    if desc is None:
        return None
    ann = desc.annotation
    return (get_args(ann) or (ann,))[0] if desc.is_list else ann


def value_metavar(param: Any) -> str:
    """What a parameter's value looks like in the help: nothing for a flag, the choices, the
    argument's name, or the type (``INT``, ``FLOAT``, ``PATH``, ``TEXT``)."""
    if getattr(param, "is_flag", False):
        return ""
    if isinstance(param, TyperArgument):
        return (param.name or "value").upper() + ("..." if param.nargs != 1 else "")
    choices = _choices(param)
    if choices is not None:
        return "|".join(choices)
    desc = getattr(param, "type_descriptor", None)
    if desc is not None and desc.is_path:
        return "PATH"
    return METAVARS.get(_base_type(param), "VALUE")


def in_our_words(e: BadParameter) -> UsageHint | None:
    """A bad value the validation library worded, said in dsconv's words (None when the
    error is not the library's)."""
    cause = e.__cause__
    if cause is None or not hasattr(cause, "errors") or not callable(cause.errors):
        return None
    errors = cause.errors()
    value = errors[0].get("input") if errors else None
    choices = _choices(e.param)
    if choices is not None:
        return UsageHint(f"{value!r} is not one of {', '.join(choices)}", did_you_mean(
            str(value), choices), e)
    what = VALUE_NAMES.get(_base_type(e.param))
    if what is None:
        return None
    return UsageHint(f"expected {what}, got {value!r}", None, e)


class Argument(TyperArgument):
    """An argument shown by its metavar alone: ``MODEL`` (``[CONFIG...]`` when optional) in
    the usage line, no ``<path>`` type beside it in the help."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        return self.display_name_raw if self.required else f"[{self.display_name_raw}]"


def _with_metavars(params: list[Any]) -> list[Any]:
    for param in params:
        if param.metavar is None:
            param.metavar = value_metavar(param)
        if type(param) is TyperArgument:
            param.__class__ = Argument
    return params


def command_function(name: str) -> Any:
    """The function of subcommand ``name`` (imports its module)."""
    return getattr(import_module(f"{__package__}.{name}"), name)


class LazyCommands(MutableMapping[str, Any]):
    """The group's commands: each built (its module imported, its options read from its
    signature) the first time it is looked up, so ``dsconv compare`` never imports
    ``convert`` or ``profile`` (start-up time)."""

    def __init__(self) -> None:
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            if name not in COMMANDS:
                raise KeyError(name)
            from typer.main import get_command_from_info
            from typer.models import CommandInfo

            self._built[name] = get_command_from_info(
                CommandInfo(callback=command_function(name), no_args_is_help=True,
                            cls=Command),
                pretty_exceptions_short=app.pretty_exceptions_short,
                rich_markup_mode=app.rich_markup_mode)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*COMMANDS, *self._built]))

    def __len__(self) -> int:
        return len(set(COMMANDS) | set(self._built))


class Group(TyperGroup):
    """The ``dsconv`` group: its own options (--version, --debug) shown like a command's;
    its commands built on first use (:class:`LazyCommands`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = LazyCommands()

    def get_params(self, ctx: Any) -> list[Any]:
        return _with_metavars(super().get_params(ctx))


def reflow(text: str | None) -> str | None:
    """A docstring's paragraphs as one line each, so that the help wraps them at the
    terminal's width instead of keeping the source's line breaks."""
    if text is None:
        return None
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n"))


class Command(TyperCommand):
    """A dsconv command: value-like metavars, help that wraps at the terminal's width,
    usage errors in dsconv's words."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = reflow(self.help)

    def get_params(self, ctx: Any) -> list[Any]:
        return _with_metavars(super().get_params(ctx))

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except BadParameter as e:
            ours = in_our_words(e)
            if ours is None:
                raise
            raise ours from None
        except UsageError as e:  # '--bias=true': say which command's --help to read
            e.ctx = e.ctx or ctx
            raise


app = typer.Typer(
    name="dsconv",
    cls=Group,
    help="Efficiency analyzer for depthwise separable convolutions: theory vs measurement, "
    "model conversion, and CI budgets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"dsconv {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option(
        "--debug", help="Show tracebacks instead of one-line errors.")] = False,
) -> None:
    """dsconv: what a depthwise separable convolution buys you, in theory and in practice."""
    STATE.debug = debug
