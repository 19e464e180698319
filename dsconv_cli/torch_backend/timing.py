"""Measurement on real hardware: timing, environment record, calibration and roofline.

Timing is built on ``torch.utils.benchmark.Timer`` (thread setting, CUDA synchronisation);
this module adds warm-up, many short samples until ``min_time`` for a real median and IQR,
memory layout, dtype, and the roofline bound from a cached calibration.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.benchmark import Timer

from ..errors import DsconvError, InputError, describe
from ..inputs import NoSuchFile, read_text
from ..options import MeasureOptions
from ..results import BlockStats, Measurement
from . import free_memory, is_oom

__all__ = [
    "Calibration",
    "MeasureOptions",
    "calibrate",
    "is_oom",
    "environment",
    "load_calibration",
    "prepare",
    "resolve_device",
    "roofline",
    "time_call",
]

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MEMORY_FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: CUDA is not available on this machine",
                         hint="use --device cpu or --device auto")
    return torch.device(name)


def check_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The torch dtype, after proving the device can run a depthwise and a dense conv in it."""
    if dtype not in TORCH_DTYPES:
        raise InputError(f"--dtype {dtype}: only fp32, fp16 and bf16 can be measured "
                         "(int8 sizes bytes in the analytic report only)")
    td = TORCH_DTYPES[dtype]
    try:
        x = torch.randn(1, 4, 5, 5, device=device, dtype=td)
        with torch.inference_mode():
            nn.Conv2d(4, 4, 3, groups=4).to(device, td)(x)
            nn.Conv2d(4, 4, 3).to(device, td)(x)
    except (RuntimeError, TypeError) as e:
        raise InputError(f"--dtype {dtype}: {device.type} cannot run convolutions in this "
                         f"dtype ({str(e).splitlines()[0]})") from None
    return td


def prepare(module: nn.Module, shape: tuple[int, ...], device: torch.device,
            dtype: torch.dtype, memory_format: str, seed: int = 0) -> tuple[nn.Module, Any]:
    """Module in eval mode on the device/dtype/layout, and a matching random input."""
    fmt = MEMORY_FORMATS[memory_format]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g).to(device=device, dtype=dtype)
    module = module.to(device=device, dtype=dtype).eval()
    if len(shape) == 4:
        x = x.contiguous(memory_format=fmt)
        module = module.to(memory_format=fmt)  # type: ignore[call-overload]
    return module, x


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device, *, min_time: float, warmup: int,
              threads: int | None, memory_format: str = "nchw", min_runs: int = 5) -> BlockStats:
    """Time ``fn()`` in inference mode with ``Timer.blocked_autorange``: our warm-up calls,
    then Timer's block sizing (which warms up too) and blocks until ``min_time`` seconds;
    at least ``min_runs`` blocks, for a real median and IQR over the raw block times."""
    nthreads = threads or torch.get_num_threads()
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=nthreads)
    with torch.inference_mode():
        before = torch.get_num_threads()
        torch.set_num_threads(nthreads)  # warm up with the threads the timer will use
        try:
            for _ in range(max(warmup, 1)):  # a model that fails here: the input's error
                fn()
            _sync(device)
        except (Exception, SystemExit) as e:
            if is_oom(e) or isinstance(e, DsconvError):
                raise
            raise InputError(f"the forward pass failed when run for real: {describe(e)}"
                             ) from e
        finally:
            torch.set_num_threads(before)
        m = timer.blocked_autorange(min_run_time=min_time)
        number = m.number_per_run
        samples = [t / number for t in m.raw_times]
        while len(samples) < min_runs:
            samples.append(timer.timeit(number).raw_times[0] / number)
    return block_stats(samples, number, memory_format)


def block_stats(samples: list[float], number: int, memory_format: str) -> BlockStats:
    """Statistics of per-call seconds over blocks of ``number`` calls each."""
    q = statistics.quantiles(samples, n=4, method="inclusive")
    return BlockStats(
        median_ms=statistics.median(samples) * 1e3, iqr_ms=(q[2] - q[0]) * 1e3,
        q1_ms=q[0] * 1e3, q3_ms=q[2] * 1e3,
        min_ms=min(samples) * 1e3, max_ms=max(samples) * 1e3, runs=len(samples),
        calls=len(samples) * number, memory_format=memory_format,
        samples_ms=[round(s * 1e3, 6) for s in samples],
    )


#: rounds a sequential A/B adds at a time
AB_STEP = 5


def ab_time(fn_a: Callable[[], Any], fn_b: Callable[[], Any], device: torch.device, *,
            min_time: float, rounds: int, warmup: int, threads: int | None,
            formats: tuple[str, str] = ("nchw", "nchw"), seed: int = 0,
            until: Callable[[list[float], list[float]], bool] | None = None,
            time_cap: float = 0.0) -> tuple[BlockStats, BlockStats]:
    """A and B timed interleaved in one process (:func:`interleave` of the two): rounds of
    one Timer block of each in random order, so drift and a noisy neighbour hit both alike.

    Sequential: with ``until`` (A's and B's block times so far -> enough?), rounds are
    added :data:`AB_STEP` at a time until it holds or ``time_cap`` seconds have passed."""
    got = interleave({"a": fn_a, "b": fn_b}, device, min_time=min_time, rounds=rounds,
                     warmup=warmup, threads=threads, seed=seed,
                     until=None if until is None else (lambda s: until(s["a"], s["b"])),
                     time_cap=time_cap)
    return (block_stats(got["a"][0], got["a"][1], formats[0]),
            block_stats(got["b"][0], got["b"][1], formats[1]))


def interleave(fns: dict[str, Callable[[], Any]], device: torch.device, *, min_time: float,
               rounds: int, warmup: int, threads: int | None, seed: int = 0,
               until: Callable[[dict[str, list[float]]], bool] | None = None,
               time_cap: float = 0.0) -> dict[str, tuple[list[float], int]]:
    """Several calls timed interleaved in one process: ``rounds`` rounds (at least 10), each
    one Timer block of every call in a random order. Each call gets about ``min_time``
    seconds in all; a block is as many calls as fit ``min_time / rounds``. Returns, per
    call, its per-call seconds of each block and the calls per block.

    With ``until`` (the block times so far -> enough?), rounds are added :data:`AB_STEP` at
    a time until it holds or ``time_cap`` seconds have passed."""
    import random
    import time

    rounds = max(10, rounds)
    nthreads = threads or torch.get_num_threads()
    timers = {k: Timer(stmt="fn()", globals={"fn": fn}, num_threads=nthreads)
              for k, fn in fns.items()}
    numbers: dict[str, int] = {}
    samples: dict[str, list[float]] = {k: [] for k in fns}
    rng = random.Random(seed)
    with torch.inference_mode():
        before = torch.get_num_threads()
        torch.set_num_threads(nthreads)
        try:
            for k, fn in fns.items():
                for _ in range(max(1, warmup)):
                    fn()
                _sync(device)
                one = timers[k].timeit(1).raw_times[0]
                numbers[k] = max(1, int(min_time / rounds / max(one, 1e-7)))
        finally:
            torch.set_num_threads(before)
        t0 = time.perf_counter()

        def play(n: int) -> None:
            for _ in range(n):
                order = list(fns)
                rng.shuffle(order)
                for k in order:
                    num = numbers[k]
                    samples[k].append(timers[k].timeit(num).raw_times[0] / num)

        play(rounds)
        while (until is not None and time.perf_counter() - t0 < time_cap
               and not until(samples)):
            play(AB_STEP)
    return {k: (samples[k], numbers[k]) for k in fns}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def tf32_enabled(device: torch.device, dtype: str) -> bool:
    """Whether fp32 convolutions run in TF32 (CUDA's cuDNN default)."""
    return device.type == "cuda" and dtype == "fp32" and bool(torch.backends.cudnn.allow_tf32)


def environment(device: torch.device, dtype: str, threads: int | None) -> dict[str, Any]:
    return {
        "device": device.type,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "threads": threads or torch.get_num_threads(),
        "dtype": dtype,
        "tf32": tf32_enabled(device, dtype),
        "python": platform.python_version(),
    }


# ----------------------------------------------------------------- calibration

CAL_SIZES = (64 << 10, 512 << 10, 4 << 20, 32 << 20, 128 << 20)


@dataclass(frozen=True)
class Calibration:
    """Peak FLOP/s (the better of matmul and a dense conv, same math mode) and
    bandwidth (copy and read-only) per working-set size."""

    key: str
    peak_gflops: float
    # (working-set bytes, copy GB/s, read-only GB/s)
    bandwidth: tuple[tuple[int, float, float], ...]
    #: the largest median/best - 1 over the probes: how noisy the machine was
    spread: float = 0.0

    def implausible(self) -> str | None:
        """Why these figures cannot be a peak, or None. The floors are far below any CPU
        or GPU dsconv runs on: a figure under them means a loaded machine or a bad run
        (one such run once cached 0.07 GB/s and flagged every later row). A spread above
        :data:`MAX_CAL_SPREAD` (the median block over twice the best) means the machine
        was busy while calibrating (one such run cached 31.6 GFLOP/s at a 4.8x spread)."""
        if not (math.isfinite(self.peak_gflops) and self.peak_gflops >= MIN_PEAK_GFLOPS):
            return f"peak {self.peak_gflops} GFLOP/s < {MIN_PEAK_GFLOPS}"
        if not self.bandwidth:
            return "no bandwidth figures"
        for size, copy, read in self.bandwidth:
            if not (math.isfinite(copy) and math.isfinite(read)) or max(copy, read) < MIN_GBPS:
                return f"bandwidth {max(copy, read)} GB/s at {size} bytes < {MIN_GBPS}"
        if not (math.isfinite(self.spread) and self.spread <= MAX_CAL_SPREAD):
            return (f"spread {self.spread:.2f} > {MAX_CAL_SPREAD}: the median probe block "
                    "was over twice the best (a busy machine)")
        return None

    def gbps_for(self, working_set: int) -> float:
        """The larger of copy and read bandwidth at the smallest calibrated working set
        that holds ``working_set`` (the largest one beyond that)."""
        for size, copy, read in self.bandwidth:
            if size >= working_set:
                return max(copy, read)
        return max(self.bandwidth[-1][1:])


def cache_path(name: str) -> Path:
    """A file in dsconv's cache folder (``$DSCONV_CACHE_DIR``, else the user cache dir)."""
    root = os.environ.get("DSCONV_CACHE_DIR")
    if root:
        return Path(root) / name
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("dsconv")) / name


def _cache_file() -> Path:
    return cache_path("calibration.json")


MIN_PEAK_GFLOPS = 1.0
MIN_GBPS = 0.5
#: the largest median/best - 1 of a probe a calibration may have and still be cached
MAX_CAL_SPREAD = 1.0
CAL_ATTEMPTS = 3
#: a measurement above this fraction of its roofline bound recalibrates (once per run)
ABOVE_ROOFLINE = 1.05


def calibrate(device: torch.device, dtype: str, threads: int | None,
              on_warn: Callable[[str], None] | None = None) -> Calibration:
    """Peaks from the best block of each probe; redone (up to 3 times) while implausible,
    keeping the best figures seen."""
    best: Calibration | None = None
    for _ in range(CAL_ATTEMPTS):
        cal = _calibrate_once(device, dtype, threads)
        if best is not None:
            cal = Calibration(cal.key, max(cal.peak_gflops, best.peak_gflops),
                              tuple((s, max(c, bc), max(r, br)) for (s, c, r), (_, bc, br)
                                    in zip(cal.bandwidth, best.bandwidth, strict=True)),
                              min(cal.spread, best.spread))
        best = cal
        if cal.implausible() is None:
            return cal
    assert best is not None
    if on_warn:
        on_warn(f"calibration still implausible after {CAL_ATTEMPTS} runs "
                f"({best.implausible()}): is the machine loaded? Not cached; roofline "
                "fractions may be off")
    return best


def _calibrate_once(device: torch.device, dtype: str, threads: int | None) -> Calibration:
    td = TORCH_DTYPES[dtype]
    key = calibration_key(device, dtype, threads)
    spreads: list[float] = []

    def seconds(fn: Callable[[], Any]) -> float:
        t = time_call(fn, device, min_time=0.05, warmup=2, threads=threads)
        spreads.append(t.median_ms / t.min_ms - 1 if t.min_ms > 0 else 0.0)
        return t.min_ms * 1e-3  # a peak: the best block

    peak = 0.0
    old_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32_enabled(device, dtype)  # match the convs
    try:
        sizes = (256, 512, 1024) if device.type == "cpu" else (2048, 4096, 8192)
        for n in sizes:
            a = torch.randn(n, n, device=device).to(td)
            b = torch.randn(n, n, device=device).to(td)
            peak = max(peak, 2 * n**3 / seconds(partial(torch.matmul, a, b)) / 1e9)
        # oneDNN/cuDNN convs can beat the matmul library: a dense 3x3 conv is the other probe
        c = 256 if device.type == "cpu" else 512
        conv = nn.Conv2d(c, c, 3, padding=1, bias=False).to(device, td).eval()
        conv = conv.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = torch.randn(1, c, 28, 28, device=device).to(td).contiguous(
            memory_format=torch.channels_last)
        peak = max(peak, 2 * c * c * 9 * 28 * 28 / seconds(partial(conv, x)) / 1e9)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old_tf32
    bw = []
    for size in CAL_SIZES:
        n = size // torch.tensor([], dtype=td).element_size()
        src = torch.randn(n, device=device).to(td)
        dst = torch.empty_like(src)
        bw.append((size, 2 * size / seconds(partial(dst.copy_, src)) / 1e9,
                   size / seconds(src.sum) / 1e9))
    return Calibration(key, round(peak, 2), tuple((s, round(c, 2), round(r, 2))
                                                  for s, c, r in bw), round(max(spreads), 4))


def calibration_key(device: torch.device, dtype: str, threads: int | None) -> str:
    return (f"{device_name(device)}|torch {torch.__version__}|{dtype}|"
            f"threads {threads or torch.get_num_threads()}")


def load_calibration(device: torch.device, dtype: str, threads: int | None,
                     recalibrate: bool = False,
                     on_status: Callable[[str], None] | None = None,
                     on_warn: Callable[[str], None] | None = None) -> Calibration:
    """The cached calibration for this device, torch, dtype and threads, or a fresh one.
    A cache that cannot be read, is damaged or holds implausible figures (floors, spread:
    judged on every load) is said once (``on_warn``) and recalibrated; an implausible fresh
    calibration is never cached; a cache that cannot be written is said once."""
    warn = on_warn or (lambda m: None)
    path = _cache_file()
    key = calibration_key(device, dtype, threads)
    cache: dict[str, Any] = {}
    try:
        loaded = json.loads(read_text(path, "calibration cache", "cache"))  # not a FIFO
        if isinstance(loaded, dict):
            cache = loaded
        else:
            warn(f"calibration cache {path} holds {type(loaded).__name__}, not a mapping: "
                 "recalibrating")
    except (FileNotFoundError, NoSuchFile):
        pass
    except (OSError, ValueError, InputError) as e:
        warn(f"calibration cache {path} cannot be read ({e}): recalibrating")
    if not recalibrate and key in cache:
        c = cache[key]
        try:
            cal = Calibration(key, float(c["peak_gflops"]),
                              tuple((int(s), float(a), float(b)) for s, a, b in c["bandwidth"]),
                              float(c.get("spread", 0.0)))
            why = cal.implausible()
            if why is None:
                return cal
            warn(f"calibration cache entry for {key} is implausible ({why}): recalibrating")
        except (KeyError, TypeError, ValueError, AttributeError):
            warn(f"calibration cache entry for {key} is damaged: recalibrating")
    if on_status:
        on_status(f"calibrating peak FLOP/s and bandwidth for {key} (cached in {path})")
    cal = calibrate(device, dtype, threads, on_warn)
    if cal.implausible() is not None:
        return cal  # used for this run (and said), never cached
    cache[key] = {"peak_gflops": cal.peak_gflops, "bandwidth": [list(b) for b in cal.bandwidth],
                  "spread": cal.spread}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        from ..atomic import write_atomic

        write_atomic(path, json.dumps(cache, indent=1))
    except (OSError, DsconvError) as e:
        warn(f"calibration cache {path} cannot be written ({e}): the next run calibrates "
             "again")
    return cal


def _bounds(flops: int, bytes_moved: int, cal: Calibration) -> tuple[float, float]:
    """(compute, memory) lower bounds in ms from the calibrated peaks."""
    gbps_peak = cal.gbps_for(bytes_moved)
    compute_ms = flops / (cal.peak_gflops * 1e9) * 1e3 if cal.peak_gflops else 0.0
    memory_ms = bytes_moved / (gbps_peak * 1e9) * 1e3 if gbps_peak else 0.0
    return compute_ms, memory_ms


def roofline_bound_ms(flops: int, bytes_moved: int, cal: Calibration) -> float:
    """The roofline lower bound on the time of ``flops`` and ``bytes_moved``, in ms."""
    return max(_bounds(flops, bytes_moved, cal))


#: a measurement whose IQR is above this share of its median is flagged noisy
NOISY_SPREAD = 0.20
#: how the flags of a noisy and of an implausible (above its roofline) measurement begin
NOISY = "noisy"
IMPLAUSIBLE = "exceeds calibrated roofline"


def noise_flag(timing: BlockStats) -> str | None:
    """Why the block times are too spread to quote one median (IQR above
    :data:`NOISY_SPREAD` of the median, or a range wider than the median), or None."""
    med = timing.median_ms
    if med > 0 and (timing.iqr_ms > NOISY_SPREAD * med or timing.max_ms - timing.min_ms > med):
        return (f"{NOISY}: IQR {timing.iqr_ms:.3f} ms ({100 * timing.iqr_ms / med:.0f}% of the "
                f"median {med:.3f} ms), block times {timing.min_ms:.3f}-{timing.max_ms:.3f} ms")
    return None


def roofline(flops: int, bytes_moved: int, timing: BlockStats, cal: Calibration) -> Measurement:
    """Achieved rates and the roofline bound for one measured layer.

    bound = max(FLOPs / peak, bytes / bandwidth at this working set); the fraction
    bound/median is at most 1 unless the measurement beat the calibration, which is
    flagged, never clipped.
    """
    sec = timing.median_ms * 1e-3
    compute_ms, memory_ms = _bounds(flops, bytes_moved, cal)
    bound = max(compute_ms, memory_ms)
    frac = bound / timing.median_ms if timing.median_ms else 0.0
    flags = []
    if frac > ABOVE_ROOFLINE:
        flags.append(f"{IMPLAUSIBLE} ({100 * frac:.0f}% of the "
                     f"{'memory' if memory_ms >= compute_ms else 'compute'} bound): "
                     "implausible, faster than the calibrated peak; re-run on an idle "
                     "machine with --recalibrate")
    elif frac < 0.01:
        flags.append(f"under 1% of the roofline bound ({100 * frac:.2f}%): an outlier, a "
                     "loaded machine, or per-call overhead far above the work")
    noisy = noise_flag(timing)
    if noisy:
        flags.append(noisy)
    flag = "; ".join(flags) or None
    return Measurement(
        **timing.rounded(), samples_ms=timing.samples_ms,
        gflops=round(flops / sec / 1e9, 3) if sec else 0.0,
        gbps=round(bytes_moved / sec / 1e9, 3) if sec else 0.0,
        bound_ms=round(bound, 6),
        bound="memory" if memory_ms >= compute_ms else "compute",
        roofline_fraction=round(frac, 4),
        flag=flag,
    )


def available_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    free = free_memory()
    return 1 << 62 if free is None else free
