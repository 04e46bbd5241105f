"""An energy *estimate* from CPU load: codecarbon's process model, computed exactly per window.

Why not call codecarbon itself: codecarbon 3.3.2's ``OfflineEmissionsTracker`` (tracking_mode
"process") needs ~2 s to start, samples power from a background timer, and over 1-3 s windows of a
steady busy loop on this machine reported CPU energies of 4 J to 57 J for the same 4 J of modelled
work and RAM energy for twice the window — unusable for second-long windows. This module applies
the same model to the process's CPU-time counter instead, which integrates it exactly:

* CPU: ``P = TDP x (process CPU seconds / wall seconds) / logical CPUs``, so the energy of a window
  is ``TDP x delta(process CPU time) / logical CPUs``. The TDP comes from codecarbon's CPU table
  (``codecarbon/data/hardware/cpu_power.csv``, matched as codecarbon matches it) times the socket
  count; an unknown model gets codecarbon's fallback of 4 W per logical CPU.
* RAM: codecarbon's DIMM model applied to the process's RSS (5 W per estimated x86 DIMM, at least
  10 W; 1.5 W per ARM DIMM, at least 3 W).

Nothing here touches the network (codecarbon is not imported; only its data file is read).

Idle power under this model: the CPU part of an idle process is ~0 W (it spends no CPU time), and
the RAM part is the model's static figure (10 W on x86 for any RSS up to 16 GB). So
``measure_idle_power`` returns about that RAM figure, and subtracting it leaves the CPU-load part:
the per-sample figure is ``TDP / CPUs x CPU seconds per sample``. It is an estimate, tagged as one.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import math
import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from netzip_mlflow.evaluation.meters.base import EnergyMeter, Snapshot
from netzip_mlflow.evaluation.resources import ProcessSample, ProcessSampler
from netzip_mlflow.tracking.hardware import cpu_model_name

GENERIC_W_PER_LOGICAL_CPU = 4.0  # codecarbon.core.cpu.DEFAULT_POWER_PER_CORE
_CPU_TABLE = ("data", "hardware", "cpu_power.csv")
_GIB = 1024**3


@dataclass(frozen=True)
class Tdp:
    """The CPU power budget the estimate scales: ``watts`` for the whole machine, and its origin."""

    watts: float
    source: str


def codecarbon_cpu_table_path() -> Path | None:
    """Path of codecarbon's CPU TDP table, found without importing codecarbon; None if absent."""
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent.joinpath(*_CPU_TABLE)
    return path if path.is_file() else None


@functools.cache
def load_cpu_table(path: Path) -> dict[str, float]:
    """``{cpu name: TDP in W}`` from a ``Name,TDP`` CSV file; rows without a numeric TDP (the
    table has a few, e.g. ``27.29.5``) are skipped."""
    table: dict[str, float] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            try:
                table[row["Name"]] = float(row["TDP"])
            except (TypeError, ValueError):
                continue
    return table


def _tokens(text: str) -> frozenset[str]:
    return frozenset(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def _clean_model(model: str) -> str:
    """codecarbon's clean-up: drop ``(R)``, the ``CPU @ x.xxGHz`` suffix and the word ``CPU``."""
    model = model.replace("(R)", "")
    at = model.find(" CPU @ ")
    if at > 0:
        model = model[:at]
    model = model.replace(" CPU", "")
    return re.sub(r" @\s*\d+\.\d+GHz", "", model)


def match_cpu(model: str, names: list[str]) -> str | None:
    """The table entry codecarbon would pick for ``model``, or None.

    As codecarbon 3.3.2 does: an exact case-insensitive match of the raw then the cleaned name;
    else the one entry whose word set contains, or is contained in, the cleaned name's (rapidfuzz
    ``token_set_ratio == 100``); several such entries are ambiguous and give None.
    """
    by_lower = {name.lower(): name for name in names}
    for candidate in (model, _clean_model(model)):
        if candidate.lower() in by_lower:
            return by_lower[candidate.lower()]
    words = _tokens(_clean_model(model))
    if not words:
        return None
    hits = [name for name in names if (t := _tokens(name)) and (t <= words or words <= t)]
    return hits[0] if len(hits) == 1 else None


def count_sockets(cpuinfo: str | None = None) -> int:
    """Physical CPU packages: distinct ``physical id`` in ``/proc/cpuinfo`` (1 when unknown)."""
    try:
        text = cpuinfo if cpuinfo is not None else Path("/proc/cpuinfo").read_text()
    except OSError:
        return 1
    ids = set(re.findall(r"^physical id\s*:\s*(\d+)", text, flags=re.MULTILINE))
    return max(len(ids), 1)


def resolve_tdp(
    cpu_model: str | None = None,
    *,
    sockets: int | None = None,
    logical_cpus: int | None = None,
    table: dict[str, float] | None = None,
) -> Tdp:
    """The machine's CPU TDP as codecarbon's model sees it.

    Args:
        cpu_model: processor name (default: this machine's, from ``/proc/cpuinfo``).
        sockets: physical packages (default :func:`count_sockets`).
        logical_cpus: logical CPUs, for the fallback (default ``psutil.cpu_count()``).
        table: ``{name: TDP W}`` (default codecarbon's table; empty when codecarbon is absent).
    """
    model = cpu_model or cpu_model_name()
    sockets = sockets or count_sockets()
    logical = logical_cpus or psutil.cpu_count() or 1
    if table is None:
        path = codecarbon_cpu_table_path()
        table = load_cpu_table(path) if path is not None else {}
    match = match_cpu(model, list(table))
    if match is not None:
        socket_word = "socket" if sockets == 1 else "sockets"
        return Tdp(table[match] * sockets, f"{match}: {table[match]:g} W x {sockets} {socket_word}")
    watts = GENERIC_W_PER_LOGICAL_CPU * logical
    return Tdp(watts, f"generic 4 W x {logical} CPUs, {model} not in codecarbon's table")


def _estimate_dimms(total_gb: float) -> int:
    """codecarbon's DIMM-count heuristic for ``total_gb`` GiB of memory."""
    if total_gb <= 2:
        return 1
    if total_gb <= 32:
        return 2 if total_gb <= 16 else 4
    if total_gb <= 128:
        return 4 if total_gb <= 64 else 8
    for dimm_gb in (128, 64, 32, 16, 8, 4):
        if dimm_gb <= total_gb / 8:
            return min(math.ceil(total_gb / dimm_gb), 32)
    return 8


def ram_power_w(memory_bytes: int, arm: bool = False) -> float:
    """codecarbon's RAM power model (W) for ``memory_bytes`` of memory in use.

    Each estimated DIMM draws 5 W (x86) or 1.5 W (ARM); DIMMs 5-8 count 90 %, 9-16 80 %, beyond
    70 %; at least 10 W (x86) or 3 W (ARM).
    """
    per_dimm, floor = (1.5, 3.0) if arm else (5.0, 10.0)
    dimms = _estimate_dimms(memory_bytes / _GIB)
    weights = [1.0] * 4 + [0.9] * 4 + [0.8] * 8
    total = per_dimm * sum(weights[i] if i < len(weights) else 0.7 for i in range(dimms))
    return max(floor, total)


def _is_arm() -> bool:
    return any(tag in platform.machine().lower() for tag in ("arm", "aarch"))


class CpuLoadEstimateMeter(EnergyMeter):
    """Estimated energy of this process: CPU TDP x its CPU share, plus codecarbon's RAM model.

    Args:
        tdp: the CPU power budget (default :func:`resolve_tdp` for this machine).
        sampler: reads this process's CPU time and RSS (a fake in tests).
        clock: monotonic clock in seconds.
        logical_cpus: logical CPUs sharing the TDP (default ``psutil.cpu_count()``).
        arm: use the ARM RAM figures (default: detected from ``platform.machine()``).
    """

    name = "codecarbon-model"
    is_estimate = True

    def __init__(
        self,
        tdp: Tdp | None = None,
        *,
        sampler: Callable[[], ProcessSample] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        logical_cpus: int | None = None,
        arm: bool | None = None,
    ) -> None:
        self._cpus = logical_cpus or psutil.cpu_count() or 1
        self.tdp = tdp or resolve_tdp(logical_cpus=self._cpus)
        self._sampler = sampler or ProcessSampler()
        self._clock = clock
        self._arm = _is_arm() if arm is None else arm

    def snapshot(self) -> Snapshot:
        sample = self._sampler()
        ram_w = ram_power_w(sample.rss_bytes, self._arm)
        return Snapshot(time_s=self._clock(), values=(sample.cpu_time_s, ram_w))

    def joules_between(self, start: Snapshot, end: Snapshot) -> float:
        (cpu0, ram0), (cpu1, ram1) = start.values, end.values
        cpu_j = self.tdp.watts * max(cpu1 - cpu0, 0.0) / self._cpus
        ram_j = (ram0 + ram1) / 2.0 * (end.time_s - start.time_s)
        return cpu_j + ram_j

    @property
    def detail(self) -> str:
        return (
            f"TDP {self.tdp.watts:g} W [{self.tdp.source}] x process CPU share"
            " + codecarbon RAM model"
        )
