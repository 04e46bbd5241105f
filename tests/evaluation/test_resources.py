"""The resource monitor: peaks and CPU shares from fake samplers; real sampling of this process."""

from __future__ import annotations

import importlib.util
import mmap
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from netzip_mlflow.errors import ConfigError, MeasurementError
from netzip_mlflow.evaluation.resources import (
    ProcessSample,
    ProcessSampler,
    ResourceMonitor,
    current_anon_bytes,
)
from netzip_mlflow.tracking import keys

MB = 1_000_000


class FakeClock:
    def __init__(self, *times: float) -> None:
        self.times = list(times)

    def __call__(self) -> float:
        return self.times.pop(0) if len(self.times) > 1 else self.times[0]


class ScriptedSampler:
    """Returns ``script`` in order, then ``final`` forever; ``done`` is set once the script ran."""

    def __init__(self, script: list[ProcessSample], final: ProcessSample) -> None:
        self.script = list(script)
        self.final = final
        self.calls = 0
        self.done = threading.Event()

    def __call__(self) -> ProcessSample:
        self.calls += 1
        if self.script:
            return self.script.pop(0)
        self.done.set()
        return self.final


class FakeGpu:
    def __init__(self) -> None:
        self.resets = 0

    def reset_peak(self) -> None:
        self.resets += 1

    def peak_memory_bytes(self) -> int:
        return 2_500 * MB

    def utilization_pct(self) -> float | None:
        return 40.0


def scripted_window(sampler: ScriptedSampler, **kwargs: object) -> ResourceMonitor:
    monitor = ResourceMonitor(
        0.001, sampler=sampler, clock=FakeClock(100.0, 102.0), logical_cpus=4, **kwargs
    )
    with monitor:
        assert sampler.done.wait(timeout=10.0), "the sampling thread never ran"
    return monitor


def test_peak_cpu_share_and_model_memory_from_a_fake_sampler() -> None:
    sampler = ScriptedSampler(
        [
            ProcessSample(100 * MB, 10.0),
            ProcessSample(300 * MB, 10.5),
            ProcessSample(250 * MB, 10.8),
        ],
        final=ProcessSample(120 * MB, 11.0),
    )
    result = scripted_window(
        sampler, baseline_anon_bytes=50 * MB, background_probe=lambda: 37.0
    ).result()
    assert result.ram_mb_peak == pytest.approx(300.0)
    assert result.ram_mb_model == pytest.approx(250.0)
    # 1 CPU-second over 2 s of wall time = 50 % of one core = 12.5 % of 4 logical CPUs
    assert result.cpu_util_core_pct == pytest.approx(50.0)
    assert result.cpu_util_pct == pytest.approx(12.5)
    assert result.cpu_background_pct == 37.0
    assert result.seconds == 2.0
    assert result.samples == sampler.calls
    assert result.as_metrics() == {
        keys.CPU_UTIL: pytest.approx(12.5),
        keys.CPU_BACKGROUND: 37.0,
        keys.RAM_PEAK: pytest.approx(300.0),
        keys.RAM_MODEL: pytest.approx(250.0),
    }


def test_model_memory_is_anonymous_memory_and_the_peak_is_rss() -> None:
    """Code pages (file-backed) count in the process's peak RSS but not in the model's footprint."""
    sampler = ScriptedSampler(
        [ProcessSample(900 * MB, 1.0, anon_bytes=400 * MB), ProcessSample(700 * MB, 1.1, anon_bytes=450 * MB)],
        final=ProcessSample(650 * MB, 1.2, anon_bytes=420 * MB),
    )
    result = scripted_window(sampler, baseline_anon_bytes=380 * MB, background_probe=None).result()
    assert result.ram_mb_peak == pytest.approx(900.0)
    assert result.ram_mb_model == pytest.approx(70.0)


def test_cpu_share_is_clipped_to_the_machine() -> None:
    # 10 CPU-seconds in 2 s on 4 CPUs would be 125 %: counter granularity, clipped to 100 %.
    sampler = ScriptedSampler([ProcessSample(MB, 0.0)], final=ProcessSample(MB, 10.0))
    result = scripted_window(sampler, background_probe=None).result()
    assert result.cpu_util_pct == 100.0
    assert result.cpu_util_core_pct == pytest.approx(500.0)
    assert keys.CPU_BACKGROUND not in result.as_metrics()
    assert keys.RAM_MODEL not in result.as_metrics()


def test_gpu_metrics_from_a_fake_probe() -> None:
    gpu = FakeGpu()
    sampler = ScriptedSampler([ProcessSample(MB, 0.0)] * 3, final=ProcessSample(MB, 0.0))
    result = scripted_window(sampler, background_probe=None, gpu_probe=gpu).result()
    assert gpu.resets == 1
    assert result.gpu_mem_mb_peak == pytest.approx(2_500.0)
    assert result.gpu_util_pct == pytest.approx(40.0)
    assert {keys.GPU_UTIL, keys.GPU_MEM_PEAK} <= set(result.as_metrics())


def test_no_gpu_metrics_without_a_gpu() -> None:
    sampler = ScriptedSampler([ProcessSample(MB, 0.0)], final=ProcessSample(MB, 0.0))
    metrics = scripted_window(sampler, background_probe=None).result().as_metrics()
    assert keys.GPU_UTIL not in metrics and keys.GPU_MEM_PEAK not in metrics


def test_sampler_failure_in_the_thread_is_reported() -> None:
    calls = {"n": 0}

    def flaky() -> ProcessSample:
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError("process vanished")
        return ProcessSample(MB, 0.0)

    monitor = ResourceMonitor(0.001, sampler=flaky, background_probe=None)
    with pytest.raises(MeasurementError, match="process vanished"), monitor:
        deadline = time.perf_counter() + 10.0
        while calls["n"] < 2 and time.perf_counter() < deadline:
            time.sleep(0.001)


def test_invalid_use_raises() -> None:
    with pytest.raises(ConfigError, match="interval_s"):
        ResourceMonitor(interval_s=0.05)  # 20 Hz is below the 50 Hz minimum
    with pytest.raises(MeasurementError, match="before the monitored window ended"):
        ResourceMonitor(background_probe=None).result()


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
def test_gpu_device_without_cuda_is_a_config_error() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        ResourceMonitor(gpu_device=0)


# --- real sampling of this process ---------------------------------------------------------------


def test_real_sampling_rate_is_at_least_50_hz() -> None:
    with ResourceMonitor(interval_s=0.01, background_probe=None) as monitor:
        time.sleep(0.3)
    result = monitor.result()
    assert result.samples >= 15  # 50 Hz x 0.3 s; about 30 are expected at 100 Hz
    assert result.rate_hz >= 50.0
    assert 0.0 <= result.cpu_util_pct <= 100.0


def test_real_busy_loop_shows_cpu_use() -> None:
    with ResourceMonitor(background_probe=None) as monitor:
        deadline = time.perf_counter() + 0.3
        while time.perf_counter() < deadline:
            pass
    result = monitor.result()
    assert 2.0 < result.cpu_util_pct <= 100.0  # loose: the machine may be shared
    assert result.cpu_util_core_pct > 10.0


def test_real_background_probe_is_a_percentage() -> None:
    with ResourceMonitor() as monitor:
        pass
    background = monitor.result().cpu_background_pct
    assert background is not None and 0.0 <= background <= 100.0


def test_real_allocation_raises_the_peak() -> None:
    def peak(allocate: bool) -> float:
        baseline = current_anon_bytes()
        with ResourceMonitor(baseline_anon_bytes=baseline, background_probe=None) as monitor:
            block = np.ones(25_000_000) if allocate else None  # 200 MB, every page written
            time.sleep(0.05)
            del block
        result = monitor.result()
        assert result.ram_mb_model is not None
        return result.ram_mb_model

    without = peak(allocate=False)
    with_block = peak(allocate=True)
    assert with_block - without == pytest.approx(200.0, abs=20.0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="statm's shared pages are Linux's")
def test_file_backed_pages_raise_rss_but_not_the_footprint(tmp_path: Path) -> None:
    """Reading a 100 MB memory-mapped file (as the first call of a kernel faults in library code)
    adds ~100 MB of RSS and nothing to the anonymous memory the model's footprint is read on."""
    path = tmp_path / "code.bin"
    path.write_bytes(np.random.default_rng(0).bytes(100 * MB))
    sampler = ProcessSampler()
    before = sampler()
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        checksum = sum(mapped[i] for i in range(0, len(mapped), 4096))  # touch every page
        during = sampler()
    assert checksum > 0
    assert before.anon_bytes is not None and during.anon_bytes is not None
    assert (during.rss_bytes - before.rss_bytes) / MB == pytest.approx(100.0, abs=10.0)
    assert abs(during.anon_bytes - before.anon_bytes) / MB < 5.0
