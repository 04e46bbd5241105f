"""Knowledge distillation (``distill``): train a narrower student of the same family as the model.

The teacher is the model given to ``compress`` (frozen, eval mode). The student is the teacher's own
architecture with ``width`` of the channels of every layer except the classifier, cut through
torch-pruning's dependency graph (:func:`netzip_mlflow.models.zoo.narrow`), so it is "the same
family" for any model torch-pruning can trace: a half-width ResNet18 for a ResNet18. ``student:
narrow`` starts from the teacher's channels of largest L2 norm (torch-pruning's group
magnitude: the conv, its BatchNorm and the next layer's inputs together); ``student: scratch``
re-initialises it.

The loss (Hinton et al., 2015) on every batch is::

    alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, y)

with ``T`` the temperature; ``T^2`` keeps the soft-target gradients on the scale of the hard ones.
Training uses the shared loop (:func:`netzip_mlflow.models.training.train`), reporting each epoch's
loss and training accuracy through ``on_epoch_end``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from netzip_mlflow.compression.common import reference_shape, run_checked
from netzip_mlflow.compression.result import CompressionResult
from netzip_mlflow.compression.spec import (
    LR,
    OPTIMIZER,
    SEED,
    ParamSpec,
    ParamValue,
    TechniqueSpec,
    TrainingHooks,
    epochs_param,
)
from netzip_mlflow.compression.structured import output_layer
from netzip_mlflow.errors import CompressionError
from netzip_mlflow.models.training import train
from netzip_mlflow.models.zoo import narrow, reinitialize


def distillation_loss(
    student: torch.Tensor,
    targets: torch.Tensor,
    teacher: torch.Tensor,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """Hinton's distillation loss (mean over the batch); see the module docstring."""
    soft = nn.functional.kl_div(
        nn.functional.log_softmax(student / temperature, dim=1),
        nn.functional.log_softmax(teacher / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    hard = nn.functional.cross_entropy(student, targets)
    return alpha * temperature**2 * soft + (1.0 - alpha) * hard


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_student(
    teacher: nn.Module, width: float, example_inputs: torch.Tensor, student: str, seed: int
) -> nn.Module:
    """A copy of ``teacher`` with ``width`` of its channels (classifier kept), see module doc.

    Raises:
        CompressionError: the teacher cannot be narrowed (torch-pruning cannot trace it).
    """
    import copy

    model = copy.deepcopy(teacher).eval()
    head_name, head = output_layer(model, example_inputs)
    try:
        narrow(model, width, example_inputs, keep=head)
    except Exception as exc:  # torch-pruning's tracing fails in many ways on user models
        raise CompressionError(
            f"distill: a narrower student cannot be cut from this model ({type(exc).__name__}: "
            f"{exc}); the model must be traceable by torch-pruning"
        ) from exc
    if student == "scratch":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            reinitialize(model)
    return model


def _distill(
    model: nn.Module,
    params: dict[str, ParamValue],
    data: Iterable | None,
    example_inputs: torch.Tensor | None,
    hooks: TrainingHooks,
) -> CompressionResult:
    """Train a ``width``-narrow student against the frozen teacher ``model``."""
    teacher = model.eval()
    expected = reference_shape(teacher, example_inputs)
    width, temperature, alpha = float(params["width"]), float(params["temperature"]), float(
        params["alpha"]
    )
    student = build_student(
        teacher, width, example_inputs, str(params["student"]), int(params["seed"])
    )
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    if _count(student) >= _count(teacher):
        raise CompressionError(
            f"distill: width {width} removed no parameter from this model; lower params.width"
        )

    def loss(outputs: torch.Tensor, targets: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
        return distillation_loss(outputs, targets, soft, temperature, alpha)

    history = train(
        student, data, int(params["epochs"]), float(params["lr"]),
        optimizer=str(params["optimizer"]), loss_fn=loss, teacher=teacher,
        on_epoch_end=hooks.on_epoch_end, progress=hooks.progress,
    )
    run_checked(student, example_inputs, expected, "distill")
    info: dict[str, ParamValue] = {
        "student": str(params["student"]),
        "width": width,
        "params_teacher": _count(teacher),
        "params_student": _count(student),
        "distill_epochs": len(history),
    }
    if history:  # empty only when rebuilding the student's structure (epochs set to 0)
        info.update({f"distill_{key}": value for key, value in history[-1].items()})
    return CompressionResult(student.eval(), info)


DISTILL = TechniqueSpec(
    name="distill",
    description="knowledge distillation into a narrower student of the same architecture",
    params=(
        ParamSpec("width", float, 0.5, "fraction (0-1) of the channels the student keeps in "
                  "every layer but the classifier", low=0.0, high=1.0, low_inclusive=False,
                  high_inclusive=False),
        ParamSpec("student", str, "narrow", "narrow: start from the teacher's largest channels; "
                  "scratch: random initialisation", choices=("narrow", "scratch")),
        ParamSpec("temperature", float, 4.0, "softmax temperature of the soft targets", low=0.0,
                  low_inclusive=False),
        ParamSpec("alpha", float, 0.7, "weight (0-1) of the distillation term; 1 - alpha weighs "
                  "the cross-entropy on labels", low=0.0, high=1.0),
        epochs_param("epochs", 2, "training epochs of the student", low=1),
        LR,
        OPTIMIZER,
        SEED,
    ),
    needs_data=True,
    needs_example_inputs=True,
    data_usage="training batches (inputs, class-index targets) for the student",
    apply=_distill,
)

TECHNIQUES: tuple[TechniqueSpec, ...] = (DISTILL,)
