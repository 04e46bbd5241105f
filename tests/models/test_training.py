"""The shared classification training loop."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from netzip_mlflow.errors import ConfigError, DataError, ModelError
from netzip_mlflow.models.training import epoch_lr, first_inputs, iter_batches, train


def _blobs(n: int = 240, seed: int = 0) -> TensorDataset:
    """Three well-separated Gaussian classes in 2-D: learnable by a linear model."""
    generator = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0]])
    labels = torch.arange(n) % 3
    points = centers[labels] + torch.randn(n, 2, generator=generator)
    return TensorDataset(points, labels)


def _loader(shuffle: bool = True) -> DataLoader:
    return DataLoader(
        _blobs(), batch_size=16, shuffle=shuffle, generator=torch.Generator().manual_seed(0)
    )


def test_training_reduces_the_loss_and_reports_every_epoch() -> None:
    torch.manual_seed(0)
    model = nn.Linear(2, 3)
    calls: list[tuple[int, dict[str, float]]] = []
    history = train(
        model, _loader(), epochs=4, lr=0.05, progress=False,
        on_epoch_end=lambda epoch, metrics: calls.append((epoch, metrics)),
    )
    assert [epoch for epoch, _ in calls] == [0, 1, 2, 3]
    assert [metrics for _, metrics in calls] == history
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert history[-1]["accuracy"] > 0.95
    assert model.training


def test_adam_also_learns() -> None:
    torch.manual_seed(0)
    model = nn.Linear(2, 3)
    history = train(model, _loader(), epochs=3, lr=0.05, optimizer="adam", progress=False)
    assert history[-1]["loss"] < history[0]["loss"]


def test_epoch_metrics_are_the_per_sample_mean_loss_and_accuracy() -> None:
    # With a vanishing learning rate the model does not move, so the epoch's metrics must equal the
    # fixed model's cross-entropy and accuracy over the whole data set, computed independently.
    torch.manual_seed(0)
    model = nn.Linear(2, 3)
    data = _blobs(n=50)  # 50 = 3 x 16 + 2: the last batch is smaller, so weighting matters
    with torch.no_grad():
        logits = model(data.tensors[0])
        loss = nn.functional.cross_entropy(logits, data.tensors[1]).item()
        accuracy = (logits.argmax(1) == data.tensors[1]).float().mean().item()
    loader = DataLoader(data, batch_size=16)
    (metrics,) = train(
        model, loader, epochs=1, lr=1e-12, weight_decay=0.0, momentum=0.0, progress=False
    )
    assert metrics["loss"] == pytest.approx(loss, rel=1e-5)
    assert metrics["accuracy"] == pytest.approx(accuracy)


def test_no_accuracy_for_targets_that_are_not_class_indices() -> None:
    data = TensorDataset(torch.randn(8, 2), torch.randn(8, 1))
    (metrics,) = train(
        nn.Linear(2, 1), DataLoader(data, batch_size=4), 1, 0.01,
        loss_fn=nn.functional.mse_loss, progress=False,
    )
    assert metrics.keys() == {"loss"}


def test_cosine_schedule_closed_form() -> None:
    assert epoch_lr(0.1, 0, 4) == 0.1
    assert epoch_lr(0.1, 2, 4) == pytest.approx(0.05)
    assert epoch_lr(0.1, 1, 4) == pytest.approx(0.05 * (1 + math.cos(math.pi / 4)))
    assert epoch_lr(0.1, 3, 4, "constant") == 0.1


def test_zero_epochs_trains_nothing() -> None:
    model = nn.Linear(2, 3)
    before = model.weight.detach().clone()
    assert train(model, _loader(), epochs=0, lr=0.1, progress=False) == []
    assert torch.equal(model.weight, before)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"epochs": -1, "lr": 0.1}, "epochs"),
        ({"epochs": 1.5, "lr": 0.1}, "epochs"),
        ({"epochs": 1, "lr": 0.0}, "lr"),
        ({"epochs": 1, "lr": 0.1, "optimizer": "rmsprop"}, "optimizer"),
        ({"epochs": 1, "lr": 0.1, "schedule": "step"}, "schedule"),
    ],
)
def test_bad_settings_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        train(nn.Linear(2, 3), _loader(), progress=False, **kwargs)
    assert err.value.field == field


def test_empty_data_is_a_data_error() -> None:
    with pytest.raises(DataError, match="no batch"):
        train(nn.Linear(2, 3), [], epochs=1, lr=0.1, progress=False)


def test_malformed_batches_are_a_data_error() -> None:
    with pytest.raises(DataError, match="expected an \\(inputs, targets\\) pair"):
        train(nn.Linear(2, 3), [torch.randn(4, 2)], epochs=1, lr=0.1, progress=False)


def test_diverging_loss_is_reported_with_a_fix() -> None:
    def nan_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return outputs.sum() * float("nan")

    with pytest.raises(ModelError, match="lower the learning rate"):
        train(nn.Linear(2, 3), _loader(), epochs=1, lr=0.1, loss_fn=nan_loss, progress=False)


def test_a_map_style_dataset_is_batched() -> None:
    batches = list(iter_batches(_blobs(n=70)))
    assert [len(targets) for _, targets in batches] == [32, 32, 6]
    assert first_inputs(_blobs(n=70)).shape == (32, 2)
    assert list(iter_batches(_blobs(n=70), limit=1))[0][0].shape == (32, 2)
