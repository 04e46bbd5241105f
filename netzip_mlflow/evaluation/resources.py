"""CPU, RAM and GPU use of the evaluating process during inference (docs/architecture.md, "Measurement protocol").

:class:`ResourceMonitor` is a context manager around the inference loop. A background thread samples
this process's resident set size (RSS) at ``1 / interval_s`` Hz (default 100 Hz) to find the peak;
CPU utilisation comes from the process's CPU-time counters at the window's two ends, so it is exact
whatever the sampling rate::

    baseline = current_anon_bytes()         # before the model is loaded
    ... load the model ...
    with ResourceMonitor(interval_s=0.01, baseline_anon_bytes=baseline) as mon:
        ... inference loop ...
    res = mon.result()                      # ResourceResult
    mlflow.log_metrics(res.as_metrics())

Units: CPU in percent of the whole machine (all logical CPUs = 100 %), memory in MB (1e6 bytes).
The peak RSS is a sampled peak: an allocation that lives shorter than one interval may be missed.

The model's own footprint (``resources/ram_mb_model``) is measured on *anonymous* resident memory
(Linux: RSS minus its file-backed and shared pages, i.e. ``RssAnon``): heap, tensors, JIT-compiled
kernels. File-backed pages are left out because they are the libraries' code, faulted in on the first
call of each kernel; how much of ``libtorch`` a convolution touches depends on the CPU's instruction
set (measured: +14 MB of code pages on the first ResNet18 call on AMD EPYC, more elsewhere), not on
the model. Where the OS does not report shared pages the footprint falls back to RSS.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

import psutil

from netzip_mlflow.errors import ConfigError, MeasurementError
from netzip_mlflow.tracking import keys

MIN_RATE_HZ = 50.0
BYTES_PER_MB = 1e6


@dataclass(frozen=True)
class ProcessSample:
    """One reading of a process.

    Attributes:
        rss_bytes: resident set size, bytes.
        cpu_time_s: CPU time of all its threads (user + system), seconds.
        anon_bytes: anonymous resident memory (RSS without file-backed and shared pages), bytes;
            None where the OS does not say (then :attr:`footprint_bytes` is the RSS).
    """

    rss_bytes: int
    cpu_time_s: float
    anon_bytes: int | None = None

    @property
    def footprint_bytes(self) -> int:
        """Memory that data (weights, activations) occupies: anonymous memory, else RSS; bytes."""
        return self.anon_bytes if self.anon_bytes is not None else self.rss_bytes


class ProcessSampler:
    """Reads :class:`ProcessSample` s of one process (this one by default) through psutil."""

    def __init__(self, pid: int | None = None) -> None:
        self._process = psutil.Process(pid)

    def __call__(self) -> ProcessSample:
        with self._process.oneshot():
            times = self._process.cpu_times()
            memory = self._process.memory_info()
        return ProcessSample(
            rss_bytes=memory.rss, cpu_time_s=times.user + times.system, anon_bytes=_anon_bytes(memory)
        )


def _anon_bytes(memory: Any) -> int | None:
    """RSS minus shared pages from psutil's ``memory_info()`` (Linux ``statm``: RssFile + RssShmem)."""
    shared = getattr(memory, "shared", None)
    return None if shared is None else max(int(memory.rss) - int(shared), 0)


def current_anon_bytes() -> int:
    """This process's model-footprint memory now, in bytes (pass it as ``baseline_anon_bytes``):
    anonymous resident memory on Linux, RSS where the OS does not report shared pages."""
    return ProcessSampler()().footprint_bytes


def machine_cpu_percent(interval_s: float = 0.2) -> float:
    """Whole-machine CPU utilisation over the next ``interval_s`` seconds, in percent (blocks)."""
    return float(psutil.cpu_percent(interval=interval_s))


class GpuProbe(Protocol):
    """What :class:`ResourceMonitor` needs from a GPU (a fake in tests)."""

    def reset_peak(self) -> None:
        """Start a new peak-memory window."""

    def peak_memory_bytes(self) -> int:
        """Peak memory allocated since :meth:`reset_peak`, in bytes."""

    def utilization_pct(self) -> float | None:
        """Current utilisation in percent, or None when it cannot be read."""


class TorchGpuProbe:
    """Peak memory from ``torch.cuda``; utilisation from NVML when it is available."""

    def __init__(self, device: int) -> None:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                "gpu_device",
                f"GPU {device} was asked for but CUDA is not available",
                "leave gpu_device unset to measure a CPU model",
            )
        if not 0 <= device < torch.cuda.device_count():
            raise ConfigError(
                "gpu_device",
                f"no CUDA device {device} ({torch.cuda.device_count()} visible)",
                "pass an index below torch.cuda.device_count()",
            )
        from netzip_mlflow.evaluation.meters.nvml import nvml_handle

        self._torch = torch
        self._device = device
        self._nvml = nvml_handle(device)

    def reset_peak(self) -> None:
        self._torch.cuda.synchronize(self._device)
        self._torch.cuda.reset_peak_memory_stats(self._device)

    def peak_memory_bytes(self) -> int:
        self._torch.cuda.synchronize(self._device)
        return int(self._torch.cuda.max_memory_allocated(self._device))

    def utilization_pct(self) -> float | None:
        if self._nvml is None:
            return None
        import pynvml

        return float(pynvml.nvmlDeviceGetUtilizationRates(self._nvml).gpu)


@dataclass(frozen=True)
class ResourceResult:
    """Resource use of the process over one monitored window.

    Attributes:
        cpu_util_pct: process CPU time / (wall time x logical CPUs) x 100, in % of the whole machine
            (0-100; clipped at 100 against the counters' 10 ms granularity).
        cpu_util_core_pct: process CPU time / wall time x 100, in % of one core (up to 100 x CPUs).
        cpu_background_pct: whole-machine CPU use just before the window, in %; None if not probed.
        ram_mb_peak: peak sampled RSS of the process, MB (1e6 B).
        ram_mb_model: peak sampled anonymous memory (:attr:`ProcessSample.footprint_bytes`) minus
            the caller's baseline of it, MB; None without a baseline.
        samples: RSS samples taken (the window's two ends included).
        interval_s: the sampling interval asked for, seconds.
        seconds: the window's wall-clock length, seconds.
        gpu_util_pct: mean NVML utilisation of the GPU during the window, %; None without one.
        gpu_mem_mb_peak: ``torch.cuda.max_memory_allocated`` in the window, MB; None without GPU.
    """

    cpu_util_pct: float
    cpu_util_core_pct: float
    cpu_background_pct: float | None
    ram_mb_peak: float
    ram_mb_model: float | None
    samples: int
    interval_s: float
    seconds: float
    gpu_util_pct: float | None = None
    gpu_mem_mb_peak: float | None = None

    @property
    def rate_hz(self) -> float:
        """Achieved sampling rate, samples per second."""
        return self.samples / self.seconds if self.seconds > 0 else 0.0

    def as_metrics(self) -> dict[str, float]:
        """The ``resources/*`` metrics under their contract keys; unmeasured ones are left out."""
        values = {
            keys.CPU_UTIL: self.cpu_util_pct,
            keys.CPU_BACKGROUND: self.cpu_background_pct,
            keys.RAM_PEAK: self.ram_mb_peak,
            keys.RAM_MODEL: self.ram_mb_model,
            keys.GPU_UTIL: self.gpu_util_pct,
            keys.GPU_MEM_PEAK: self.gpu_mem_mb_peak,
        }
        return {key: float(value) for key, value in values.items() if value is not None}


class ResourceMonitor:
    """Context manager sampling this process's RSS (and GPU use) while the ``with`` body runs.

    Args:
        interval_s: sampling interval in seconds; at most 0.02 (at least 50 Hz). Default 0.01.
        baseline_anon_bytes: anonymous memory before the model was loaded
            (:func:`current_anon_bytes`), for ``ram_mb_model``; None leaves that metric out.
        gpu_device: CUDA device index to watch, or None for a CPU model.
        sampler: returns a :class:`ProcessSample` (default: this process through psutil).
        clock: monotonic clock in seconds timing the window (the sampling thread paces itself on
            ``time.perf_counter``).
        background_probe: returns the machine's CPU use in % just before the window (default
            :func:`machine_cpu_percent`, which blocks 0.2 s); None skips it.
        logical_cpus: logical CPU count of the machine (default ``psutil.cpu_count()``).
        gpu_probe: a :class:`GpuProbe` replacing the torch/NVML one built from ``gpu_device``.
    """

    def __init__(
        self,
        interval_s: float = 0.01,
        *,
        baseline_anon_bytes: int | None = None,
        gpu_device: int | None = None,
        sampler: Callable[[], ProcessSample] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        background_probe: Callable[[], float] | None = machine_cpu_percent,
        logical_cpus: int | None = None,
        gpu_probe: GpuProbe | None = None,
    ) -> None:
        if not 0 < interval_s <= 1.0 / MIN_RATE_HZ:
            raise ConfigError(
                "resources.interval_s",
                f"{interval_s!r} is not in (0, {1.0 / MIN_RATE_HZ}]",
                f"sample at {MIN_RATE_HZ:.0f} Hz or faster, e.g. 0.01",
            )
        self.interval_s = interval_s
        self._baseline = baseline_anon_bytes
        self._sampler = sampler or ProcessSampler()
        self._clock = clock
        self._background_probe = background_probe
        self._cpus = logical_cpus or psutil.cpu_count() or 1
        self._gpu = gpu_probe or (TorchGpuProbe(gpu_device) if gpu_device is not None else None)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._result: ResourceResult | None = None

    def __enter__(self) -> ResourceMonitor:
        self._result = None
        self._background = self._background_probe() if self._background_probe else None
        if self._gpu is not None:
            self._gpu.reset_peak()
        self._peak_rss = 0
        self._peak_anon = 0
        self._count = 0
        self._gpu_util: list[float] = []
        self._error: BaseException | None = None
        self._stop.clear()
        self._t0 = self._clock()
        self._first = self._record()
        self._thread = threading.Thread(target=self._run, name="netzip-resources", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._error is not None and exc is None:  # never mask the body's own exception
            raise MeasurementError(
                f"resource sampling failed during the window: {self._error!r}"
            ) from self._error
        last = self._record()
        seconds = self._clock() - self._t0
        gpu_mem = self._gpu.peak_memory_bytes() / BYTES_PER_MB if self._gpu else None
        self._result = self._summarise(last.cpu_time_s - self._first.cpu_time_s, seconds, gpu_mem)

    def _run(self) -> None:
        """Sample on a fixed grid of ticks (no drift from the sampling cost); a tick missed while
        the thread waited for the CPU or the GIL is skipped, not made up in a burst."""
        next_tick = time.perf_counter() + self.interval_s
        try:
            while not self._stop.wait(max(next_tick - time.perf_counter(), 0.0)):
                self._record()
                now = time.perf_counter()
                next_tick += self.interval_s
                if next_tick <= now:
                    next_tick = now + self.interval_s
        except Exception as exc:  # reported by __exit__ in the caller's thread
            self._error = exc

    def _record(self) -> ProcessSample:
        sample = self._sampler()
        self._peak_rss = max(self._peak_rss, sample.rss_bytes)
        self._peak_anon = max(self._peak_anon, sample.footprint_bytes)
        self._count += 1
        if self._gpu is not None:
            util = self._gpu.utilization_pct()
            if util is not None:
                self._gpu_util.append(util)
        return sample

    def _summarise(self, cpu_s: float, seconds: float, gpu_mem_mb: float | None) -> ResourceResult:
        core_pct = max(cpu_s, 0.0) / seconds * 100.0 if seconds > 0 else 0.0
        peak_mb = self._peak_rss / BYTES_PER_MB
        model_mb = (
            (self._peak_anon - self._baseline) / BYTES_PER_MB if self._baseline is not None else None
        )
        return ResourceResult(
            cpu_util_pct=min(core_pct / self._cpus, 100.0),
            cpu_util_core_pct=core_pct,
            cpu_background_pct=self._background,
            ram_mb_peak=peak_mb,
            ram_mb_model=model_mb,
            samples=self._count,
            interval_s=self.interval_s,
            seconds=seconds,
            gpu_util_pct=sum(self._gpu_util) / len(self._gpu_util) if self._gpu_util else None,
            gpu_mem_mb_peak=gpu_mem_mb,
        )

    def result(self) -> ResourceResult:
        """The window's :class:`ResourceResult`; MeasurementError before the window closed."""
        if self._result is None:
            raise MeasurementError(
                "ResourceMonitor.result() was called before the monitored window ended; "
                "call it after the `with ResourceMonitor(...)` block"
            )
        return self._result
