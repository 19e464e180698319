"""The ``dsconv`` Typer app."""

from __future__ import annotations

from typing import Annotated

import typer

from dsconv_cli import __version__

from .common import STATE
from .compare import compare
from .convert import convert
from .profile import profile

app = typer.Typer(
    name="dsconv",
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


app.command(no_args_is_help=True)(compare)
app.command(no_args_is_help=True)(convert)
app.command(no_args_is_help=True)(profile)
