"""NVIDIA GPU energy through NVML (``pynvml`` from the ``nvidia-ml-py`` package).

:class:`NvmlMeter` reads ``nvmlDeviceGetTotalEnergyConsumption``, a cumulative millijoule counter of
the whole board (Volta and newer). Without an NVIDIA driver, or on an older GPU without the counter,
the meter is unavailable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from netzip_mlflow.evaluation.meters.base import EnergyMeter, MeterUnavailable, Snapshot

MJ_PER_J = 1e3


def _init_nvml() -> Any | None:
    """The ``pynvml`` module with NVML initialised, or None when there is no NVIDIA driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return None
    return pynvml


def _cuda_uuid(cuda_device: int) -> str | None:
    """The device's UUID from torch, only when torch is imported and CUDA usable (else None)."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            return str(torch.cuda.get_device_properties(cuda_device).uuid)
    except Exception:
        return None
    return None


def nvml_handle(cuda_device: int) -> Any | None:
    """The NVML handle of CUDA device ``cuda_device``, or None when NVML is not available.

    The device is matched by UUID, so ``CUDA_VISIBLE_DEVICES`` renumbering is respected; without
    torch the CUDA index is taken as the NVML index.
    """
    pynvml = _init_nvml()
    if pynvml is None:
        return None
    uuid = _cuda_uuid(cuda_device)
    if uuid is not None:
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
        except pynvml.NVMLError:
            pass
    try:
        return pynvml.nvmlDeviceGetHandleByIndex(cuda_device)
    except pynvml.NVMLError:
        return None


class NvmlMeter(EnergyMeter):
    """Energy of one NVIDIA GPU board from its NVML total-energy counter.

    Args:
        cuda_device: CUDA index of the GPU running the model.
        clock: monotonic clock in seconds.

    Raises:
        MeterUnavailable: no NVIDIA driver / device, or the GPU has no energy counter.
    """

    name = "nvml"
    is_estimate = False

    def __init__(
        self, cuda_device: int = 0, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        handle = nvml_handle(cuda_device)
        if handle is None:
            raise MeterUnavailable(
                f"NVML cannot reach CUDA device {cuda_device} (no NVIDIA driver?)"
            )
        import pynvml

        try:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            gpu_name = pynvml.nvmlDeviceGetName(handle)
        except pynvml.NVMLError as exc:
            raise MeterUnavailable(
                f"GPU {cuda_device} has no NVML energy counter (needs Volta or newer): {exc}"
            ) from exc
        self._pynvml = pynvml
        self._handle = handle
        self._label = f"GPU {cuda_device} {gpu_name}"
        self._clock = clock

    def snapshot(self) -> Snapshot:
        millijoules = self._pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        return Snapshot(time_s=self._clock(), values=(int(millijoules),))

    def joules_between(self, start: Snapshot, end: Snapshot) -> float:
        return (end.values[0] - start.values[0]) / MJ_PER_J

    @property
    def detail(self) -> str:
        return f"{self._label} total-energy counter"
