"""The ``profile`` results (stdlib only): frozen dataclasses serialised by
:func:`dsconv_cli.results.to_json`.

Kept apart from :mod:`dsconv_cli.results` so that a command imports only its own
result classes (each dataclass costs start-up time); ``from dsconv_cli.results import
X`` finds them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from .results import Rendered, envelope, optional
from .results_measure import Measurement, Speedup

__all__ = [
    "BudgetCheck", "ProfileCaseResult",
]


@dataclass(frozen=True)
class BudgetCheck:
    limit: float
    value: Optional[float]
    ok: bool
    #: a measured budget's 95% interval for its value (the median's, the A/B ratio's)
    interval: Optional[list[float]] = optional()
    #: the interval straddles the limit even after re-measuring: met or not, noise decides
    marginal: Optional[bool] = optional()


#: ``marginal``: a measured budget whose interval straddles its limit (it does not fail the
#: gate unless ``--strict``)
ProfileVerdict = Literal["pass", "fail", "error", "planned", "marginal"]


@dataclass(frozen=True)
class ProfileCaseResult(Rendered):
    """One profile case: what ran, against which budget, and its verdict.

    ``verdict`` is the case's outcome and nothing else: ``pass``, ``fail`` (a budget or a
    regression), ``error`` (it could not run) or ``planned`` (``--dry-run``)."""

    name: str
    source: dict[str, Any]
    analytic: dict[str, Any]
    budget: dict[str, BudgetCheck]
    verdict: ProfileVerdict
    budget_pending: Optional[list[str]] = optional()
    measured: Optional[Measurement] = optional()
    standard_measured: Optional[Measurement] = optional()
    speedup: Optional[Speedup] = optional()
    why: Optional[str] = optional()
    timed_s: Optional[float] = optional()
    stages: Optional[list[dict[str, Any]]] = optional()
    original: Optional[dict[str, Any]] = optional()
    conversion: Optional[dict[str, Any]] = optional()
    baseline: Optional[dict[str, Any]] = optional()
    #: a model case timed against its vs: in the same job ({source, speedup})
    vs: Optional[dict[str, Any]] = optional()
    speedup_by_runtime: Optional[dict[str, float]] = optional()
    failures: Optional[list[str]] = optional()
    error: Optional[str] = optional()
    #: noisy or implausible measurements (the flags ``compare`` gives them); ``--strict``
    #: makes them failures
    flags: Optional[list[str]] = optional()

    _view = "profile_view"


@dataclass(frozen=True)
class ProfileResult(Rendered):
    """A whole profile run (``dsconv_cli.profile``): its cases and the rest of the report
    the command writes. Running never raises for a failed budget: ``passed`` says whether
    the run would exit 0, ``failures`` what failed, one line each (for an assertion
    message)."""

    cases: list[ProfileCaseResult]
    environment: Optional[dict[str, Any]]
    #: the report's other keys: summary, config, config_digest, exit_status, dry_run...
    meta: dict[str, Any] = field(default_factory=dict)

    _view = "profile_view"

    def report(self) -> dict[str, Any]:
        return envelope(self.cases, self.environment, **self.meta)

    def to_dict(self) -> dict[str, Any]:
        """The whole report, as ``dsconv profile --json`` writes it."""
        from .render.formats import json_safe

        data: dict[str, Any] = json_safe(self.report())
        return data

    @property
    def exit_status(self) -> int:
        return int(self.meta.get("exit_status", 0))

    @property
    def passed(self) -> bool:
        return self.exit_status == 0

    @property
    def failures(self) -> list[str]:
        """What failed, one line each, as the report's table lists them first."""
        from .render.views import profile_view

        return [a for t in profile_view(self.to_dict()) for a in t.alerts]
