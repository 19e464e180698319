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

__all__ = ["BlockStats", "Int8Timing", "Measurement", "OpTime", "Speedup"]


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
    #: int8 (ONNX Runtime's static quantization): the element type, the weights' scheme
    #: and the relative output error against the fp32 module on the check input
    dtype: Optional[str] = optional()
    scheme: Optional[str] = optional()
    rel_error: Optional[float] = optional()

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


@dataclass(frozen=True)
class OpTime:
    """One node type ONNX Runtime ran (its profile), per forward."""

    op: str
    calls: int
    ms: float
    #: of the summed node times
    share: float


@dataclass(frozen=True)
class Int8Timing:
    """A module in ONNX Runtime as int8 (static QDQ quantization) beside its fp32 self,
    timed interleaved in the same process."""

    scheme: str
    fp32_ms: float
    int8_ms: float
    #: fp32 time / int8 time, with its interval: above 1, int8 is faster
    speedup: Speedup
    #: ||int8 - fp32|| / ||fp32|| on the check input (the fp32 module in torch)
    rel_error: float
    #: the node types ORT ran for the int8 graph, slowest first (its profiling JSON)
    ops: list[OpTime]
    #: where int8 is not faster: what ran instead of int8 kernels
    why: Optional[str] = optional()
