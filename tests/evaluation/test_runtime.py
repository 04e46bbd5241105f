"""Runtime measurement: isolation between models, threads, meters absent, the worker's environment."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from netzip_mlflow.evaluation import runtime
from netzip_mlflow.evaluation.latency import LatencySettings
from netzip_mlflow.evaluation.runtime import (
    RuntimeSettings,
    code_modules,
    measure_runtime,
    measure_runtime_isolated,
    worker_environment,
)
from netzip_mlflow.tracking import keys

BALLAST_MB = 200.0
QUICK = LatencySettings(warmup_s=0.0, min_warmup=2, budget_s=0.3, min_samples=10)


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()


def ballast_model() -> nn.Module:
    """The small model carrying a 200 MB (5e7 float32) buffer: its own footprint is known."""
    model = small_model()
    model.register_buffer("ballast", torch.ones(int(BALLAST_MB * 1e6 / 4)))
    return model


@pytest.fixture(scope="module")
def isolated_pair() -> tuple[runtime.RuntimeResult, runtime.RuntimeResult]:
    """The 200 MB model measured in its own process, then the small model right after it."""
    settings = RuntimeSettings(QUICK, threads=1, idle_s=0.1)
    sample = torch.randn(1, 16)
    big = measure_runtime_isolated(ballast_model(), sample, settings)
    small = measure_runtime_isolated(small_model(), sample, settings)
    return big, small


def test_the_200_mb_model_shows_in_its_own_footprint(
    isolated_pair: tuple[runtime.RuntimeResult, runtime.RuntimeResult],
) -> None:
    big, _ = isolated_pair
    assert big.metrics[keys.RAM_MODEL] == pytest.approx(BALLAST_MB, abs=40.0)
    assert big.metrics[keys.RAM_PEAK] > big.metrics[keys.RAM_MODEL]  # the worker's libraries too


def test_the_next_model_measured_does_not_carry_the_200_mb(
    isolated_pair: tuple[runtime.RuntimeResult, runtime.RuntimeResult],
) -> None:
    big, small = isolated_pair
    assert small.metrics[keys.RAM_MODEL] < 40.0
    assert big.metrics[keys.RAM_PEAK] - small.metrics[keys.RAM_PEAK] == pytest.approx(
        BALLAST_MB, abs=40.0
    )


def test_isolated_measurement_records_threads_timer_and_isolation(
    isolated_pair: tuple[runtime.RuntimeResult, runtime.RuntimeResult],
) -> None:
    _, small = isolated_pair
    assert small.tags[keys.TAG_RUNTIME_THREADS] == "1"
    assert small.tags[keys.TAG_RUNTIME_ISOLATED] == "true"
    assert small.tags[keys.TAG_LATENCY_TIMER] == "perf_counter"
    assert small.metrics[keys.LATENCY_MS] > 0
    assert 0.0 <= small.metrics[keys.CPU_UTIL] <= 100.0
    assert 0.0 <= small.metrics[keys.CPU_BACKGROUND] <= 100.0


def test_in_process_measurement_fixes_threads_and_restores_them() -> None:
    before = torch.get_num_threads()
    result = measure_runtime(small_model(), torch.randn(1, 16), RuntimeSettings(QUICK, threads=1, idle_s=0.0))
    assert result.tags[keys.TAG_RUNTIME_THREADS] == "1"
    assert result.tags[keys.TAG_RUNTIME_ISOLATED] == "false"
    assert torch.get_num_threads() == before
    assert keys.RAM_MODEL not in result.metrics  # no pre-model reading in this process
    assert result.metrics[keys.RAM_PEAK] > 0


def test_no_meter_means_no_energy_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "best_meter", lambda **_: None)
    result = measure_runtime(small_model(), torch.randn(1, 16), RuntimeSettings(QUICK, idle_s=0.1))
    assert not [key for key in result.metrics if key.startswith("energy/")]
    assert result.tags[keys.TAG_ENERGY_METER].startswith("none")


def test_without_idle_measurement_no_idle_power_is_invented(monkeypatch: pytest.MonkeyPatch) -> None:
    result = measure_runtime(small_model(), torch.randn(1, 16), RuntimeSettings(QUICK, idle_s=0.0))
    assert keys.IDLE_POWER not in result.metrics
    if not result.tags[keys.TAG_ENERGY_METER].startswith("none"):
        assert "idle power not subtracted" in result.tags[keys.TAG_ENERGY_METER]


def test_worker_environment_fixes_the_thread_pools() -> None:
    env = worker_environment(3, base={"PATH": "/bin", "OMP_NUM_THREADS": "16"})
    assert env == {
        "PATH": "/bin",
        "OMP_NUM_THREADS": "3",
        "MKL_NUM_THREADS": "3",
        "OPENBLAS_NUM_THREADS": "3",
    }


def test_code_modules_name_the_model_classes_modules() -> None:
    import torchvision

    model = torchvision.models.resnet18()
    assert code_modules(model) == [
        "torch.nn.modules.activation",
        "torch.nn.modules.batchnorm",
        "torch.nn.modules.container",
        "torch.nn.modules.conv",
        "torch.nn.modules.linear",
        "torch.nn.modules.pooling",
        "torchvision.models.resnet",
    ]


def test_torchvision_model_footprint_is_its_weights_not_torchvision() -> None:
    """Importing torchvision costs the worker ~170 MB: it happens before the baseline is read; the
    first forward faults in ~14 MB or more of libtorch's code pages, which are not the model's."""
    import torchvision

    model = torchvision.models.resnet18(num_classes=10).eval()
    weight_mb = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 1e6
    result = measure_runtime_isolated(
        model, torch.randn(1, 3, 32, 32), RuntimeSettings(QUICK, threads=1, idle_s=0.0)
    )
    assert weight_mb == pytest.approx(44.8, abs=0.2)
    # Reads weights + 2.5 MB on the dev machine. The margin is for activations and for freed
    # kernel workspaces glibc keeps in its heap, whose sizes follow the CPU's oneDNN code path;
    # counting torchvision's import would add ~170 MB.
    assert weight_mb - 2.0 < result.metrics[keys.RAM_MODEL] < weight_mb + 40.0


def test_isolated_worker_pairs_after_its_own_measurement():
    from netzip_mlflow.evaluation.paired import PairedSettings

    paired = PairedSettings(warmup_s=0.0, budget_s=0.3, min_rounds=5)
    settings = RuntimeSettings(QUICK, threads=1, idle_s=0.0, paired=paired)
    result = runtime.run_measurement(small_model(), torch.randn(1, 16), settings, True, ballast_model())
    m = result.metrics
    assert m[keys.RATIO_SPEEDUP_PAIRED_LOW] <= m[keys.RATIO_SPEEDUP_PAIRED] <= m[keys.RATIO_SPEEDUP_PAIRED_HIGH]
    assert result.tags[keys.TAG_PAIRED].startswith("true")
    # The 200 MB baseline is loaded after the small model's footprint was read: not counted in it.
    assert m[keys.RAM_MODEL] < BALLAST_MB / 4
    assert keys.TAG_PAIRED_EFFICIENCY in result.tags
