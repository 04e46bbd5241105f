"""The adaptive latency protocol, deterministic with a fake clock."""

import numpy as np
import pytest

from netzip_mlflow.errors import ConfigError
from netzip_mlflow.evaluation.latency import CudaEventTimer, LatencySettings, measure_latency, median_ci95


class FakeClock:
    """A clock that advances only when the fake model runs, by a scripted duration."""

    def __init__(self, durations):
        self.now = 0.0
        self.durations = iter(durations)

    def __call__(self):
        return self.now

    def run(self):
        self.now += next(self.durations)


def test_constant_latency_stops_at_min_samples_with_target_met():
    clock = FakeClock([0.010] * 10_000)
    settings = LatencySettings(warmup_s=0.05, min_warmup=5, target_ci_rel=0.02, budget_s=100, min_samples=30)
    result = measure_latency(clock.run, settings, clock=clock)
    assert result.median_ms == pytest.approx(10.0)
    assert result.target_met
    assert result.n == 30  # first check at min_samples succeeds
    assert result.warmup_n == 5  # 5 x 10 ms = the 50 ms warm-up
    assert result.throughput_per_s == pytest.approx(100.0)


def test_noisy_latency_runs_until_budget_and_reports_target_missed():
    rng = np.random.default_rng(0)
    durations = list(rng.uniform(0.001, 0.1, size=100_000))
    clock = FakeClock(durations)
    settings = LatencySettings(warmup_s=0.0, min_warmup=1, target_ci_rel=0.001, budget_s=2.0, min_samples=30)
    result = measure_latency(clock.run, settings, clock=clock)
    assert not result.target_met
    assert result.ci95_rel > 0.001
    # it stopped because the 2 s budget ran out: roughly 2 s / 50.5 ms mean per call
    assert 25 <= result.n <= 60


def test_moderate_noise_meets_target_after_more_samples():
    rng = np.random.default_rng(1)
    durations = list(0.010 * (1 + 0.1 * rng.standard_normal(100_000)).clip(0.5))
    clock = FakeClock(durations)
    settings = LatencySettings(warmup_s=0.0, min_warmup=1, target_ci_rel=0.01, budget_s=1000, min_samples=30)
    result = measure_latency(clock.run, settings, clock=clock)
    assert result.target_met and result.ci95_rel <= 0.01
    assert result.n > 30
    assert result.median_ms == pytest.approx(10.0, rel=0.02)


def test_median_ci_brackets_median():
    x = np.arange(1, 101, dtype=float)
    med, lo, hi = median_ci95(x)
    assert med == 50.5
    assert lo < med < hi
    # ranks n/2 -/+ 1.96 sqrt(n)/2 = 50 -/+ 9.8 -> order statistics 41 and 61 (1-based)
    assert lo == 41 and hi == 61


def test_percentiles_and_mean():
    durations = [0.001 * (i % 10 + 1) for i in range(10_000)]
    clock = FakeClock(durations)
    settings = LatencySettings(warmup_s=0.0, min_warmup=0, budget_s=1000, min_samples=100, max_samples=100)
    result = measure_latency(clock.run, settings, clock=clock)
    assert result.n == 100
    assert result.mean_ms == pytest.approx(5.5)
    assert result.p90_ms == pytest.approx(np.percentile(np.array(durations[:100]) * 1000, 90))


def test_real_timer_sanity():
    import time

    settings = LatencySettings(warmup_s=0.0, min_warmup=1, budget_s=0.5, min_samples=10, target_ci_rel=0.5)
    result = measure_latency(lambda: time.sleep(0.002), settings)
    assert result.median_ms >= 2.0
    assert result.n >= 10


def test_invalid_settings_name_field():
    with pytest.raises(ConfigError, match="target_ci_rel"):
        LatencySettings(target_ci_rel=0)


class FakeEvent:
    """A CUDA event whose elapsed time to the next event of the pair is scripted (ms)."""

    def __init__(self, log: list[str], elapsed_ms: list[float]) -> None:
        self.log = log
        self.elapsed_ms = elapsed_ms

    def record(self) -> None:
        self.log.append("record")

    def synchronize(self) -> None:
        self.log.append("synchronize")

    def elapsed_time(self, end: "FakeEvent") -> float:
        return self.elapsed_ms.pop(0)


def test_cuda_event_timer_reads_event_time_in_seconds():
    log: list[str] = []
    timer = CudaEventTimer(0, event_factory=lambda: FakeEvent(log, [2.5]))
    seconds = timer(lambda: log.append("call"))
    assert seconds == pytest.approx(0.0025)
    assert log == ["record", "call", "record", "synchronize"]


def test_latency_from_an_event_timer_ignores_the_host_clock():
    scripted = [4.0, 6.0] * 20  # ms: the median of the timed calls is 5 ms
    log: list[str] = []
    timer = CudaEventTimer(0, event_factory=lambda: FakeEvent(log, scripted))
    settings = LatencySettings(warmup_s=0.0, min_warmup=2, budget_s=86_400, min_samples=10, max_samples=20)
    result = measure_latency(lambda: None, settings, timer=timer)
    assert result.n == 20
    assert result.median_ms == pytest.approx(5.0)
    assert result.mean_ms == pytest.approx(5.0)
    assert result.warmup_n == 2
