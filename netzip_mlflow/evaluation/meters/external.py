"""Energy from an external power meter's log (e.g. the USB power meter of a Raspberry Pi setup).

The log is a CSV file of ``timestamp,watts`` rows — timestamps in seconds on the same clock as this
machine's ``time.time()`` (unix time), power in watts; a header row is optional. The energy of a
window ``[t0, t1]`` is the trapezoid-rule integral of the trace, with the power at ``t0`` and ``t1``
interpolated linearly between the neighbouring rows. The file is read when a window is integrated,
so a logger may keep appending to it during the evaluation.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from netzip_mlflow.errors import DataError
from netzip_mlflow.evaluation.meters.base import EnergyMeter, Snapshot


def read_power_log(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps (s) and power (W) from a ``timestamp,watts`` CSV, sorted by time.

    Raises:
        DataError: the file is missing, a row is malformed, or fewer than two rows remain.
    """
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    except OSError as exc:
        raise DataError(f"cannot read the power log {path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"the power log {path} is not UTF-8 text (byte {exc.start}); give a `timestamp,watts` CSV") from None
    if rows and not _is_number(rows[0][0]):
        rows = rows[1:]  # header
    points = [_parse_row(path, number, row) for number, row in enumerate(rows, start=1)]
    if len(points) < 2:
        raise DataError(
            f"the power log {path} has {len(points)} data row(s); it needs at least two "
            "`timestamp,watts` rows spanning the measured window"
        )
    points.sort()
    times, watts = (np.array(column, dtype=float) for column in zip(*points, strict=True))
    return times, watts


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_row(path: Path, number: int, row: list[str]) -> tuple[float, float]:
    try:
        t, w = float(row[0]), float(row[1])
    except (IndexError, ValueError):
        raise DataError(
            f"{path}, data row {number}: expected `timestamp,watts` numbers, got {row!r}"
        ) from None
    if not (math.isfinite(t) and math.isfinite(w)):
        raise DataError(f"{path}, data row {number}: non-finite value in {row!r}")
    return t, w


def integrate_power(times: np.ndarray, watts: np.ndarray, t0: float, t1: float) -> float:
    """Energy (J) of the trace ``watts(times)`` over ``[t0, t1]``: trapezoid rule, with the power at
    the window edges interpolated linearly.

    Raises:
        DataError: the window is empty or not inside the trace.
    """
    if not t1 > t0:
        raise DataError(f"the energy window [{t0}, {t1}] is empty")
    if t0 < times[0] or t1 > times[-1]:
        raise DataError(
            f"the power log covers [{times[0]:.3f}, {times[-1]:.3f}] s but the window is "
            f"[{t0:.3f}, {t1:.3f}] s: check that the meter logged during the whole evaluation "
            "and that its timestamps are unix times on this machine's clock"
        )
    inside = (times > t0) & (times < t1)
    t = np.concatenate(([t0], times[inside], [t1]))
    w = np.concatenate(
        ([np.interp(t0, times, watts)], watts[inside], [np.interp(t1, times, watts)])
    )
    return float(np.sum((w[1:] + w[:-1]) / 2.0 * np.diff(t)))


class ExternalPowerLog(EnergyMeter):
    """A meter backed by an external ``timestamp,watts`` power log (measured, whole device).

    Args:
        csv_path: the log file; it must exist, and cover the measured windows when they are read.
        clock: the clock of the log's timestamps, in seconds (default ``time.time``).

    Raises:
        DataError: the file does not exist.
    """

    name = "external-power-log"
    is_estimate = False

    def __init__(self, csv_path: str | Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(csv_path)
        if not self.path.is_file():
            raise DataError(
                f"power log {self.path} does not exist; pass the CSV (`timestamp,watts`) "
                "written by the external power meter"
            )
        self._clock = clock

    def snapshot(self) -> Snapshot:
        return Snapshot(time_s=self._clock(), values=())

    def joules_between(self, start: Snapshot, end: Snapshot) -> float:
        return self.energy_between(start.time_s, end.time_s)

    def energy_between(self, t0: float, t1: float) -> float:
        """Energy (J) logged between unix times ``t0`` and ``t1`` (s)."""
        times, watts = read_power_log(self.path)
        return integrate_power(times, watts, t0, t1)

    @property
    def detail(self) -> str:
        return f"whole device, {self.path.name}"
