"""Energy of an inference window, idle power subtracted (docs/architecture.md, "Metric contract" and "Measurement protocol").

Usage around the timed loop::

    meter = best_meter(cuda_device=None)            # None: no meter -> log no energy metrics
    idle_w = measure_idle_power(meter, seconds=1.0) # just before the window, sleeping
    with EnergyWindow(meter) as window:
        ... n samples of inference ...
    energy = window.result(n_samples=n, idle_power_w=idle_w)
    mlflow.log_metrics(energy.as_metrics())
    mlflow.set_tag(keys.TAG_ENERGY_METER, energy.tag_value())

Meters, most trusted first (:func:`best_meter`): RAPL counters read from sysfs (packages + DRAM),
pyRAPL, NVML for the GPU (added to the CPU figure for a CUDA model), and codecarbon's CPU-load model
as an estimate (see :mod:`netzip_mlflow.evaluation.meters.estimate` for why codecarbon's own tracker
is not used). A user-supplied external power log (:class:`ExternalPowerLog`) takes precedence,
because the user asked for it. Units: joules, seconds, watts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from netzip_mlflow.errors import ConfigError, MeasurementError
from netzip_mlflow.evaluation.meters.base import (
    CombinedMeter,
    EnergyMeter,
    MeterUnavailable,
    Snapshot,
)
from netzip_mlflow.evaluation.meters.estimate import CpuLoadEstimateMeter
from netzip_mlflow.evaluation.meters.external import ExternalPowerLog
from netzip_mlflow.evaluation.meters.nvml import NvmlMeter
from netzip_mlflow.evaluation.meters.rapl import DEFAULT_POWERCAP_ROOT, PyRaplMeter, RaplSysfsMeter
from netzip_mlflow.tracking import keys

__all__ = [
    "CombinedMeter",
    "CpuLoadEstimateMeter",
    "EnergyMeter",
    "EnergyResult",
    "EnergyWindow",
    "ExternalPowerLog",
    "MeterUnavailable",
    "NvmlMeter",
    "PyRaplMeter",
    "RaplSysfsMeter",
    "best_meter",
    "measure_idle_power",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnergyResult:
    """Energy of one inference window.

    Attributes:
        meter: the meter's description (the ``netzip.energy_meter`` tag).
        is_estimate: True when the meter models power instead of measuring it.
        joules_total: energy read over the window, idle included, J.
        seconds: window length, s.
        n_samples: samples inferred in the window.
        idle_power_w: idle power measured just before, W; None when it was not measured.
    """

    meter: str
    is_estimate: bool
    joules_total: float
    seconds: float
    n_samples: int
    idle_power_w: float | None

    @property
    def mean_power_w(self) -> float:
        """Mean power over the window, idle included, W."""
        return self.joules_total / self.seconds

    @property
    def net_joules(self) -> float:
        """Energy above idle over the window: ``joules_total - idle_power_w x seconds``, J."""
        return self.joules_total - (self.idle_power_w or 0.0) * self.seconds

    @property
    def power_w(self) -> float:
        """Mean power above idle, W."""
        return self.net_joules / self.seconds

    @property
    def joules_per_sample(self) -> float:
        """Energy above idle per inferred sample, J."""
        return self.net_joules / self.n_samples

    @property
    def above_idle(self) -> bool:
        """False when the window used no more than idle (inside the meter's noise): not reported."""
        return self.net_joules > 0

    def as_metrics(self) -> dict[str, float]:
        """``energy/*`` metrics. Per-sample energy and power are left out when not above idle
        (a zero or negative figure would be noise, not a measurement)."""
        metrics: dict[str, float] = {}
        if self.above_idle:
            metrics[keys.ENERGY_PER_SAMPLE] = self.joules_per_sample
            metrics[keys.POWER] = self.power_w
        if self.idle_power_w is not None:
            metrics[keys.IDLE_POWER] = self.idle_power_w
        return metrics

    def tag_value(self) -> str:
        """Value of the ``netzip.energy_meter`` tag: which meter, measured or estimate, caveats."""
        notes = []
        if self.idle_power_w is None:
            notes.append("idle power not subtracted")
        if not self.above_idle:
            notes.append("window energy not above idle: energy per sample not reported")
        return self.meter + "".join(f" [{note}]" for note in notes)


class EnergyWindow:
    """Context manager reading ``meter`` when the ``with`` body starts and when it ends."""

    def __init__(self, meter: EnergyMeter) -> None:
        self.meter = meter
        self._start: Snapshot | None = None
        self._end: Snapshot | None = None

    def __enter__(self) -> EnergyWindow:
        self._end = None
        self._start = self.meter.snapshot()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._end = self.meter.snapshot()

    @property
    def start_s(self) -> float:
        """Window start on the meter's clock, s."""
        return self._snapshots()[0].time_s

    @property
    def end_s(self) -> float:
        """Window end on the meter's clock, s."""
        return self._snapshots()[1].time_s

    def _snapshots(self) -> tuple[Snapshot, Snapshot]:
        if self._start is None or self._end is None:
            raise MeasurementError(
                "the energy window is not closed; call result() after the `with EnergyWindow` block"
            )
        return self._start, self._end

    def result(self, n_samples: int, idle_power_w: float | None = None) -> EnergyResult:
        """The window's :class:`EnergyResult`.

        Args:
            n_samples: samples inferred inside the window (> 0).
            idle_power_w: from :func:`measure_idle_power`, W; None reports without subtraction.
        """
        if n_samples < 1:
            raise ConfigError("n_samples", f"must be a positive count, got {n_samples!r}")
        start, end = self._snapshots()
        seconds = end.time_s - start.time_s
        if seconds <= 0:
            raise MeasurementError(
                f"the energy window lasted {seconds} s on the {self.meter.name} meter's clock"
            )
        return EnergyResult(
            meter=self.meter.describe(),
            is_estimate=self.meter.is_estimate,
            joules_total=self.meter.joules_between(start, end),
            seconds=seconds,
            n_samples=n_samples,
            idle_power_w=idle_power_w,
        )


def measure_idle_power(
    meter: EnergyMeter,
    seconds: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Mean power (W) the meter reads while this process sleeps for ``seconds``.

    Call it just before the inference window. For a counter meter (RAPL, NVML, an external log)
    it is the machine's idle draw. For the per-process estimate (:class:`CpuLoadEstimateMeter`)
    the CPU part of an idle process is ~0 W by construction, so the figure is the model's static
    RAM power (10 W on x86): no machine idle draw is invented.
    """
    if not seconds > 0:
        raise ConfigError("energy.idle_seconds", f"must be positive, got {seconds!r}")
    start = meter.snapshot()
    sleep(seconds)
    end = meter.snapshot()
    return meter.joules_between(start, end) / (end.time_s - start.time_s)


def _first_available(factories: list[Callable[[], EnergyMeter]]) -> EnergyMeter | None:
    for factory in factories:
        try:
            return factory()
        except MeterUnavailable as exc:
            _log.info("energy meter skipped: %s", exc)
    return None


def best_meter(
    *,
    cuda_device: int | None = None,
    power_log: str | Path | None = None,
    allow_estimate: bool = True,
    powercap_root: str | Path = DEFAULT_POWERCAP_ROOT,
) -> EnergyMeter | None:
    """The most trustworthy energy meter on this machine, or None when there is none.

    Args:
        cuda_device: CUDA index of the GPU running the model; its NVML energy is added to the CPU
            figure when available.
        power_log: an external meter's ``timestamp,watts`` CSV; when given it is the meter (it
            measures the whole device), and a missing file raises :class:`DataError`.
        allow_estimate: whether the codecarbon-model CPU estimate may be used when no counter is.
        powercap_root: the RAPL sysfs tree (a fake one in tests).
    """
    if power_log is not None:
        return ExternalPowerLog(power_log)
    cpu_factories: list[Callable[[], EnergyMeter]] = [
        lambda: RaplSysfsMeter(powercap_root),
        PyRaplMeter,
    ]
    if allow_estimate:
        cpu_factories.append(CpuLoadEstimateMeter)
    parts = [_first_available(cpu_factories)]
    if cuda_device is not None:
        parts.append(_first_available([lambda: NvmlMeter(cuda_device)]))
    available = [part for part in parts if part is not None]
    if not available:
        return None
    return available[0] if len(available) == 1 else CombinedMeter(available)
