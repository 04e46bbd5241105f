"""Runtime measurement of one model: latency, CPU, RAM and energy, optionally in a fresh process.

docs/architecture.md, "Measurement protocol": each model is measured in a freshly *spawned* process (``isolate=True``) so that
one model's memory, caches and allocator state do not leak into the next. The model travels to the
worker through a temporary ``torch.save`` file written by this process from the caller's in-memory
model (never a file a user handed us), and is loaded there only after the worker's anonymous memory
has been read, so ``resources/ram_mb_model`` is the model's own footprint.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from netzip_mlflow import model_pickle
from netzip_mlflow.errors import MeasurementError
from netzip_mlflow.evaluation.deployed import DeployedModel
from netzip_mlflow.evaluation.energy import EnergyWindow, best_meter, measure_idle_power
from netzip_mlflow.evaluation.latency import CudaEventTimer, LatencySettings, measure_latency
from netzip_mlflow.evaluation.resources import ResourceMonitor
from netzip_mlflow.tracking import keys

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class RuntimeSettings:
    """What the runtime measurement needs besides the model and its sample input."""

    latency: LatencySettings
    threads: int = 1
    device: str = "cpu"
    idle_s: float = 1.0
    power_log: Path | None = None


@dataclass
class RuntimeResult:
    """Metrics (contract keys) and tags from one runtime measurement."""

    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def measure_runtime(
    model: nn.Module, sample: torch.Tensor, settings: RuntimeSettings, anon_before_bytes: int | None = None
) -> RuntimeResult:
    """Time ``model(sample)`` by the latency protocol with CPU, RAM and energy measured around it.

    Order, all in this process: torch intra-op threads set to ``settings.threads`` (restored
    afterwards); idle power read for ``settings.idle_s`` seconds while sleeping; the machine's
    background CPU use read for 0.2 s; then one window holding the warm-up and the timed calls,
    around which the RSS is sampled at 100 Hz and the energy meter read. Energy covers the whole
    window (warm-up included) and is divided by every sample run in it. On CUDA, each timed call is
    timed with CUDA events and the GPU's NVML utilisation and peak allocated memory are recorded.

    Args:
        model: the model, in eval mode on ``settings.device``.
        sample: one real input batch, already on the device and in the model's dtype.
        settings: protocol settings.
        anon_before_bytes: anonymous memory of this process before the model was loaded
            (:func:`~netzip_mlflow.evaluation.resources.current_anon_bytes`; the isolated worker
            passes it). Without it ``resources/ram_mb_model`` is left out: in a process that
            already holds the model (and maybe earlier ones) no reading can isolate its footprint.
    """
    threads_before = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    if isinstance(model, DeployedModel):  # threads through the runtime's own option
        model.set_threads(settings.threads)
    try:
        return _measure(model, sample, settings, anon_before_bytes)
    finally:
        torch.set_num_threads(threads_before)


def _measure(
    model: nn.Module, sample: torch.Tensor, settings: RuntimeSettings, anon_before_bytes: int | None
) -> RuntimeResult:
    cuda = settings.device.startswith("cuda")
    gpu = (torch.device(settings.device).index or 0) if cuda else None
    meter = best_meter(cuda_device=gpu, power_log=settings.power_log)
    sync = torch.cuda.synchronize if cuda else None
    timer = CudaEventTimer(gpu) if gpu is not None else None
    batch = int(sample.shape[0])

    idle = measure_idle_power(meter, settings.idle_s) if meter is not None and settings.idle_s > 0 else None
    with torch.inference_mode():
        with ResourceMonitor(baseline_anon_bytes=anon_before_bytes, gpu_device=gpu) as monitor:
            window = EnergyWindow(meter) if meter is not None else contextlib.nullcontext()
            with window:
                latency = measure_latency(
                    lambda: model(sample), settings.latency, batch, synchronize=sync, timer=timer
                )
    result = RuntimeResult()
    result.metrics.update(latency.as_metrics())
    result.metrics.update(monitor.result().as_metrics())
    result.tags[keys.TAG_LATENCY_TARGET_MET] = str(latency.target_met).lower()
    result.tags[keys.TAG_LATENCY_TIMER] = "cuda-events" if timer is not None else "perf_counter"
    threads = model.session_threads() if isinstance(model, DeployedModel) else torch.get_num_threads()
    result.tags[keys.TAG_RUNTIME_THREADS] = str(threads)
    result.tags[keys.TAG_RUNTIME_ISOLATED] = "false"
    if meter is not None:
        energy = window.result(n_samples=latency.calls * batch, idle_power_w=idle)
        result.metrics.update(energy.as_metrics())
        result.tags[keys.TAG_ENERGY_METER] = energy.tag_value()
    else:
        result.tags[keys.TAG_ENERGY_METER] = "none (no energy meter readable on this machine)"
    return result


def worker_environment(threads: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The isolated worker's environment: ``base`` (default ``os.environ``) with the OpenMP / MKL /
    OpenBLAS thread pools fixed to ``threads`` before torch starts, so no library of the worker
    opens a pool of another size."""
    env = dict(os.environ if base is None else base)
    for name in _THREAD_VARIABLES:
        env[name] = str(threads)
    return env


def code_modules(model: nn.Module) -> list[str]:
    """The importable modules defining the classes of ``model``'s modules (e.g.
    ``torchvision.models.resnet``), which the worker imports *before* it reads its baseline RSS:
    the memory of importing a model's code (torchvision alone is about 170 MB) is not the model's
    footprint (for a runtime model: the runtime's library, e.g. onnxruntime). Classes defined in
    ``__main__`` travel by value and are left out."""
    names = {type(module).__module__ for module in model.modules()}
    if isinstance(model, DeployedModel):
        names.update(model.runtime_code_modules())
    return sorted(name for name in names if name != "__main__" and name in sys.modules)


def measure_runtime_isolated(model: nn.Module, sample: torch.Tensor, settings: RuntimeSettings) -> RuntimeResult:
    """:func:`measure_runtime` in a fresh Python process (``python -m netzip_mlflow.evaluation.worker``).

    A plain subprocess rather than ``multiprocessing``: it needs no ``if __name__ == "__main__"``
    guard in the caller's script and starts with nothing but the worker's imports. Its thread pools
    are fixed through the environment (:func:`worker_environment`); it imports the model's code
    (:func:`code_modules`) and then reads its anonymous memory before loading the model, so
    ``resources/ram_mb_model`` is the model's own footprint (weights, activations, the sample,
    kernel workspaces) and nothing of its code, of the libraries' code pages its first call faults
    in, or of an earlier model measured by the caller.
    """
    with tempfile.TemporaryDirectory(prefix="netzip-worker-") as tmp:
        payload, out = Path(tmp) / "payload.pt", Path(tmp) / "result.json"
        torch.save({"model": model, "sample": sample.cpu(), "settings": settings}, payload, pickle_module=model_pickle)
        proc = subprocess.run(
            [
                sys.executable, "-m", "netzip_mlflow.evaluation.worker", str(payload), str(out),
                *code_modules(model),
            ],
            capture_output=True,
            text=True,
            check=False,
            env=worker_environment(settings.threads),
        )
        if proc.returncode != 0 or not out.is_file():
            detail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit code {proc.returncode}"
            raise MeasurementError(
                f"the isolated measurement process failed: {detail}; "
                "rerun with evaluation.isolate: false to see the error in this process"
            )
        data = json.loads(out.read_text())
    tags = {**data["tags"], keys.TAG_RUNTIME_ISOLATED: "true"}
    return RuntimeResult(metrics=data["metrics"], tags=tags)
