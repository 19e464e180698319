"""dsconv: what a depthwise separable convolution buys you, in theory and on your hardware.

The analytic core (``specs``, ``cost``, ``cases``, ``presets``, ``plan``) is stdlib-only;
``dsconv_cli.torch_backend`` is the only code that imports torch, loaded on demand.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "apply_plan"]


def apply_plan(model: Any, plan: Any) -> Any:
    """Rebuild the depthwise separable structure recorded in a conversion plan (a dict or
    the path of a ``.plan.json``) on ``model``, in place, so a converted state_dict loads.
    Imports torch."""
    from .torch_backend.convert import apply_plan as _apply

    return _apply(model, plan)
