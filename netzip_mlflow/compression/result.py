"""The value every compression technique returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

InfoValue = float | int | str


@dataclass(frozen=True)
class CompressionResult:
    """A compressed model and the facts about how it was compressed.

    Attributes:
        model: the compressed model, always a new object (the caller's model is never modified), in
            ``eval()`` mode.
        info: facts worth logging as MLflow params or tags (which layers changed, the ratio found,
            the sparsity achieved, how many calibration batches were used...). Values are plain
            numbers or strings; fractions are in 0-1, counts are plain integers.
        tags: MLflow tags (keys from :mod:`netzip_mlflow.tracking.keys`) a study sets on the
            recipe's run, e.g. ``netzip.latency.kernels`` for a binarized model.
    """

    model: nn.Module
    info: dict[str, InfoValue] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
