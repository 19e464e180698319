"""dsconv: what a depthwise separable convolution buys you, in theory and on your hardware.

The analytic core (``specs``, ``cost``, ``cases``, ``presets``, ``plan``) is stdlib-only;
``dsconv_cli.torch_backend`` is the only code that imports torch, loaded on demand.

The Python API (docs/API.md) is :func:`compare_layer`, :func:`analyse`, :func:`convert` and
:func:`profile`, with the results and errors they return and raise. Each name is imported
on first use (PEP 562), so ``import dsconv_cli`` stays cheap and never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "BudgetError",
    "ConfigError",
    "Conversion",
    "DsconvError",
    "FieldError",
    "InputError",
    "LayerComparison",
    "ModelAnalysis",
    "ProfileResult",
    "UserCodeError",
    "__version__",
    "analyse",
    "apply_plan",
    "compare_layer",
    "convert",
    "profile",
]

#: public name -> the module that defines it (imported when the name is first used)
_LAZY = {
    "analyse": "api", "compare_layer": "api", "convert": "api", "profile": "api",
    "Conversion": "api",
    "LayerComparison": "results", "ModelAnalysis": "results", "ProfileResult": "results",
    "DsconvError": "errors", "InputError": "errors", "FieldError": "errors",
    "ConfigError": "errors", "UserCodeError": "errors", "BackendError": "errors",
    "BudgetError": "errors",
}

if TYPE_CHECKING:
    from .api import Conversion, analyse, compare_layer, convert, profile
    from .errors import (
        BackendError,
        BudgetError,
        ConfigError,
        DsconvError,
        FieldError,
        InputError,
        UserCodeError,
    )
    from .results import LayerComparison, ModelAnalysis, ProfileResult


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dsconv_cli' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def apply_plan(model: Any, plan: Any) -> Any:
    """Rebuild the depthwise separable structure recorded in a conversion plan (a dict or
    the path of a ``.plan.json``) on ``model``, in place, so a converted state_dict loads.
    Imports torch."""
    from .torch_backend.convert import apply_plan as _apply

    return _apply(model, plan)
