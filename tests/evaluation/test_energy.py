"""Energy meters, the energy window and idle subtraction, checked against hand-computed joules."""

from __future__ import annotations

import importlib.util
import math
import random
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate

from netzip_mlflow.errors import ConfigError, DataError, MeasurementError
from netzip_mlflow.evaluation import energy
from netzip_mlflow.evaluation.energy import (
    CombinedMeter,
    CpuLoadEstimateMeter,
    EnergyMeter,
    EnergyResult,
    EnergyWindow,
    ExternalPowerLog,
    MeterUnavailable,
    NvmlMeter,
    PyRaplMeter,
    RaplSysfsMeter,
    best_meter,
    measure_idle_power,
)
from netzip_mlflow.evaluation.meters import estimate, nvml, rapl
from netzip_mlflow.evaluation.meters.base import Snapshot
from netzip_mlflow.evaluation.meters.external import integrate_power
from netzip_mlflow.evaluation.resources import ProcessSample
from netzip_mlflow.tracking import keys

HAS_CODECARBON = importlib.util.find_spec("codecarbon") is not None
REAL_PYRAPL_ROOT = Path("/sys/class/powercap/intel-rapl")


class FakeClock:
    """Returns the given times in order, then keeps returning the last one."""

    def __init__(self, *times: float) -> None:
        self.times = list(times)

    def __call__(self) -> float:
        return self.times.pop(0) if len(self.times) > 1 else self.times[0]


class CounterMeter(EnergyMeter):
    """A fake meter whose snapshots are (time, joules) pairs given in advance."""

    name = "fake"
    is_estimate = False

    def __init__(self, readings: list[tuple[float, float]], estimate: bool = False) -> None:
        self.readings = list(readings)
        self.is_estimate = estimate

    def snapshot(self) -> Snapshot:
        t, joules = self.readings.pop(0)
        return Snapshot(time_s=t, values=(joules,))

    def joules_between(self, start: Snapshot, end: Snapshot) -> float:
        return end.values[0] - start.values[0]

    @property
    def detail(self) -> str:
        return "test counter"


# --- RAPL from sysfs ---------------------------------------------------------------------------


def make_zone(root: Path, dirname: str, name: str, energy_uj: int, max_uj: int = 10**9) -> Path:
    zone = root / dirname
    zone.mkdir(parents=True)
    (zone / "name").write_text(name + "\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return zone


def set_energy(zone: Path, energy_uj: int) -> None:
    (zone / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def two_socket_tree(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "powercap"
    zones = {
        "pkg0": make_zone(root, "intel-rapl:0", "package-0", 1_000_000),
        "core0": make_zone(root, "intel-rapl:0:0", "core", 500_000),
        "dram0": make_zone(root, "intel-rapl:0:1", "dram", 200_000),
        "pkg1": make_zone(root, "intel-rapl:1", "package-1", 3_000_000),
        "mmio": make_zone(root, "intel-rapl-mmio:0", "package-0", 1_000_000),
    }
    (root / "intel-rapl").mkdir()  # the control-type directory, not a zone
    zones["root"] = root
    return zones


def test_rapl_sums_packages_and_dram_only(two_socket_tree: dict[str, Path]) -> None:
    meter = RaplSysfsMeter(two_socket_tree["root"], clock=FakeClock(10.0, 12.0))
    assert [zone.label for zone in meter.zones] == ["package-0", "package-1", "dram-0"]
    assert meter.describe() == "rapl-sysfs (measured; packages 0,1 + dram)"
    start = meter.snapshot()
    set_energy(two_socket_tree["pkg0"], 1_000_000 + 7_000_000)  # +7 J
    set_energy(two_socket_tree["pkg1"], 3_000_000 + 5_000_000)  # +5 J
    set_energy(two_socket_tree["dram0"], 200_000 + 1_500_000)  # +1.5 J
    set_energy(two_socket_tree["core0"], 99_000_000)  # inside the package: not added
    set_energy(two_socket_tree["mmio"], 99_000_000)  # mirror of package 0: not added
    end = meter.snapshot()
    assert end.time_s - start.time_s == 2.0
    assert meter.joules_between(start, end) == pytest.approx(13.5)


def test_rapl_counter_wrap_gives_positive_delta(tmp_path: Path) -> None:
    zone = make_zone(tmp_path, "intel-rapl:0", "package-0", 999_000, max_uj=1_000_000)
    meter = RaplSysfsMeter(tmp_path)
    start = meter.snapshot()
    set_energy(zone, 500)  # 1000 µJ to the top, then 500 µJ after the wrap
    assert meter.joules_between(start, meter.snapshot()) == pytest.approx(1500e-6)
    assert meter.describe() == "rapl-sysfs (measured; package 0)"


def test_wrapped_delta_without_wrap() -> None:
    assert rapl.wrapped_delta(100, 350, 1_000) == 250
    assert rapl.wrapped_delta(900, 100, 1_000) == 200


def test_rapl_uses_psys_only_without_packages(tmp_path: Path) -> None:
    make_zone(tmp_path / "a", "intel-rapl:0", "psys", 0)
    assert RaplSysfsMeter(tmp_path / "a").detail == "psys"
    make_zone(tmp_path / "b", "intel-rapl:0", "package-0", 0)
    make_zone(tmp_path / "b", "intel-rapl:1", "psys", 0)
    assert [z.label for z in RaplSysfsMeter(tmp_path / "b").zones] == ["package-0"]


def test_rapl_unavailable_without_tree_or_zones(tmp_path: Path) -> None:
    with pytest.raises(MeterUnavailable, match="no RAPL powercap tree"):
        RaplSysfsMeter(tmp_path / "missing")
    make_zone(tmp_path, "intel-rapl:0:0", "dram", 0)
    with pytest.raises(MeterUnavailable, match="no RAPL package"):
        RaplSysfsMeter(tmp_path)


def test_rapl_unreadable_counter_is_unavailable(
    two_socket_tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(path: Path) -> int:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(rapl, "_read_uj", denied)  # root can read anything: fake the denial
    with pytest.raises(MeterUnavailable, match=r"permission denied.*chmod"):
        RaplSysfsMeter(two_socket_tree["root"])


def test_best_meter_prefers_rapl(two_socket_tree: dict[str, Path]) -> None:
    meter = best_meter(powercap_root=two_socket_tree["root"])
    assert isinstance(meter, RaplSysfsMeter)


# --- pyRAPL ------------------------------------------------------------------------------------


@pytest.mark.skipif(REAL_PYRAPL_ROOT.exists(), reason="this machine has RAPL")
def test_pyrapl_unavailable_without_rapl() -> None:
    with pytest.raises(MeterUnavailable, match="pyRAPL needs"):
        PyRaplMeter()


def test_pyrapl_meter_with_fake_sensor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # (pkg 0, dram 0, pkg 1, dram 1) in µJ: the constructor's probe, start, end, then a wrap.
    probe = [1e6, -1, 5e6, -1]
    readings = iter([probe, probe, [4e6, -1, 6e6, -1], [1e6, -1, 0, -1]])

    class FakeSensor:
        def energy(self) -> list[float]:
            return next(readings)

    monkeypatch.setitem(sys.modules, "pyRAPL", types.SimpleNamespace(Sensor=FakeSensor))
    monkeypatch.setattr(PyRaplMeter, "_PYRAPL_ROOT", tmp_path)
    meter = PyRaplMeter(clock=FakeClock(0.0, 1.0, 2.0))
    assert meter.describe() == "pyrapl (measured; packages 0,1)"
    start = meter.snapshot()
    end = meter.snapshot()
    assert meter.joules_between(start, end) == pytest.approx(3.0 + 1.0)
    with pytest.raises(MeasurementError, match="wrapped"):
        meter.joules_between(end, meter.snapshot())


def test_pyrapl_setup_failure_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class BrokenSensor:
        def __init__(self) -> None:
            raise RuntimeError("no rapl")

    monkeypatch.setitem(sys.modules, "pyRAPL", types.SimpleNamespace(Sensor=BrokenSensor))
    monkeypatch.setattr(PyRaplMeter, "_PYRAPL_ROOT", tmp_path)
    with pytest.raises(MeterUnavailable, match="no rapl"):
        PyRaplMeter()


# --- NVML --------------------------------------------------------------------------------------


@pytest.mark.skipif(nvml._init_nvml() is not None, reason="this machine has an NVIDIA driver")
def test_nvml_unavailable_without_driver() -> None:
    with pytest.raises(MeterUnavailable, match="NVML"):
        NvmlMeter(0)


def test_nvml_meter_converts_millijoules(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = iter([0, 1_000_000, 1_250_500])  # the constructor's probe reads the first

    class NVMLError(Exception):
        pass

    fake = types.SimpleNamespace(
        NVMLError=NVMLError,
        nvmlDeviceGetTotalEnergyConsumption=lambda handle: next(counter) if handle == "h" else 0,
        nvmlDeviceGetName=lambda handle: "Fake GPU",
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(nvml, "nvml_handle", lambda device: "h")
    meter = NvmlMeter(0, clock=FakeClock(0.0, 1.0))
    assert meter.describe() == "nvml (measured; GPU 0 Fake GPU total-energy counter)"
    assert meter.joules_between(meter.snapshot(), meter.snapshot()) == pytest.approx(250.5)


def test_combined_meter_sums_parts() -> None:
    cpu = CounterMeter([(0.0, 10.0), (2.0, 30.0)], estimate=True)
    gpu = CounterMeter([(0.0, 100.0), (2.0, 400.0)])
    meter = CombinedMeter([cpu, gpu])
    assert meter.is_estimate
    assert meter.describe() == "fake (estimate; test counter) + fake (measured; test counter)"
    assert meter.joules_between(meter.snapshot(), meter.snapshot()) == pytest.approx(320.0)


# --- codecarbon-model estimate -----------------------------------------------------------------


class FakeSampler:
    def __init__(self, *samples: ProcessSample) -> None:
        self.samples = list(samples)

    def __call__(self) -> ProcessSample:
        return self.samples.pop(0)


def test_estimate_meter_hand_computed() -> None:
    gib = 1024**3
    meter = CpuLoadEstimateMeter(
        estimate.Tdp(100.0, "test"),
        sampler=FakeSampler(ProcessSample(gib, 10.0), ProcessSample(gib, 12.0)),
        clock=FakeClock(5.0, 6.0),
        logical_cpus=4,
        arm=False,
    )
    # CPU: 100 W x 2 CPU-seconds / 4 CPUs = 50 J; RAM: 10 W (x86 floor) x 1 s = 10 J.
    assert meter.joules_between(meter.snapshot(), meter.snapshot()) == pytest.approx(60.0)
    assert meter.is_estimate
    assert meter.describe().startswith("codecarbon-model (estimate; TDP 100 W [test]")


def test_estimate_idle_power_is_the_ram_model_only() -> None:
    gib = 1024**3
    clock = FakeClock(0.0, 2.0)
    meter = CpuLoadEstimateMeter(
        estimate.Tdp(100.0, "test"),
        sampler=FakeSampler(ProcessSample(gib, 3.0), ProcessSample(gib, 3.0)),
        clock=clock,
        logical_cpus=4,
        arm=True,
    )
    assert measure_idle_power(meter, seconds=2.0, sleep=lambda s: None) == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("gib", "arm", "watts"),
    [
        (1, False, 10.0),  # 1 DIMM: below the 2-DIMM x86 floor
        (1, True, 3.0),  # ARM floor
        (24, False, 20.0),  # 4 DIMMs x 5 W
        (100, False, 38.0),  # 8 DIMMs: 4 x 5 + 4 x 4.5
        (200, False, 58.0),  # 13 x 16 GB DIMMs: 4 x 5 + 4 x 4.5 + 5 x 4
        (200, True, 17.4),  # the same at 1.5 W per DIMM
    ],
)
def test_ram_power_model_hand_values(gib: int, arm: bool, watts: float) -> None:
    assert estimate.ram_power_w(gib * 1024**3, arm) == pytest.approx(watts)


@pytest.mark.skipif(not HAS_CODECARBON, reason="codecarbon not installed")
@pytest.mark.parametrize("gib", [0.5, 3, 12, 20, 48, 100, 300, 1000, 5000])
def test_ram_power_model_matches_codecarbon(gib: float) -> None:
    from codecarbon.external.ram import RAM

    for arm in (False, True):
        ram = RAM(tracking_mode="process")
        ram.is_arm_cpu = arm
        expected = ram._calculate_ram_power(gib)
        assert estimate.ram_power_w(int(gib * 1024**3), arm) == pytest.approx(expected)


TABLE = {
    "Intel Core i7-8700": 65.0,
    "Intel Core i7-8700K": 95.0,
    "Intel Xeon Gold 6248": 150.0,
    "AMD EPYC 7763": 280.0,
    "AMD EPYC 7543": 225.0,
}


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("intel core i7-8700k", "Intel Core i7-8700K"),  # exact, case-insensitive
        ("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", "Intel Core i7-8700"),  # cleaned + words
        ("AMD EPYC 7763 64-Core Processor", "AMD EPYC 7763"),  # table words inside the model's
        ("AMD EPYC", None),  # contained in two entries: ambiguous
        ("Cortex-A72", None),
    ],
)
def test_match_cpu_rules(model: str, expected: str | None) -> None:
    assert estimate.match_cpu(model, list(TABLE)) == expected


@pytest.mark.skipif(not HAS_CODECARBON, reason="codecarbon not installed")
def test_match_cpu_agrees_with_codecarbon() -> None:
    from codecarbon.core.cpu import TDP
    from codecarbon.input import DataSource

    frame = DataSource().get_cpu_power_data()
    path = estimate.codecarbon_cpu_table_path()
    assert path is not None
    names = list(estimate.load_cpu_table(path))
    models = [
        "AMD EPYC",
        "Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz",
        "Intel(R) Core(TM) i9-9900K CPU @ 3.60GHz",
        "AMD Ryzen 9 5950X 16-Core Processor",
        "12th Gen Intel(R) Core(TM) i7-1260P",
        *random.Random(0).sample(names, 60),
    ]
    reference = TDP.__new__(TDP)  # only its matching method, without probing this machine
    for model in models:
        assert estimate.match_cpu(model, names) == reference._get_matching_cpu(model, frame), model


def test_resolve_tdp_known_and_generic() -> None:
    known = estimate.resolve_tdp(
        "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", sockets=2, logical_cpus=80, table=TABLE
    )
    assert known.watts == 300.0
    assert known.source == "Intel Xeon Gold 6248: 150 W x 2 sockets"
    generic = estimate.resolve_tdp("Mystery CPU", sockets=1, logical_cpus=6, table=TABLE)
    assert generic.watts == 24.0
    assert "generic 4 W x 6 CPUs" in generic.source


def test_count_sockets() -> None:
    text = "processor : 0\nphysical id : 0\nprocessor : 1\nphysical id : 1\nprocessor : 2\n"
    assert estimate.count_sockets(text + "physical id : 1\n") == 2
    assert estimate.count_sockets("processor : 0\n") == 1


# --- external power log ------------------------------------------------------------------------


def write_log(path: Path, times: np.ndarray, watts: np.ndarray, header: bool = True) -> Path:
    lines = ["timestamp,watts"] if header else []
    lines += [f"{float(t)!r},{float(w)!r}" for t, w in zip(times, watts, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_external_constant_power(tmp_path: Path) -> None:
    times = 1_700_000_000.0 + np.arange(0.0, 4.01, 0.5)
    log = ExternalPowerLog(write_log(tmp_path / "p.csv", times, np.full(times.size, 5.0)))
    t0 = times[0] + 0.3
    assert log.energy_between(t0, t0 + 2.0) == pytest.approx(10.0)


def test_external_ramp_is_exact(tmp_path: Path) -> None:
    times = np.arange(0.0, 11.0)
    log = ExternalPowerLog(write_log(tmp_path / "ramp.csv", times, 2.0 * times, header=False))
    # ∫ 2t dt from 1.5 to 4.25 = 4.25² - 1.5²
    assert log.energy_between(1.5, 4.25) == pytest.approx(4.25**2 - 1.5**2)


def test_external_matches_scipy_on_a_random_trace() -> None:
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.uniform(0.05, 0.3, size=200))
    watts = rng.uniform(2.0, 9.0, size=200)
    t0, t1 = times[10] + 0.01, times[150] - 0.02
    expected, _ = integrate.quad(
        lambda t: np.interp(t, times, watts), t0, t1, points=times[11:150], limit=500
    )
    assert integrate_power(times, watts, t0, t1) == pytest.approx(expected, rel=1e-9)


def test_external_log_as_meter_in_a_window(tmp_path: Path) -> None:
    times = np.arange(100.0, 104.01, 0.25)
    path = write_log(tmp_path / "p.csv", times, np.full(times.size, 5.0))
    meter = best_meter(power_log=path)
    assert isinstance(meter, ExternalPowerLog)
    meter._clock = FakeClock(100.3, 102.3)
    with EnergyWindow(meter) as window:
        pass
    result = window.result(n_samples=4, idle_power_w=2.0)
    assert result.joules_total == pytest.approx(10.0)
    assert result.joules_per_sample == pytest.approx((10.0 - 2.0 * 2.0) / 4)
    assert result.tag_value() == "external-power-log (measured; whole device, p.csv)"


def test_external_log_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        ExternalPowerLog(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,watts\n1,5\n2,five\n")
    with pytest.raises(DataError, match="data row 2"):
        ExternalPowerLog(bad).energy_between(1.0, 2.0)
    short = tmp_path / "short.csv"
    short.write_text("1,5\n")
    with pytest.raises(DataError, match="at least two"):
        ExternalPowerLog(short).energy_between(1.0, 1.5)
    good = write_log(tmp_path / "good.csv", np.array([10.0, 20.0]), np.array([1.0, 1.0]))
    with pytest.raises(DataError, match="covers"):
        ExternalPowerLog(good).energy_between(5.0, 15.0)


# --- window, result, idle, best_meter ---------------------------------------------------------


def test_energy_result_subtracts_idle() -> None:
    meter = CounterMeter([(0.0, 100.0), (2.0, 130.0)])
    with EnergyWindow(meter) as window:
        pass
    result = window.result(n_samples=4, idle_power_w=10.0)
    assert (result.joules_total, result.seconds) == (30.0, 2.0)
    assert result.mean_power_w == pytest.approx(15.0)
    assert result.power_w == pytest.approx(5.0)  # 15 W - 10 W idle
    assert result.joules_per_sample == pytest.approx((30.0 - 10.0 * 2.0) / 4)
    assert result.as_metrics() == {
        keys.ENERGY_PER_SAMPLE: pytest.approx(2.5),
        keys.POWER: pytest.approx(5.0),
        keys.IDLE_POWER: 10.0,
    }
    assert result.tag_value() == "fake (measured; test counter)"


def test_energy_not_above_idle_is_not_reported() -> None:
    result = EnergyResult("m (measured; x)", False, 15.0, 2.0, 3, idle_power_w=10.0)
    assert not result.above_idle
    assert result.as_metrics() == {keys.IDLE_POWER: 10.0}
    assert "not reported" in result.tag_value()


def test_energy_without_idle_says_so() -> None:
    result = EnergyResult("m (measured; x)", False, 8.0, 2.0, 4, idle_power_w=None)
    assert result.as_metrics() == {keys.ENERGY_PER_SAMPLE: 2.0, keys.POWER: 4.0}
    assert "idle power not subtracted" in result.tag_value()


def test_window_misuse_raises() -> None:
    window = EnergyWindow(CounterMeter([(0.0, 0.0), (1.0, 1.0)]))
    with pytest.raises(MeasurementError, match="not closed"):
        window.result(n_samples=1)
    with window:
        pass
    with pytest.raises(ConfigError, match="n_samples"):
        window.result(n_samples=0)
    with pytest.raises(ConfigError, match="idle_seconds"):
        measure_idle_power(CounterMeter([]), seconds=0.0)


def test_measure_idle_power_divides_by_meter_time() -> None:
    slept: list[float] = []
    meter = CounterMeter([(0.0, 50.0), (1.25, 60.0)])
    assert measure_idle_power(meter, seconds=1.25, sleep=slept.append) == pytest.approx(8.0)
    assert slept == [1.25]


def test_best_meter_falls_back_to_estimate_or_none(tmp_path: Path) -> None:
    if REAL_PYRAPL_ROOT.exists():
        pytest.skip("this machine has RAPL: pyRAPL would be chosen")
    meter = best_meter(powercap_root=tmp_path)
    assert isinstance(meter, CpuLoadEstimateMeter)
    assert "estimate" in meter.describe()
    assert best_meter(powercap_root=tmp_path, allow_estimate=False) is None


def test_best_meter_adds_nvml_for_a_cuda_model(
    two_socket_tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    class FakeNvml(CounterMeter):
        name = "nvml"

        def __init__(self, device: int) -> None:
            super().__init__([])

    monkeypatch.setattr(energy, "NvmlMeter", FakeNvml)
    meter = best_meter(cuda_device=0, powercap_root=two_socket_tree["root"])
    assert isinstance(meter, CombinedMeter)
    assert [part.name for part in meter.parts] == ["rapl-sysfs", "nvml"]


def test_best_meter_real_machine_window_is_finite() -> None:
    meter = best_meter()
    if meter is None:
        pytest.skip("no energy meter on this machine")
    with EnergyWindow(meter) as window:
        sum(i * i for i in range(200_000))
    result = window.result(n_samples=1)
    assert math.isfinite(result.joules_total) and result.joules_total >= 0
