"""Latency-driven conversion on plain data (stdlib only): the per-layer latency table, the
chooser that spends a latency budget (``convert --target-latency F``), and the NetAdapt-style
adjustment of the budget after the whole model was measured.

The backend measures (``torch_backend.latency``); everything decided from the measurements
lives here, so the chooser is tested on fake tables.

- A **table entry** is one layer shape timed in one runtime: the original conv and its
  depthwise separable form at each candidate multiplier, timed interleaved in one run
  (:func:`torch_backend.timing.interleave`), each with its raw block times.
- A DS form is **measurably faster** than the conv when the A/B test on those block times
  says so (:func:`dsconv_cli.stats.compare_samples`: p < 0.05 and the interval of the
  speedup above 1). A layer with no such form keeps its conv, with both times.
- The **chooser** starts from the original model and takes, one at a time, the move (a layer
  to a faster form) that adds the least error per millisecond saved, until the predicted
  latency is within the budget; then it gives back error where the budget allows (the move
  to a slower, more exact form that removes the most error per millisecond added).
- The **prediction** is the model's measured time minus, for each changed layer, its conv's
  median time less its DS form's, times the calls per forward. Standalone layer times do not
  add up to a network's exactly; the end-to-end measurement says by how much, and
  :func:`adjusted_target` rescales the budget the chooser is given for the next round.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .stats import compare_samples, median_ci

__all__ = ["CANDIDATE_MULTIPLIERS", "Choice", "LatencyPlan", "LayerTimes", "Timed",
           "adjusted_target", "choose", "entry_problem", "judge", "latency_ratio"]

#: the depth multipliers measured per layer (those above a layer's cap are left out)
CANDIDATE_MULTIPLIERS: tuple[int, ...] = (1, 2, 3, 4, 6, 8)
#: A/B significance for "measurably faster"
ALPHA = 0.05
#: the fewest block times an entry must have to be judged at all
MIN_SAMPLES = 5
#: an entry whose IQR is above this share of its median is too noisy to trust
MAX_ENTRY_SPREAD = 0.25
#: an end-to-end interval wider than this (high / low - 1) verifies nothing
MAX_CHECK_WIDTH = 0.5


@dataclass(frozen=True)
class Timed:
    """One measured form of a layer: raw block times (ms per call)."""

    samples_ms: tuple[float, ...]

    @property
    def median_ms(self) -> float:
        xs = sorted(self.samples_ms)
        n = len(xs)
        return (xs[n // 2] + xs[(n - 1) // 2]) / 2

    @property
    def ci95(self) -> tuple[float, float]:
        """Distribution-free 95% interval of the median (:func:`stats.median_ci`)."""
        return median_ci(self.samples_ms)

    @property
    def iqr_ms(self) -> float:
        xs = sorted(self.samples_ms)
        n = len(xs)
        return xs[(3 * n) // 4] - xs[n // 4] if n >= 4 else xs[-1] - xs[0]


def entry_problem(t: Timed) -> str | None:
    """Why an entry cannot be trusted (judged when measured and when read from the cache),
    or None: too few block times, a time that is not a positive finite number, or a spread
    too wide (a busy machine)."""
    s = t.samples_ms
    if len(s) < MIN_SAMPLES:
        return f"{len(s)} block times (< {MIN_SAMPLES})"
    if not all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in s):
        return "a block time that is not a positive finite number"
    med = t.median_ms
    if t.iqr_ms > MAX_ENTRY_SPREAD * med:
        return (f"noisy: IQR {t.iqr_ms:.4g} ms is {100 * t.iqr_ms / med:.0f}% of the median "
                f"{med:.4g} ms (> {100 * MAX_ENTRY_SPREAD:.0f}%)")
    return None


@dataclass(frozen=True)
class LayerTimes:
    """One eligible layer: its conv and DS forms as measured (``ds`` by multiplier), the
    error of each DS form (weight error, or the refit error on calibration data), and how
    many times it runs per forward."""

    name: str
    conv: Timed
    ds: Mapping[int, Timed]
    errors: Mapping[int, float]
    calls: int = 1

    def faster(self, m: int) -> bool:
        """Whether the DS form at ``m`` is measurably faster than the conv (A/B test)."""
        ab = compare_samples(self.ds[m].samples_ms, self.conv.samples_ms, ALPHA)
        return ab.verdict == "faster"

    def fastest(self) -> int:
        return min(self.ds, key=lambda m: self.ds[m].median_ms)


@dataclass(frozen=True)
class Choice:
    """What the chooser did with one layer: a multiplier, or keep the conv (``None``)."""

    name: str
    multiplier: int | None
    reason: str
    conv_ms: float
    #: the chosen DS form's time (the fastest DS form's when the conv is kept)
    ds_ms: float | None
    error: float = 0.0


@dataclass(frozen=True)
class LatencyPlan:
    """The choices for one budget, and the latency they predict."""

    choices: list[Choice]
    model_ms: float
    predicted_ms: float
    #: the budget the chooser was given (a fraction of ``model_ms``)
    budget: float
    met: bool
    notes: list[str] = field(default_factory=list)

    @property
    def predicted_ratio(self) -> float:
        return self.predicted_ms / self.model_ms if self.model_ms > 0 else math.inf

    def ranks(self) -> dict[str, int]:
        return {c.name: c.multiplier for c in self.choices if c.multiplier is not None}

    def kept(self) -> dict[str, str]:
        return {c.name: c.reason for c in self.choices if c.multiplier is None}


def _ms(v: float) -> str:
    return f"{v:.3g} ms"


def choose(layers: Sequence[LayerTimes], model_ms: float, budget: float) -> LatencyPlan:
    """Per layer, keep its conv or a multiplier, so that the predicted latency is at most
    ``budget`` x ``model_ms`` with the least total error (see the module's docstring).
    ``met`` says whether the budget was reached; when it was not, every measurably faster
    layer is at its fastest form and the plan says so."""
    if not (math.isfinite(model_ms) and model_ms > 0):
        raise ValueError(f"the model's time must be a positive number of ms, got {model_ms}")
    target = budget * model_ms
    options: dict[str, list[tuple[float, float, int]]] = {}  # name -> (ms, error, m)
    for la in layers:
        forms = [(la.ds[m].median_ms * la.calls, la.errors.get(m, 0.0), m)
                 for m in sorted(la.ds) if la.faster(m)]
        if forms:
            options[la.name] = forms
    state: dict[str, tuple[float, float, int | None]] = {
        la.name: (la.conv.median_ms * la.calls, 0.0, None) for la in layers}
    total = model_ms

    def move(to_faster: bool) -> tuple[str, tuple[float, float, int]] | None:
        best: tuple[float, str, tuple[float, float, int]] | None = None
        for name, forms in options.items():
            ms, err, _ = state[name]
            for f in forms:
                dt, de = ms - f[0], f[1] - err
                if to_faster:
                    if dt <= 0:
                        continue
                    score = de / dt
                else:  # give error back: slower but more exact, within the budget
                    if dt >= 0 or de >= 0 or total - dt > target:
                        continue
                    score = de / -dt  # error removed per ms added (more negative: better)
                if best is None or score < best[0]:
                    best = (score, name, f)
        return None if best is None else (best[1], best[2])

    while total > target:
        step = move(True)
        if step is None:
            break
        name, f = step
        total -= state[name][0] - f[0]
        state[name] = f
    met = total <= target
    if met:
        while (step := move(False)) is not None:
            name, f = step
            total -= state[name][0] - f[0]
            state[name] = f
    choices = []
    for la in layers:
        ms, err, m = state[la.name]
        conv_ms = la.conv.median_ms
        if m is not None:
            choices.append(Choice(la.name, m, "converted", conv_ms, la.ds[m].median_ms, err))
            continue
        fast = la.fastest()
        ds_ms = la.ds[fast].median_ms
        if la.name not in options:
            why = (f"DS {_ms(ds_ms)} vs conv {_ms(conv_ms)}: the DS form is not measurably "
                   "faster here; kept the conv")
        else:
            why = (f"DS {_ms(ds_ms)} vs conv {_ms(conv_ms)}: not needed for the latency "
                   "budget; kept the conv (no error added)")
        choices.append(Choice(la.name, None, why, conv_ms, ds_ms))
    notes = []
    if not met:
        notes.append(f"even with every measurably faster layer at its fastest DS form the "
                     f"predicted latency is {total / model_ms:.3f} of the original's, above "
                     f"{budget:.3f}")
    return LatencyPlan(choices, model_ms, total, budget, met, notes)


def latency_ratio(converted_ms: Sequence[float], original_ms: Sequence[float]
                  ) -> tuple[float, tuple[float, float], float]:
    """The converted model's latency as a fraction of the original's, from interleaved
    block times: (estimate, 95% interval, p-value). It is the inverse of the speedup
    :func:`stats.compare_samples` estimates, so the estimate lies inside its interval."""
    ab = compare_samples(converted_ms, original_ms, ALPHA)
    return 1 / ab.estimate, (1 / ab.ci95[1], 1 / ab.ci95[0]), ab.p_value


def adjusted_target(target: float, predicted: float, measured: float,
                    budget: float) -> float:
    """The budget to give the chooser next, after a plan predicted ``predicted`` and measured
    ``measured`` (fractions of the original's latency) against the user's ``target``: the
    saving the plan predicted was realised in the proportion (1 - measured) / (1 - predicted),
    so the saving asked for is scaled by its inverse (NetAdapt's re-measure and adjust).
    Never looser than the last budget when the target was missed."""
    realised = (1 - measured) / (1 - predicted) if predicted < 1 else 0.0
    if realised <= 0:
        return 0.0
    nxt = 1 - (1 - target) / realised
    return max(0.0, min(nxt, budget - 0.01 if measured > target else nxt))


def judge(ci95: tuple[float, float] | Sequence[float], target: float) -> str:
    """The end-to-end verdict on a measured latency ratio's 95% interval: ``met`` (all of
    it at or under the target), ``met within its interval`` (it holds the target),
    ``missed`` (all of it above), or ``too noisy`` (wider than :data:`MAX_CHECK_WIDTH`: a
    busy machine, nothing verified either way)."""
    lo, hi = ci95[0], ci95[1]
    if not (math.isfinite(lo) and math.isfinite(hi) and lo > 0) or hi / lo - 1 > MAX_CHECK_WIDTH:
        return "too noisy"
    if hi <= target:
        return "met"
    return "met within its interval" if lo <= target else "missed"
