"""The energy-meter interface shared by every meter.

A meter takes :class:`Snapshot` s — its raw counters plus the time on its own clock — and turns two
of them into the joules spent between them. Counter meters (RAPL, NVML) read cumulative counters;
the estimate meter reads the process's CPU time; an external power log integrates a logged trace
between the two snapshots' wall-clock times.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from netzip_mlflow.errors import MeasurementError


class MeterUnavailable(MeasurementError):
    """A meter cannot be used on this machine; the message says why (``best_meter`` skips it)."""


@dataclass(frozen=True)
class Snapshot:
    """One reading of a meter.

    Attributes:
        time_s: seconds on the meter's own clock (``time.time`` for an external log, whose
            timestamps are unix times; ``time.perf_counter`` otherwise).
        values: the meter's raw readings (meter-specific units, e.g. microjoules for RAPL).
    """

    time_s: float
    values: tuple[Any, ...]


class EnergyMeter(ABC):
    """Measures (or estimates) the energy spent between two snapshots.

    Attributes:
        name: short identifier, e.g. ``"rapl-sysfs"``.
        is_estimate: True when the figure comes from a model (TDP x load), not from a counter.
    """

    name: str
    is_estimate: bool

    @abstractmethod
    def snapshot(self) -> Snapshot:
        """Read the meter now."""

    @abstractmethod
    def joules_between(self, start: Snapshot, end: Snapshot) -> float:
        """Energy spent from ``start`` to ``end`` (both taken by this meter), in joules."""

    @property
    @abstractmethod
    def detail(self) -> str:
        """What exactly is measured, e.g. ``"packages 0,1 + dram"``."""

    def describe(self) -> str:
        """The ``netzip.energy_meter`` tag, e.g. ``"rapl-sysfs (measured; package 0)"``."""
        kind = "estimate" if self.is_estimate else "measured"
        return f"{self.name} ({kind}; {self.detail})"


class CombinedMeter(EnergyMeter):
    """The sum of several meters (e.g. the CPU meter plus NVML when a CUDA model is measured)."""

    def __init__(self, parts: Sequence[EnergyMeter]) -> None:
        if not parts:
            raise ValueError("CombinedMeter needs at least one meter")
        self.parts = tuple(parts)
        self.name = "+".join(part.name for part in self.parts)
        self.is_estimate = any(part.is_estimate for part in self.parts)

    def snapshot(self) -> Snapshot:
        snaps = tuple(part.snapshot() for part in self.parts)
        return Snapshot(time_s=snaps[0].time_s, values=snaps)

    def joules_between(self, start: Snapshot, end: Snapshot) -> float:
        return sum(
            part.joules_between(a, b)
            for part, a, b in zip(self.parts, start.values, end.values, strict=True)
        )

    @property
    def detail(self) -> str:
        return " + ".join(part.describe() for part in self.parts)

    def describe(self) -> str:
        """The parts' descriptions joined, e.g. ``"rapl-sysfs (...) + nvml (...)"``."""
        return self.detail
