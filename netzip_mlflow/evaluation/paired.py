"""Paired timing: a compressed model and its baseline measured side by side, interleaved (ABBA).

Why: on a real machine the speed of the same model drifts by tens of percent between processes
started minutes apart (turbo, thermal state, other tenants; ``bench/README.md``), while a study
measures its baseline first and each recipe later. A ratio of two such independent medians carries
that drift. Here both models run in one window, in blocks of ``k`` calls in the order
``C B B C  C B B C ...`` (C compressed, B baseline), so whatever the machine does happens to both.

One *round* is one ``C B B C`` quad. Its speedup is the geometric mean of the two baseline blocks'
per-call time over that of the two compressed blocks::

    speedup_round = sqrt(tB1 * tB2) / sqrt(tC1 * tC2)

which cancels a drift that is exponential in time exactly (the quad is symmetric about its middle)
and a linear one to second order. ``ratio/speedup_paired`` is the median of the per-round ratios
and its 95 % CI the distribution-free order-statistic interval of that median
(:func:`~netzip_mlflow.evaluation.latency.median_ci95`). Rounds continue until the CI's half-width
is within ``target_ci_rel`` of the median or the budget ends.

With an energy meter that can attribute energy to windows, each block is also a meter window:
its energy above idle per call gives ``ratio/efficiency_paired`` the same way.

The protocol is generic over two callables that each run one batch (torch, ONNX Runtime, ...); the
clock and the meter are injectable so tests drive it with a fake machine.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from netzip_mlflow.errors import ConfigError
from netzip_mlflow.evaluation.latency import median_ci95
from netzip_mlflow.evaluation.meters.base import EnergyMeter
from netzip_mlflow.tracking import keys

Call = Callable[[], object]

ESTIMATE_NOTE = (
    "estimate: the meter models power x CPU time, so this ratio only restates the paired latency "
    "(CPU-time) ratio; it is not an energy measurement"
)
MEASURED_NOTE = "measured: energy above idle per call, attributed to each interleaved block"


@dataclass(frozen=True)
class PairedSettings:
    """How long and how precisely to pair.

    Attributes:
        target_ci_rel: stop once the 95 % CI half-width of the median speedup / median is at most this.
        budget_s: stop after this many seconds of rounds even if the target is not met.
        warmup_s: seconds of untimed alternating calls first (at least ``min_warmup`` of each model).
        min_warmup: fewest untimed calls of each model.
        block_s: aimed-at duration of one block of ``k`` calls, s (sets ``k`` from the warm-up).
        min_rounds: fewest rounds before the stopping rule is checked.
        max_rounds: most rounds.
    """

    target_ci_rel: float = 0.02
    budget_s: float = 10.0
    warmup_s: float = 0.5
    min_warmup: int = 3
    block_s: float = 0.02
    min_rounds: int = 20
    max_rounds: int = 100_000

    def __post_init__(self) -> None:
        checks = {
            "target_ci_rel": 0 < self.target_ci_rel < 1,
            "budget_s": self.budget_s > 0,
            "warmup_s": self.warmup_s >= 0,
            "min_warmup": self.min_warmup >= 1,
            "block_s": self.block_s > 0,
            "min_rounds": self.min_rounds >= 5,
            "max_rounds": self.max_rounds >= self.min_rounds,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"paired.{name}", f"invalid value {getattr(self, name)!r}")


@dataclass(frozen=True)
class RatioEstimate:
    """A paired ratio (> 1: the compressed model is better) with its 95 % CI."""

    median: float
    ci95_low: float
    ci95_high: float
    rounds: int
    target_ci_rel: float

    @property
    def ci95_rel(self) -> float:
        """Half-width of the CI over the median."""
        return (self.ci95_high - self.ci95_low) / 2.0 / self.median if self.median > 0 else math.inf

    @property
    def target_met(self) -> bool:
        """Whether the CI reached the precision target."""
        return self.ci95_rel <= self.target_ci_rel

    @property
    def measurable(self) -> bool:
        """False when the CI contains 1.0: no measurable change."""
        return not (self.ci95_low <= 1.0 <= self.ci95_high)

    @classmethod
    def from_rounds(cls, ratios: np.ndarray, target_ci_rel: float) -> RatioEstimate:
        """Median and CI of per-round ratios."""
        med, lo, hi = median_ci95(ratios)
        return cls(med, lo, hi, int(np.asarray(ratios).size), target_ci_rel)


@dataclass(frozen=True)
class PairedResult:
    """What one paired measurement found.

    Attributes:
        speedup: baseline time / compressed time per call, median over rounds, with CI.
        efficiency: baseline energy / compressed energy per call (None without a meter, or when a
            block's energy was not above idle).
        calls_per_block: ``k``.
        baseline_ms, compressed_ms: median per-call time over the blocks of each model, ms.
        efficiency_note: why efficiency is what it is (measured, estimate, or why absent).
    """

    speedup: RatioEstimate
    efficiency: RatioEstimate | None
    calls_per_block: int
    baseline_ms: float
    compressed_ms: float
    efficiency_note: str = ""
    round_speedups: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    def as_metrics(self) -> dict[str, float]:
        """The paired metrics under their contract keys."""
        out = {
            keys.RATIO_SPEEDUP_PAIRED: self.speedup.median,
            keys.RATIO_SPEEDUP_PAIRED_LOW: self.speedup.ci95_low,
            keys.RATIO_SPEEDUP_PAIRED_HIGH: self.speedup.ci95_high,
            keys.PAIRED_ROUNDS: float(self.speedup.rounds),
            keys.PAIRED_CALLS_PER_BLOCK: float(self.calls_per_block),
        }
        if self.efficiency is not None:
            out[keys.RATIO_EFFICIENCY_PAIRED] = self.efficiency.median
            out[keys.RATIO_EFFICIENCY_PAIRED_LOW] = self.efficiency.ci95_low
            out[keys.RATIO_EFFICIENCY_PAIRED_HIGH] = self.efficiency.ci95_high
        return out

    def as_tags(self) -> dict[str, str]:
        """Tags: the protocol, whether the target was met, what the efficiency ratio is."""
        return {
            keys.TAG_PAIRED: f"true (ABBA rounds, {self.calls_per_block} calls per block)",
            keys.TAG_PAIRED_TARGET_MET: str(self.speedup.target_met).lower(),
            keys.TAG_PAIRED_EFFICIENCY: self.efficiency_note,
        }


def _round_ratio(base: list[float], comp: list[float]) -> float:
    """sqrt(b1 b2) / sqrt(c1 c2); NaN unless all four are positive."""
    if min(*base, *comp) <= 0:
        return math.nan
    return math.sqrt(base[0] * base[1]) / math.sqrt(comp[0] * comp[1])


def _warm_up(
    compressed: Call, baseline: Call, settings: PairedSettings, clock: Callable[[], float], sync: Callable[[], None]
) -> float:
    """Alternate untimed calls; return the mean of the two models' median call times, s."""
    start = clock()
    seen: dict[int, list[float]] = {0: [], 1: []}
    while len(seen[0]) < settings.min_warmup or clock() - start < settings.warmup_s:
        for side, call in enumerate((compressed, baseline)):
            t0 = clock()
            call()
            sync()
            seen[side].append(clock() - t0)
    return (float(np.median(seen[0])) + float(np.median(seen[1]))) / 2.0


def measure_paired(
    compressed: Call,
    baseline: Call,
    settings: PairedSettings = PairedSettings(),
    clock: Callable[[], float] = time.perf_counter,
    synchronize: Callable[[], None] | None = None,
    meter: EnergyMeter | None = None,
    idle_power_w: float | None = None,
    calls_per_block: int | None = None,
) -> PairedResult:
    """Time ``compressed()`` against ``baseline()`` interleaved, by the protocol of this module.

    Args:
        compressed, baseline: each runs one batch through its model (inputs already prepared).
        settings: precision target, budget, warm-up and block length.
        clock: monotonic clock in seconds (a fake in tests).
        synchronize: called after each block before reading the clock (``torch.cuda.synchronize``).
        meter: an energy meter read around every block (None: no efficiency ratio).
        idle_power_w: idle power subtracted from each block's energy, W.
        calls_per_block: ``k``; by default ``block_s`` over the warm-up's mean call time.
    """
    sync = synchronize or (lambda: None)
    per_call = _warm_up(compressed, baseline, settings, clock, sync)
    k = calls_per_block or max(1, round(settings.block_s / per_call) if per_call > 0 else 1)
    calls = {"C": compressed, "B": baseline}
    speedups: list[float] = []
    efficiencies: list[float] = []
    times: dict[str, list[float]] = {"C": [], "B": []}
    t_begin = clock()
    while len(speedups) < settings.max_rounds:
        t_block: dict[str, list[float]] = {"C": [], "B": []}
        e_block: dict[str, list[float]] = {"C": [], "B": []}
        for side in "CBBC":
            snap0 = meter.snapshot() if meter is not None else None
            t0 = clock()
            for _ in range(k):
                calls[side]()
            sync()
            dt = clock() - t0
            if meter is not None and snap0 is not None:
                snap1 = meter.snapshot()
                joules = meter.joules_between(snap0, snap1)
                seconds = snap1.time_s - snap0.time_s
                e_block[side].append((joules - (idle_power_w or 0.0) * seconds) / k)
            t_block[side].append(dt / k)
            times[side].append(dt / k)
        speedups.append(_round_ratio(t_block["B"], t_block["C"]))
        if meter is not None:
            efficiencies.append(_round_ratio(e_block["B"], e_block["C"]))
        n = len(speedups)
        if n >= settings.min_rounds:
            estimate = RatioEstimate.from_rounds(np.asarray(speedups), settings.target_ci_rel)
            if estimate.target_met:
                break
        if clock() - t_begin >= settings.budget_s and n >= 5:
            break
    return _result(speedups, efficiencies, times, k, settings, meter)


def _result(
    speedups: list[float],
    efficiencies: list[float],
    times: dict[str, list[float]],
    k: int,
    settings: PairedSettings,
    meter: EnergyMeter | None,
) -> PairedResult:
    rounds = np.asarray(speedups, dtype=float)
    speedup = RatioEstimate.from_rounds(rounds, settings.target_ci_rel)
    efficiency: RatioEstimate | None = None
    if meter is None:
        note = "none (no energy meter readable on this machine)"
    elif not np.all(np.isfinite(efficiencies)):
        note = f"not reported: a block's energy on {meter.name} was not above idle (meter too coarse for the blocks)"
    else:
        efficiency = RatioEstimate.from_rounds(np.asarray(efficiencies), settings.target_ci_rel)
        note = f"{meter.name}: " + (ESTIMATE_NOTE if meter.is_estimate else MEASURED_NOTE)
    return PairedResult(
        speedup=speedup,
        efficiency=efficiency,
        calls_per_block=k,
        baseline_ms=float(np.median(times["B"])) * 1000.0,
        compressed_ms=float(np.median(times["C"])) * 1000.0,
        efficiency_note=note,
        round_speedups=rounds,
    )
