"""distill: a narrower student of the teacher's architecture, trained on soft and hard targets."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from netzip_mlflow.compression.distill import distillation_loss
from netzip_mlflow.compression.registry import compress
from netzip_mlflow.errors import ConfigError


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_student_is_narrower_and_keeps_the_classifier(
    tiny_cnn: nn.Module, loader: DataLoader, batch: torch.Tensor, untouched: Callable
) -> None:
    check = untouched(tiny_cnn)
    epochs: list[tuple[int, dict[str, float]]] = []
    result = compress(
        tiny_cnn, "distill", {"width": 0.5, "epochs": 2}, data=loader, progress=False,
        on_epoch_end=lambda epoch, metrics: epochs.append((epoch, metrics)),
    )
    check()
    student = result.model
    assert type(student) is type(tiny_cnn)  # same family
    assert student.features[0].out_channels == 8 and student.features[3].out_channels == 16
    assert student.classifier.out_features == tiny_cnn.classifier.out_features
    assert result.info["params_student"] == _params(student) < _params(tiny_cnn)
    assert result.info["params_teacher"] == _params(tiny_cnn)
    assert [e for e, _ in epochs] == [0, 1]
    assert {"loss", "accuracy"} <= set(epochs[-1][1])
    assert result.info["distill_loss"] == epochs[-1][1]["loss"]
    assert not student.training
    with torch.no_grad():
        assert student(batch).shape == tiny_cnn(batch).shape


def test_narrow_student_inherits_the_teachers_channels(
    tiny_cnn: nn.Module, loader: DataLoader
) -> None:
    # with lr ~ 0 every filter of the student's first conv is one of the teacher's filters
    result = compress(tiny_cnn, "distill", {"width": 0.5, "epochs": 1, "lr": 1e-12},
                      data=loader, progress=False)
    teacher_rows = tiny_cnn.features[0].weight.detach()
    student_rows = result.model.features[0].weight.detach()
    matches = [
        [i for i, row in enumerate(teacher_rows) if torch.allclose(student_row, row, atol=1e-6)]
        for student_row in student_rows
    ]
    assert all(len(m) == 1 for m in matches)
    assert len({m[0] for m in matches}) == 8  # eight distinct teacher channels


def test_scratch_student_is_reinitialised(tiny_cnn: nn.Module, loader: DataLoader) -> None:
    result = compress(tiny_cnn, "distill", {"student": "scratch", "epochs": 1, "lr": 1e-12},
                      data=loader, progress=False)
    student_w = result.model.features[0].weight.detach()
    teacher_rows = tiny_cnn.features[0].weight.detach()
    assert not any(torch.allclose(student_w[0], row) for row in teacher_rows)


def test_distillation_loss_matches_the_formula() -> None:
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(4, 5, generator=generator)
    teacher = torch.randn(4, 5, generator=generator)
    targets = torch.tensor([0, 1, 2, 3])
    t, alpha = 3.0, 0.6
    p_teacher = torch.softmax(teacher / t, 1)
    kl = (p_teacher * (p_teacher.log() - torch.log_softmax(student / t, 1))).sum(1).mean()
    ce = -torch.log_softmax(student, 1)[torch.arange(4), targets].mean()
    expected = alpha * t * t * kl + (1 - alpha) * ce
    assert distillation_loss(student, targets, teacher, t, alpha).item() == pytest.approx(
        expected.item(), rel=1e-5
    )


def test_alpha_zero_is_plain_cross_entropy() -> None:
    student, teacher = torch.randn(3, 4), torch.randn(3, 4)
    targets = torch.tensor([1, 0, 3])
    assert torch.allclose(
        distillation_loss(student, targets, teacher, 2.0, 0.0),
        nn.functional.cross_entropy(student, targets),
    )


def test_distill_needs_training_data(tiny_cnn: nn.Module, batch: torch.Tensor) -> None:
    with pytest.raises(ConfigError) as err:
        compress(tiny_cnn, "distill", example_inputs=batch)
    assert err.value.field == "data"


@pytest.mark.parametrize(
    ("params", "field"),
    [({"width": 1.0}, "params.width"), ({"temperature": 0}, "params.temperature"),
     ({"alpha": 1.5}, "params.alpha"), ({"student": "bigger"}, "params.student")],
)
def test_bad_params_name_the_field(tiny_cnn: nn.Module, loader: DataLoader, params: dict,
                                   field: str) -> None:
    with pytest.raises(ConfigError) as err:
        compress(tiny_cnn, "distill", params, data=loader)
    assert err.value.field == field
