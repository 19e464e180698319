"""The Typer command line: one module per subcommand, thin over the core and backend."""

from .app import app

__all__ = ["app"]
