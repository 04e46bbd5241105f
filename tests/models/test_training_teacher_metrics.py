"""The shared training loop: teacher outputs for distillation, system metrics into MLflow."""

from __future__ import annotations

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from netzip_mlflow.errors import ConfigError
from netzip_mlflow.models.training import log_system_metrics, train


def _data() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(24, 6, generator=generator)
    targets = torch.randint(0, 3, (24,), generator=generator)
    return DataLoader(TensorDataset(inputs, targets), batch_size=8)


def test_teacher_outputs_reach_the_loss() -> None:
    torch.manual_seed(0)
    student, teacher = nn.Linear(6, 3), nn.Linear(6, 3)
    seen: list[torch.Tensor] = []

    def loss(outputs: torch.Tensor, targets: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
        seen.append(soft)
        return nn.functional.mse_loss(outputs, soft)

    data = _data()
    history = train(student, data, 1, 0.1, loss_fn=loss, teacher=teacher, progress=False)
    inputs = torch.cat([x for x, _ in data])
    with torch.no_grad():
        assert torch.allclose(torch.cat(seen), teacher(inputs))
    assert all(not s.requires_grad for s in seen)
    assert "accuracy" in history[0] and not teacher.training


def test_teacher_without_a_three_argument_loss_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        train(nn.Linear(6, 3), _data(), 1, 0.1, teacher=nn.Linear(6, 3), progress=False)
    assert err.value.field == "loss_fn"


def test_no_active_run_means_no_monitor() -> None:
    assert mlflow.active_run() is None
    with log_system_metrics() as started:
        assert started is False


def test_system_metrics_are_logged_into_the_active_run(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment("system-metrics")
        with mlflow.start_run() as run:
            with log_system_metrics(interval_s=0.2) as started:
                assert started is True
                torch.randn(300, 300) @ torch.randn(300, 300)
                import time

                time.sleep(1.0)
        metrics = MlflowClient(uri).get_run(run.info.run_id).data.metrics
    finally:
        mlflow.set_tracking_uri(previous)
    assert "system/cpu_utilization_percentage" in metrics
    assert "system/system_memory_usage_megabytes" in metrics
