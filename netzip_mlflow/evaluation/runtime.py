"""Runtime measurement of one model: latency, CPU, RAM and energy, optionally in a fresh process.

DESIGN.md section 6: each model is measured in a freshly *spawned* process (``isolate=True``) so that
one model's memory, caches and allocator state do not leak into the next. The model travels to the
worker through a temporary ``torch.save`` file written by this process from the caller's in-memory
model (never a file a user handed us), and is loaded there only after the worker's RSS has been
read, so ``resources/ram_mb_model`` is the model's own footprint.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from netzip_mlflow import model_pickle
from netzip_mlflow.errors import MeasurementError
from netzip_mlflow.evaluation.energy import EnergyWindow, best_meter, measure_idle_power
from netzip_mlflow.evaluation.latency import LatencySettings, measure_latency
from netzip_mlflow.evaluation.resources import ResourceMonitor, current_rss_bytes
from netzip_mlflow.tracking import keys


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
    model: nn.Module, sample: torch.Tensor, settings: RuntimeSettings, rss_before_bytes: int | None = None
) -> RuntimeResult:
    """Time ``model(sample)`` by the latency protocol with CPU, RAM and energy measured around it.

    Energy covers the whole timed window (warm-up included) and is divided by every sample run in it.

    Args:
        model: the model, in eval mode on ``settings.device``.
        sample: one real input batch, already on the device and in the model's dtype.
        settings: protocol settings.
        rss_before_bytes: RSS of this process before the model was loaded; defaults to now.
    """
    torch.set_num_threads(settings.threads)
    baseline_rss = current_rss_bytes() if rss_before_bytes is None else rss_before_bytes
    cuda = settings.device.startswith("cuda")
    gpu = (torch.device(settings.device).index or 0) if cuda else None
    meter = best_meter(cuda_device=gpu, power_log=settings.power_log)
    sync = torch.cuda.synchronize if cuda else None
    batch = int(sample.shape[0])

    idle = measure_idle_power(meter, settings.idle_s) if meter is not None and settings.idle_s > 0 else 0.0
    with torch.inference_mode():
        with ResourceMonitor(baseline_rss_bytes=baseline_rss, gpu_device=gpu) as monitor:
            window = EnergyWindow(meter) if meter is not None else contextlib.nullcontext()
            with window:
                latency = measure_latency(lambda: model(sample), settings.latency, batch, synchronize=sync)
    result = RuntimeResult()
    result.metrics.update(latency.as_metrics())
    result.metrics.update(monitor.result().as_metrics())
    result.tags[keys.TAG_LATENCY_TARGET_MET] = str(latency.target_met).lower()
    if meter is not None:
        energy = window.result(n_samples=latency.calls * batch, idle_power_w=idle)
        result.metrics.update(energy.as_metrics())
        result.tags[keys.TAG_ENERGY_METER] = energy.tag_value()
    else:
        result.tags[keys.TAG_ENERGY_METER] = "none (no energy meter readable on this machine)"
    return result


def measure_runtime_isolated(model: nn.Module, sample: torch.Tensor, settings: RuntimeSettings) -> RuntimeResult:
    """:func:`measure_runtime` in a fresh Python process (``python -m netzip_mlflow.evaluation.worker``).

    A plain subprocess rather than ``multiprocessing``: it needs no ``if __name__ == "__main__"``
    guard in the caller's script and starts with nothing but the worker's imports.
    """
    with tempfile.TemporaryDirectory(prefix="netzip-worker-") as tmp:
        payload, out = Path(tmp) / "payload.pt", Path(tmp) / "result.json"
        torch.save({"model": model, "sample": sample.cpu(), "settings": settings}, payload, pickle_module=model_pickle)
        proc = subprocess.run(
            [sys.executable, "-m", "netzip_mlflow.evaluation.worker", str(payload), str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0 or not out.is_file():
            detail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit code {proc.returncode}"
            raise MeasurementError(
                f"the isolated measurement process failed: {detail}; "
                "rerun with evaluation.isolate: false to see the error in this process"
            )
        data = json.loads(out.read_text())
    return RuntimeResult(metrics=data["metrics"], tags=data["tags"])
