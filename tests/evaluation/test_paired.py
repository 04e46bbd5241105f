"""Paired (ABBA) timing on fake machines: drift cancels, the CI covers the truth at its rate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from netzip_mlflow.errors import ConfigError
from netzip_mlflow.evaluation.latency import LatencySettings, measure_latency
from netzip_mlflow.evaluation.meters.base import EnergyMeter, Snapshot
from netzip_mlflow.evaluation.paired import (
    ESTIMATE_NOTE,
    PairedSettings,
    RatioEstimate,
    measure_paired,
)
from netzip_mlflow.tracking import keys


class FakeMachine:
    """A clock that only moves when a model runs: each call costs ``cost x drift^calls x noise``.

    ``drift`` 1.01 makes every call 1 % slower than the one before, whichever model it runs.
    Each model draws ``watts`` while it runs, accumulated into a fake energy counter.
    """

    def __init__(self, drift: float = 1.0, noise: float = 0.0, seed: int = 0) -> None:
        self.now = 0.0
        self.joules = 0.0
        self.calls = 0
        self.drift = drift
        self.noise = noise
        self.rng = np.random.default_rng(seed)

    def clock(self) -> float:
        return self.now

    def model(self, cost_s: float, watts: float = 0.0):
        def call() -> None:
            factor = self.drift**self.calls
            if self.noise:
                factor *= float(np.exp(self.rng.normal(0.0, self.noise)))
            dt = cost_s * factor
            self.now += dt
            self.joules += dt * watts
            self.calls += 1

        return call


class FakeMeter(EnergyMeter):
    name = "fake-counter"
    is_estimate = False

    def __init__(self, machine: FakeMachine, estimate: bool = False) -> None:
        self.machine = machine
        self.is_estimate = estimate

    def snapshot(self) -> Snapshot:
        return Snapshot(self.machine.now, (self.machine.joules,))

    def joules_between(self, start: Snapshot, end: Snapshot) -> float:
        return end.values[0] - start.values[0]

    @property
    def detail(self) -> str:
        return "fake"


QUICK = PairedSettings(warmup_s=0.0, min_warmup=1, budget_s=1e9, min_rounds=20, target_ci_rel=0.02)


def test_drifting_machine_paired_is_exact_unpaired_is_biased():
    # Baseline 10 ms, compressed 4 ms: the true speedup is 2.5x.
    machine = FakeMachine(drift=1.01)
    base, comp = machine.model(0.010), machine.model(0.004)
    paired = measure_paired(comp, base, QUICK, clock=machine.clock, calls_per_block=1)
    assert paired.speedup.median == pytest.approx(2.5, rel=1e-9)
    assert paired.speedup.ci95_low <= 2.5 <= paired.speedup.ci95_high
    assert paired.speedup.rounds == QUICK.min_rounds  # every round agrees: target met at once

    machine = FakeMachine(drift=1.01)
    base, comp = machine.model(0.010), machine.model(0.004)
    settings = LatencySettings(warmup_s=0.0, min_warmup=0, min_samples=30, max_samples=30, budget_s=86_400)  # the bound: a day
    b = measure_latency(base, settings, clock=machine.clock)  # baseline first, as a study does
    c = measure_latency(comp, settings, clock=machine.clock)
    unpaired = b.median_ms / c.median_ms
    assert unpaired == pytest.approx(2.5 / 1.01**30, rel=1e-6)  # the 30 calls of drift between them
    assert abs(unpaired / 2.5 - 1) > 0.2


def test_linear_drift_cancels_to_second_order():
    machine = FakeMachine()
    state = {"n": 0}

    def model(cost):
        def call():
            machine.now += cost * (1 + 0.01 * state["n"])  # +1 % of the first call per call
            state["n"] += 1

        return call

    paired = measure_paired(model(0.004), model(0.010), QUICK, clock=machine.clock, calls_per_block=3)
    assert paired.speedup.median == pytest.approx(2.5, rel=2e-3)


@pytest.mark.parametrize("true_ratio", [1.0, 1.8])
def test_ci_covers_true_ratio_at_nominal_rate(true_ratio):
    covered = 0
    runs = 200
    for seed in range(runs):
        machine = FakeMachine(drift=1.001, noise=0.05, seed=seed)
        base, comp = machine.model(0.010), machine.model(0.010 / true_ratio)
        settings = PairedSettings(warmup_s=0.0, min_warmup=1, budget_s=1e9, min_rounds=25, max_rounds=25)
        result = measure_paired(comp, base, settings, clock=machine.clock, calls_per_block=2)
        covered += result.speedup.ci95_low <= true_ratio <= result.speedup.ci95_high
    assert covered / runs >= 0.90


def test_stops_at_target_or_budget():
    machine = FakeMachine(noise=0.2, seed=1)
    base, comp = machine.model(0.010), machine.model(0.005)
    tight = PairedSettings(warmup_s=0.0, min_warmup=1, budget_s=2.0, min_rounds=5, target_ci_rel=1e-6)
    result = measure_paired(comp, base, tight, clock=machine.clock, calls_per_block=1)
    assert not result.speedup.target_met
    # Rounds stop at the first one ending past the 2 s budget: each round takes about 30 ms.
    assert 2.0 / 0.035 < result.speedup.rounds < 2.0 / 0.025 + 2
    loose = PairedSettings(warmup_s=0.0, min_warmup=1, budget_s=1e9, min_rounds=5, target_ci_rel=0.5)
    result = measure_paired(comp, base, loose, clock=machine.clock, calls_per_block=1)
    assert result.speedup.target_met and 5 <= result.speedup.rounds < 20  # budget would allow ~1e11


def test_block_size_from_warmup():
    machine = FakeMachine()
    base, comp = machine.model(0.003), machine.model(0.001)
    settings = PairedSettings(warmup_s=0.0, min_warmup=2, block_s=0.02, budget_s=1e9, min_rounds=5)
    result = measure_paired(comp, base, settings, clock=machine.clock)
    assert result.calls_per_block == 10  # 20 ms / mean(1, 3) ms
    assert result.baseline_ms == pytest.approx(3.0)
    assert result.compressed_ms == pytest.approx(1.0)


def test_paired_energy_from_a_window_meter():
    # Compressed: 4 ms at 20 W above idle; baseline: 10 ms at 15 W; idle 5 W on top of both.
    machine = FakeMachine(drift=1.01)
    base, comp = machine.model(0.010, watts=20.0), machine.model(0.004, watts=25.0)
    meter = FakeMeter(machine)
    result = measure_paired(comp, base, QUICK, clock=machine.clock, meter=meter, idle_power_w=5.0, calls_per_block=2)
    true_efficiency = (0.010 * 15.0) / (0.004 * 20.0)
    assert result.efficiency is not None
    assert result.efficiency.median == pytest.approx(true_efficiency, rel=1e-9)
    assert "measured" in result.efficiency_note
    metrics = result.as_metrics()
    assert metrics[keys.RATIO_EFFICIENCY_PAIRED] == pytest.approx(true_efficiency)
    assert metrics[keys.RATIO_SPEEDUP_PAIRED] == pytest.approx(2.5)
    assert metrics[keys.PAIRED_ROUNDS] == QUICK.min_rounds


def test_estimate_meter_is_tagged_as_restating_latency():
    machine = FakeMachine()
    base, comp = machine.model(0.010, watts=10.0), machine.model(0.005, watts=10.0)
    result = measure_paired(comp, base, QUICK, clock=machine.clock, meter=FakeMeter(machine, estimate=True), calls_per_block=1)
    assert result.efficiency is not None and result.efficiency.median == pytest.approx(2.0)
    assert ESTIMATE_NOTE in result.as_tags()[keys.TAG_PAIRED_EFFICIENCY]


def test_energy_not_above_idle_is_not_reported():
    machine = FakeMachine()
    base, comp = machine.model(0.010, watts=1.0), machine.model(0.005, watts=1.0)
    result = measure_paired(comp, base, QUICK, clock=machine.clock, meter=FakeMeter(machine), idle_power_w=2.0, calls_per_block=1)
    assert result.efficiency is None
    assert keys.RATIO_EFFICIENCY_PAIRED not in result.as_metrics()
    assert "not above idle" in result.efficiency_note


def test_no_meter_no_efficiency():
    machine = FakeMachine()
    result = measure_paired(machine.model(0.002), machine.model(0.002), QUICK, clock=machine.clock, calls_per_block=1)
    assert result.efficiency is None
    assert result.speedup.median == pytest.approx(1.0)
    assert not result.speedup.measurable  # CI [1, 1] contains 1.0


def test_ratio_estimate_measurable():
    assert RatioEstimate(1.3, 1.2, 1.4, 20, 0.02).measurable
    assert not RatioEstimate(1.01, 0.98, 1.04, 20, 0.02).measurable
    assert math.isclose(RatioEstimate(2.0, 1.9, 2.1, 20, 0.02).ci95_rel, 0.05)  # half-width 0.1 over 2.0


@pytest.mark.parametrize("field", ["target_ci_rel", "budget_s", "block_s", "min_rounds"])
def test_bad_settings_name_the_field(field):
    with pytest.raises(ConfigError, match=f"paired.{field}"):
        PairedSettings(**{field: 0})
