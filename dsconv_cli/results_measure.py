"""The measured results (stdlib only): a timed module's block statistics and the A/B
speedup, serialised by :func:`dsconv_cli.results.to_json`.

Kept apart from :mod:`dsconv_cli.results` (which re-exports them) so that ``dsconv compare``
without ``--measure`` does not build them (each dataclass costs start-up time).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Optional

from .results import optional

__all__ = ["BlockStats", "Measurement", "Speedup"]


@dataclass(frozen=True)
class BlockStats:
    """Statistics of the per-call time over the timer's blocks (each block = ``calls/runs``
    back-to-back calls)."""

    median_ms: float
    iqr_ms: float
    q1_ms: float
    q3_ms: float
    min_ms: float
    max_ms: float
    runs: int
    calls: int
    memory_format: str

    def rounded(self) -> dict[str, Any]:
        """The fields, floats rounded to nanoseconds (the raw samples go with the
        measurement separately)."""
        return {f.name: round(v, 6) if isinstance(v, float) else v
                for f in dataclasses.fields(BlockStats) for v in [getattr(self, f.name)]
                if f.name != "samples_ms"}

    #: every block's per-call time, for A/B tests against a stored baseline
    samples_ms: Optional[list[float]] = optional()


@dataclass(frozen=True, kw_only=True)
class Measurement(BlockStats):
    """One timed module in one layout: block statistics and its roofline context."""

    gflops: float
    gbps: float
    bound_ms: float
    bound: Literal["memory", "compute"]
    roofline_fraction: float
    #: why this measurement cannot be taken at face value (None: nothing seen)
    flag: Optional[str]
    #: this part's share of the summed part times (preset stages)
    share_time: Optional[float] = optional()
    #: the runtime it was timed in (eager, compile, onnxruntime), and what preparing it
    #: took or chose: compilation seconds (never in the timed region), the ONNX exporter
    runtime: Optional[str] = optional()
    compile_s: Optional[float] = optional()
    exporter: Optional[str] = optional()
    max_abs_diff: Optional[float] = optional()

    def with_share(self, share: float) -> Measurement:
        return dataclasses.replace(self, share_time=round(share, 4))


@dataclass(frozen=True)
class Speedup:
    """Measured standard time / candidate time, beside the MAC reduction."""

    measured: Optional[float]
    theoretical: Optional[float]
    memory_format: Optional[str] = optional()
    #: why the measured figure cannot be taken at face value (above theory beyond noise)
    flag: Optional[str] = optional()
    #: from the interleaved A/B (see dsconv_cli.stats): Hodges-Lehmann ratio, its 95%
    #: interval, the two-sided Mann-Whitney p, the verdict and the minimum detectable effect
    estimate: Optional[float] = optional()
    ci95: Optional[list[float]] = optional()
    p_value: Optional[float] = optional()
    verdict: Optional[Literal["faster", "slower", "no difference detected"]] = optional()
    mde: Optional[float] = optional()
    rounds: Optional[int] = optional()
    #: the runtime it was measured in, where several were
    runtime: Optional[str] = optional()

    def with_ab(self, ab: Any) -> Speedup:
        """This speedup with an :class:`dsconv_cli.stats.ABResult` (A = the faster-hoped
        side, so above 1 means it is faster)."""
        return dataclasses.replace(
            self, estimate=round(ab.estimate, 4), ci95=[round(ab.ci95[0], 4),
                                                        round(ab.ci95[1], 4)],
            p_value=float(f"{ab.p_value:.4g}"), verdict=ab.verdict, mde=round(ab.mde, 4),
            rounds=ab.n[0])
