"""Global unstructured pruning (``prune_unstructured``): the paper's GUP_R (random) and GUP_L1.

All Conv and Linear weights compete in one global ranking
(``torch.nn.utils.prune.global_unstructured``); the lowest-ranked ``amount`` of them are set to
zero. Tensor shapes do not change, so the model is not faster on dense kernels; the zeros show in
``size/sparsity``, ``speed/macs_effective`` and the gzip size. Optional fine-tuning keeps the masks
applied (pruned weights stay zero), then the masks are made permanent with ``prune.remove``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.utils import prune

from netzip_mlflow.compression.common import train_for_technique
from netzip_mlflow.compression.result import CompressionResult
from netzip_mlflow.compression.spec import (
    AMOUNT,
    LR,
    OPTIMIZER,
    SEED,
    ParamSpec,
    ParamValue,
    TechniqueSpec,
    TrainingHooks,
    epochs_param,
)
from netzip_mlflow.errors import CompressionError

#: Layer types whose ``weight`` takes part in unstructured pruning.
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)

_METHODS: dict[str, type[prune.BasePruningMethod]] = {
    "random": prune.RandomUnstructured,
    "l1": prune.L1Unstructured,
}


def prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """``(module, "weight")`` for every Conv/Linear layer of ``model``, in module order."""
    return [(m, "weight") for m in model.modules() if isinstance(m, PRUNABLE_TYPES)]


def weight_sparsity(model: nn.Module) -> float:
    """Fraction (0-1) of zero entries over all Conv/Linear weights of ``model``."""
    weights = [getattr(m, name) for m, name in prunable_weights(model)]
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum().item()) for w in weights)
    return zeros / total if total else 0.0


def _prune_unstructured(
    model: nn.Module,
    params: dict[str, ParamValue],
    data: Iterable | None,
    example_inputs: torch.Tensor | None,
    hooks: TrainingHooks,
) -> CompressionResult:
    """Zero the ``amount`` least important Conv/Linear weights, fine-tune, make it permanent."""
    targets = prunable_weights(model)
    if not targets:
        raise CompressionError(
            "prune_unstructured: the model has no Conv or Linear layer to prune; "
            "use a quantization technique instead"
        )
    importance = str(params["importance"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(params["seed"]))
        prune.global_unstructured(
            targets, pruning_method=_METHODS[importance], amount=float(params["amount"])
        )
    info: dict[str, ParamValue] = {"importance": importance, "pruned_layers": len(targets)}
    info.update(
        train_for_technique(
            model, data, params, int(params["finetune_epochs"]), hooks, "prune_unstructured",
            "finetune",
        )
    )
    for module, name in targets:
        prune.remove(module, name)
    info["pruned_weights"] = sum(getattr(m, n).numel() for m, n in targets)
    info["sparsity_achieved"] = weight_sparsity(model)
    return CompressionResult(model.eval(), info)


PRUNE_UNSTRUCTURED = TechniqueSpec(
    name="prune_unstructured",
    description="global unstructured pruning of Conv/Linear weights (random = GUP_R, l1 = GUP_L1)",
    params=(
        AMOUNT,
        ParamSpec("importance", str, "l1", "how weights are ranked: random (GUP_R) or l1 (GUP_L1)",
                  choices=tuple(_METHODS)),
        epochs_param("finetune_epochs", 0, "fine-tuning epochs after pruning (masks kept)"),
        LR,
        OPTIMIZER,
        SEED,
    ),
    needs_data=False,
    needs_example_inputs=False,
    data_usage="fine-tuning batches, only when finetune_epochs > 0",
    apply=_prune_unstructured,
)

TECHNIQUES: tuple[TechniqueSpec, ...] = (PRUNE_UNSTRUCTURED,)
