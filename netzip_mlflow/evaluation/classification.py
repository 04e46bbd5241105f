"""The ``classification`` task: top-k accuracy and per-sample predictions of a classifier.

The model returns (batch, classes) logits; the accuracy pass (:func:`~netzip_mlflow.evaluation.accuracy.predict`)
keeps labels and top-5 predictions of every sample, from which the agreement with a baseline and the
class-level impact are computed.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from netzip_mlflow.data.batches import as_batches, first_batch
from netzip_mlflow.evaluation.accuracy import accuracy_metrics, predict
from netzip_mlflow.evaluation.settings import EvaluationConfig
from netzip_mlflow.evaluation.tasks import AccuracyPass


class ClassificationTask:
    """Accuracy pass of a classifier (``task="classification"``)."""

    name = "classification"

    def configure(self, config: EvaluationConfig) -> EvaluationConfig:
        """Unchanged: the default performance metric is ``accuracy/top1``."""
        return config

    def accuracy_pass(self, model: nn.Module, data: Any, config: EvaluationConfig) -> AccuracyPass:
        """Top-1/top-5 accuracy and predictions over ``data`` (a Dataset or batches)."""
        batches = as_batches(data, config.eval_batch_size)
        predictions = predict(model, batches, config.device, progress=config.progress)
        inputs, _ = first_batch(batches)
        names = list(config.class_names) if config.class_names else [str(i) for i in range(predictions.num_classes)]
        return AccuracyPass(
            metrics=accuracy_metrics(predictions),
            first_inputs=inputs,
            samples=int(predictions.labels.size),
            class_names=names,
            predictions=predictions,
            batches=batches,
        )
