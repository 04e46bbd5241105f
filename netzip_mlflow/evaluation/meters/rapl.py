"""RAPL energy counters: read directly from the powercap sysfs tree, or through pyRAPL.

Linux exposes Intel's (and, on recent kernels, AMD's) Running Average Power Limit counters as
``/sys/class/powercap/intel-rapl:<package>`` (``name`` = ``package-<n>``) with sub-zones
``intel-rapl:<package>:<k>`` (``core``, ``uncore``, ``dram``). Each zone has ``energy_uj``, a
cumulative microjoule counter that wraps to zero after ``max_energy_range_uj``.

:class:`RaplSysfsMeter` sums every package zone and every ``dram`` sub-zone. ``core`` and ``uncore``
are parts of the package figure and are left out; ``psys`` (the whole platform, which contains the
packages) is used only when there is no package zone, so nothing is counted twice. The
``intel-rapl-mmio`` zones mirror the package counters and are ignored.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from netzip_mlflow.errors import MeasurementError
from netzip_mlflow.evaluation.meters.base import EnergyMeter, MeterUnavailable, Snapshot

DEFAULT_POWERCAP_ROOT = Path("/sys/class/powercap")
_TOP_ZONE = re.compile(r"^intel-rapl:(\d+)$")
_SUB_ZONE = re.compile(r"^intel-rapl:(\d+):(\d+)$")
_PERMISSION_FIX = (
    "run as root, or grant read access with `sudo chmod -R a+r /sys/class/powercap/*` "
    "(reset at reboot)"
)
UJ_PER_J = 1e6


@dataclass(frozen=True)
class RaplZone:
    """One RAPL counter: label (``package-0``, ``dram-0``, ``psys``), file, wrap range (µJ)."""

    label: str
    energy_path: Path
    max_range_uj: int


def _read_uj(path: Path) -> int:
    """An integer microjoule value from a sysfs file."""
    return int(path.read_text(encoding="ascii").strip())


def _zone_name(zone_dir: Path) -> str:
    try:
        return zone_dir.joinpath("name").read_text(encoding="ascii").strip()
    except OSError:
        return ""


def discover_zones(root: Path) -> list[RaplZone]:
    """The zones to sum under a powercap ``root``: packages + their DRAM, or psys alone.

    Raises:
        MeterUnavailable: no usable zone, or a counter cannot be read (permissions).
    """
    if not root.is_dir():
        raise MeterUnavailable(f"no RAPL powercap tree at {root}")
    packages, drams, psys = [], [], []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        top, sub = _TOP_ZONE.match(entry.name), _SUB_ZONE.match(entry.name)
        name = _zone_name(entry) if top or sub else ""
        if top and name.startswith("package"):
            packages.append((f"package-{top.group(1)}", entry))
        elif top and name == "psys":
            psys.append(("psys", entry))
        elif sub and name == "dram":
            drams.append((f"dram-{sub.group(1)}", entry))
    chosen = packages + drams if packages else psys
    if not chosen:
        raise MeterUnavailable(f"no RAPL package or psys zone under {root}")
    return [_open_zone(label, zone_dir) for label, zone_dir in chosen]


def _open_zone(label: str, zone_dir: Path) -> RaplZone:
    energy = zone_dir / "energy_uj"
    try:
        _read_uj(energy)
        max_range = _read_uj(zone_dir / "max_energy_range_uj")
    except PermissionError as exc:
        raise MeterUnavailable(
            f"cannot read {energy}: permission denied; {_PERMISSION_FIX}"
        ) from exc
    except (OSError, ValueError) as exc:
        raise MeterUnavailable(f"cannot read RAPL zone {zone_dir}: {exc}") from exc
    if max_range <= 0:
        raise MeterUnavailable(f"RAPL zone {zone_dir} reports max_energy_range_uj={max_range}")
    return RaplZone(label=label, energy_path=energy, max_range_uj=max_range)


def wrapped_delta(before: int, after: int, max_range: int) -> int:
    """``after - before`` for a counter that wraps to 0 after ``max_range`` (at most one wrap)."""
    delta = after - before
    return delta + max_range if delta < 0 else delta


class RaplSysfsMeter(EnergyMeter):
    """CPU package (+ DRAM) energy from the RAPL counters in sysfs.

    Counters wrap after ``max_energy_range_uj`` (typically 262 kJ, about 40 minutes at 100 W); one
    wrap between two snapshots is corrected, so keep windows shorter than one range.

    Args:
        root: the powercap directory (a fake tree in tests).
        clock: monotonic clock in seconds.

    Raises:
        MeterUnavailable: no RAPL tree, or its counters are not readable by this user.
    """

    name = "rapl-sysfs"
    is_estimate = False

    def __init__(
        self,
        root: str | Path = DEFAULT_POWERCAP_ROOT,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.zones = discover_zones(Path(root))
        self._clock = clock

    def snapshot(self) -> Snapshot:
        values = tuple(_read_uj(zone.energy_path) for zone in self.zones)
        return Snapshot(time_s=self._clock(), values=values)

    def joules_between(self, start: Snapshot, end: Snapshot) -> float:
        microjoules = sum(
            wrapped_delta(a, b, zone.max_range_uj)
            for zone, a, b in zip(self.zones, start.values, end.values, strict=True)
        )
        return microjoules / UJ_PER_J

    @property
    def detail(self) -> str:
        labels = [zone.label for zone in self.zones]
        packages = [label.split("-")[1] for label in labels if label.startswith("package")]
        if not packages:
            return "psys"
        noun = "package" if len(packages) == 1 else "packages"
        dram = " + dram" if any(label.startswith("dram") for label in labels) else ""
        return f"{noun} {','.join(packages)}{dram}"


class PyRaplMeter(EnergyMeter):
    """CPU package (+ DRAM) energy through pyRAPL, for setups where only pyRAPL is configured.

    pyRAPL reads the same sysfs files at the fixed path ``/sys/class/powercap/intel-rapl``, so it
    works exactly where :class:`RaplSysfsMeter` does; it does not expose the wrap range, so a
    counter wrap inside a window is reported as an error rather than corrected.

    Raises:
        MeterUnavailable: pyRAPL is not installed, or its sensor (what ``pyRAPL.setup()`` builds)
            fails on this machine.
    """

    name = "pyrapl"
    is_estimate = False
    _PYRAPL_ROOT = DEFAULT_POWERCAP_ROOT / "intel-rapl"

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        if not self._PYRAPL_ROOT.is_dir():
            # pyRAPL cannot work without this directory; not importing it also avoids the
            # warnings its import logs.
            raise MeterUnavailable(f"pyRAPL needs {self._PYRAPL_ROOT}, which does not exist")
        try:
            import pyRAPL

            sensor = pyRAPL.Sensor()  # what pyRAPL.setup() builds, without its global state
            readings = sensor.energy()
        except Exception as exc:
            raise MeterUnavailable(f"pyRAPL cannot read RAPL here: {exc!r}") from exc
        self._sensor = sensor
        # pyRAPL lays readings out as (pkg 0, dram 0, pkg 1, dram 1, ...), -1 where absent.
        self._indices = tuple(i for i, value in enumerate(readings) if value >= 0)
        if not self._indices:
            raise MeterUnavailable("pyRAPL found no readable package or DRAM counter")
        self._clock = clock

    def snapshot(self) -> Snapshot:
        readings = self._sensor.energy()
        return Snapshot(time_s=self._clock(), values=tuple(readings[i] for i in self._indices))

    def joules_between(self, start: Snapshot, end: Snapshot) -> float:
        deltas = [b - a for a, b in zip(start.values, end.values, strict=True)]
        if any(d < 0 for d in deltas):
            raise MeasurementError(
                "a RAPL counter wrapped during the energy window and pyRAPL cannot correct it; "
                "use a shorter window or make /sys/class/powercap readable for the rapl-sysfs meter"
            )
        return sum(deltas) / UJ_PER_J

    @property
    def detail(self) -> str:
        packages = sorted({i // 2 for i in self._indices if i % 2 == 0})
        dram = " + dram" if any(i % 2 == 1 for i in self._indices) else ""
        return f"packages {','.join(map(str, packages))}{dram}"
