"""Latency protocol (docs/architecture.md, "Measurement protocol"): warm up, then time until the median is known well enough.

Instead of the reference implementation's fixed 1000 loops, :func:`measure_latency` keeps timing single
calls until the 95% confidence interval of the median is narrower than ``target_ci_rel`` of the median,
or the time budget runs out; the result says which happened. The CI of the median is distribution-free:
the order statistics at ranks ``n/2 -+ 1.96 sqrt(n)/2`` (binomial normal approximation).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, model_validator

from netzip_mlflow.tracking import keys
from netzip_mlflow.validation import SettingsModel

Z_95 = 1.959963984540054


class LatencySettings(SettingsModel):
    """How long and how precisely to time (the study YAML's ``evaluation.latency``)."""

    section: ClassVar[str] = "evaluation.latency"

    warmup_s: float = Field(1.0, ge=0, le=3600, description="seconds of untimed calls first (at least min_warmup calls)")
    min_warmup: int = Field(5, ge=0, le=1_000_000, description="fewest untimed warm-up calls")
    target_ci_rel: float = Field(
        0.02, gt=0, lt=1, description="stop once the 95% CI half-width of the median / median is at most this"
    )
    budget_s: float = Field(
        10.0, gt=0, le=86_400,
        description="stop timing after this many seconds of timed calls even if the target is not met",
    )
    min_samples: int = Field(30, ge=5, le=1_000_000, description="fewest timed calls before the stopping rule is checked")
    max_samples: int = Field(100_000, ge=5, le=100_000_000, description="most timed calls")

    @model_validator(mode="after")
    def _max_at_least_min(self) -> LatencySettings:
        if self.max_samples < self.min_samples:
            raise ValueError(f"max_samples ({self.max_samples}) must be at least min_samples ({self.min_samples})")
        return self


@dataclass(frozen=True)
class LatencyResult:
    """Timing of one batch, in milliseconds, and how well the median is known."""

    median_ms: float
    mean_ms: float
    p90_ms: float
    p99_ms: float
    ci95_low_ms: float
    ci95_high_ms: float
    ci95_rel: float
    n: int
    target_met: bool
    batch_size: int
    warmup_n: int = 0

    @property
    def calls(self) -> int:
        """All calls made, warm-up included (for energy over the whole window)."""
        return self.warmup_n + self.n

    @property
    def throughput_per_s(self) -> float:
        """Samples per second at this batch size, from the median latency."""
        return self.batch_size * 1000.0 / self.median_ms

    def as_metrics(self) -> dict[str, float]:
        """The latency metrics under their contract keys."""
        return {
            keys.LATENCY_MS: self.median_ms,
            keys.LATENCY_MEAN_MS: self.mean_ms,
            keys.LATENCY_P90_MS: self.p90_ms,
            keys.LATENCY_P99_MS: self.p99_ms,
            keys.LATENCY_CI95_REL: self.ci95_rel,
            keys.LATENCY_SAMPLES: float(self.n),
            keys.THROUGHPUT: self.throughput_per_s,
        }


def median_ci95(samples: np.ndarray) -> tuple[float, float, float]:
    """Median and the distribution-free 95% confidence interval of the median of ``samples``."""
    x = np.sort(np.asarray(samples, dtype=float))
    n = x.size
    half = Z_95 * math.sqrt(n) / 2.0
    lo = max(int(math.floor(n / 2.0 - half)), 0)
    hi = min(int(math.ceil(n / 2.0 + half)), n - 1)
    return float(np.median(x)), float(x[lo]), float(x[hi])


def summarize(
    samples_s: np.ndarray, target_ci_rel: float, batch_size: int, warmup_n: int = 0
) -> LatencyResult:
    """Summarise timed durations (seconds) into a :class:`LatencyResult` in milliseconds."""
    ms = np.asarray(samples_s, dtype=float) * 1000.0
    med, lo, hi = median_ci95(ms)
    rel = (hi - lo) / 2.0 / med if med > 0 else math.inf
    return LatencyResult(
        median_ms=med,
        mean_ms=float(ms.mean()),
        p90_ms=float(np.percentile(ms, 90)),
        p99_ms=float(np.percentile(ms, 99)),
        ci95_low_ms=lo,
        ci95_high_ms=hi,
        ci95_rel=rel,
        n=int(ms.size),
        target_met=bool(rel <= target_ci_rel),
        batch_size=batch_size,
        warmup_n=warmup_n,
    )


class CudaEventTimer:
    """Times one call on the GPU with a pair of CUDA events recorded on the current stream.

    ``elapsed_time`` between the events is the GPU time of the work the call queued, without the
    host's launch jitter; the timer waits for the end event before returning.

    Args:
        device: CUDA device index the model runs on.
        event_factory: makes one timing event (default ``torch.cuda.Event(enable_timing=True)``;
            a fake in tests).
    """

    def __init__(self, device: int = 0, event_factory: Callable[[], Any] | None = None) -> None:
        import torch

        self._torch = torch
        self._device = device
        self._make = event_factory or (lambda: torch.cuda.Event(enable_timing=True))

    def __call__(self, call: Callable[[], object]) -> float:
        """Run ``call()`` once between two events; its GPU time in seconds."""
        start, end = self._make(), self._make()
        with self._device_context():
            start.record()
            call()
            end.record()
        end.synchronize()
        return float(start.elapsed_time(end)) / 1000.0  # elapsed_time is in milliseconds

    def _device_context(self) -> Any:
        if self._torch.cuda.is_available():
            return self._torch.cuda.device(self._device)
        return contextlib.nullcontext()


def measure_latency(
    call: Callable[[], object],
    settings: LatencySettings = LatencySettings(),
    batch_size: int = 1,
    clock: Callable[[], float] = time.perf_counter,
    synchronize: Callable[[], None] | None = None,
    timer: Callable[[Callable[[], object]], float] | None = None,
) -> LatencyResult:
    """Time ``call()`` by the adaptive protocol.

    Args:
        call: runs one batch through the model (inputs already prepared).
        settings: warm-up, precision target and budget.
        batch_size: samples per call, for the throughput.
        clock: monotonic clock in seconds (a fake in tests).
        synchronize: called after each call before reading the clock (``torch.cuda.synchronize``
            for a GPU model) so asynchronous work is counted.
    """
    sync = synchronize or (lambda: None)
    start = clock()
    warm = 0
    while warm < settings.min_warmup or clock() - start < settings.warmup_s:
        call()
        sync()
        warm += 1
        if clock() - start >= settings.warmup_s and warm >= settings.min_warmup:
            break
    durations: list[float] = []
    t_begin = clock()
    check_every = 10
    while len(durations) < settings.max_samples:
        if timer is not None:
            durations.append(timer(call))
        else:
            t0 = clock()
            call()
            sync()
            durations.append(clock() - t0)
        n = len(durations)
        if n >= settings.min_samples and n % check_every == 0:
            if summarize(np.asarray(durations), settings.target_ci_rel, batch_size).target_met:
                break
            check_every = max(10, n // 10)
        if clock() - t_begin >= settings.budget_s and n >= 5:
            break
    return summarize(np.asarray(durations), settings.target_ci_rel, batch_size, warm)
