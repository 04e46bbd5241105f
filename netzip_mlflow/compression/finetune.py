"""``finetune``: train the model further with the shared loop; compresses nothing on its own.

Meant as a pipeline step between a technique that damages accuracy (pruning) and one that freezes
the model (quantization): ``prune_structured -> finetune -> ptq``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from netzip_mlflow.compression.common import train_for_technique
from netzip_mlflow.compression.result import CompressionResult
from netzip_mlflow.compression.spec import (
    LR,
    OPTIMIZER,
    ParamValue,
    TechniqueSpec,
    TrainingHooks,
    epochs_param,
)


def _finetune(
    model: nn.Module,
    params: dict[str, ParamValue],
    data: Iterable | None,
    example_inputs: torch.Tensor | None,
    hooks: TrainingHooks,
) -> CompressionResult:
    """Train ``model`` for ``epochs`` epochs (cosine schedule from ``lr``)."""
    info = train_for_technique(
        model, data, params, int(params["epochs"]), hooks, "finetune", "finetune"
    )
    return CompressionResult(model.eval(), dict(info))


FINETUNE = TechniqueSpec(
    name="finetune",
    description="train further with the shared loop (no compression; a pipeline step)",
    params=(epochs_param("epochs", 1, "training epochs", low=1), LR, OPTIMIZER),
    needs_data=True,
    needs_example_inputs=False,
    data_usage="training batches (inputs, class-index targets)",
    apply=_finetune,
)

TECHNIQUES: tuple[TechniqueSpec, ...] = (FINETUNE,)
