"""Classification accuracy: predictions over the evaluation data and the accuracy metrics.

Top-k accuracy is computed from the model's top-k indices; precision, recall and F1 (macro and micro)
by torchmetrics from the top-1 predictions. ``accuracy/agreement`` compares top-1 predictions with the
baseline model's on the same samples.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torchmetrics.functional.classification import (
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)
from tqdm.auto import tqdm

from netzip_mlflow.data.batches import Batch, iter_checked
from netzip_mlflow.errors import DataError, ModelError
from netzip_mlflow.tracking import keys

TOP_K = 5


@dataclass(frozen=True)
class Predictions:
    """Labels and predictions of one model over the evaluation data.

    Attributes:
        labels: true class per sample, shape (N,).
        topk: the model's ``k`` best classes per sample, best first, shape (N, k).
        num_classes: the width of the model's output.
        confidence: softmax probability of the top-1 class per sample, shape (N,) (``None`` when
            not recorded, e.g. predictions saved by an older version).
    """

    labels: np.ndarray
    topk: np.ndarray
    num_classes: int
    confidence: np.ndarray | None = None

    @property
    def top1(self) -> np.ndarray:
        """Top-1 prediction per sample, shape (N,)."""
        return self.topk[:, 0]


def model_input(inputs: torch.Tensor, model: nn.Module, device: torch.device | str = "cpu") -> torch.Tensor:
    """Inputs moved to the model's device and cast to its floating dtype (fp16 models get fp16)."""
    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    return inputs.to(device=device, dtype=dtype if inputs.is_floating_point() else inputs.dtype)


def check_logits(logits: object, labels: torch.Tensor, batch_index: int = 0) -> torch.Tensor:
    """Check that a classifier's output is (N, classes) logits covering the labels."""
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ModelError(
            f"a classification model must return logits of shape (batch, classes); got {shape}. "
            "Wrap the model so its forward returns the class scores"
        )
    if logits.shape[0] != labels.shape[0]:
        raise ModelError(f"batch {batch_index}: model returned {logits.shape[0]} rows for {labels.shape[0]} inputs")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
        raise DataError(
            f"batch {batch_index}: labels range over {int(labels.min())}..{int(labels.max())} but the model "
            f"has {logits.shape[1]} outputs; check the dataset's classes against the model's num_classes"
        )
    return logits


@torch.inference_mode()
def predict(
    model: nn.Module, data: Iterable[Batch], device: torch.device | str = "cpu", progress: bool = False
) -> Predictions:
    """Run ``model`` over ``data`` and keep labels and the top-k classes of each sample.

    Raises:
        ModelError: the model fails on a batch, does not return (batch, classes) logits, or returns
            NaN/Inf for any sample (counted over the whole data, the first such batch named).
        DataError: labels out of range for the model's outputs, or no batches.
    """
    was_training = model.training
    model.eval()
    labels: list[np.ndarray] = []
    topk: list[np.ndarray] = []
    confidence: list[np.ndarray] = []
    num_classes = 0
    nonfinite, first_bad = 0, -1
    try:
        for i, (inputs, targets) in enumerate(tqdm(
                iter_checked(data),
                desc="predict",
                total=len(data) if hasattr(data, "__len__") else None,
                disable=not progress,
                leave=False,
            )):
            try:
                out = model(model_input(inputs, model, device))
            except RuntimeError as exc:
                raise ModelError(
                    f"the model failed on inputs of shape {tuple(inputs.shape)}: {exc}. "
                    "Check that the model's expected input shape matches the data"
                ) from exc
            logits = check_logits(out, targets, i).float()
            bad = int((~torch.isfinite(logits).all(dim=1)).sum())
            if bad and not nonfinite:
                first_bad = i
            nonfinite += bad
            num_classes = logits.shape[1]
            k = min(TOP_K, num_classes)
            topk.append(logits.topk(k, dim=1).indices.cpu().numpy())
            confidence.append(torch.softmax(logits, dim=1).amax(dim=1).cpu().numpy())
            labels.append(targets.cpu().numpy())
    finally:
        model.train(was_training)
    if not labels:
        raise DataError("the evaluation data yielded no batches; pass a non-empty dataset")
    if nonfinite:
        total = sum(len(batch) for batch in labels)
        raise ModelError(
            f"the model returns non-finite outputs (NaN/Inf) for {nonfinite} of {total} evaluation "
            f"samples, first in batch {first_bad}; its accuracy would be meaningless: the model is "
            "numerically broken (lower the learning rate, or try other parameters; fp16 may overflow)"
        )
    return Predictions(
        np.concatenate(labels).astype(np.int64), np.concatenate(topk), num_classes, np.concatenate(confidence)
    )


def accuracy_metrics(pred: Predictions) -> dict[str, float]:
    """Top-1, top-5 and macro/micro precision, recall and F1, as fractions in [0, 1]."""
    labels = torch.from_numpy(pred.labels)
    top1 = torch.from_numpy(pred.top1)
    n = pred.num_classes
    hits_topk = (pred.topk == pred.labels[:, None]).any(axis=1)
    metrics = {
        keys.TOP1: float((pred.top1 == pred.labels).mean()),
        keys.TOP5: float(hits_topk.mean()),
    }
    for average, suffix in (("macro", "macro"), ("micro", "micro")):
        kw = {"num_classes": n, "average": average}
        metrics[f"accuracy/precision_{suffix}"] = float(multiclass_precision(top1, labels, **kw))
        metrics[f"accuracy/recall_{suffix}"] = float(multiclass_recall(top1, labels, **kw))
        metrics[f"accuracy/f1_{suffix}"] = float(multiclass_f1_score(top1, labels, **kw))
    return metrics


def agreement(pred: Predictions, baseline: Predictions) -> float:
    """Fraction of samples whose top-1 prediction equals the baseline's (same samples, same order)."""
    if pred.labels.shape != baseline.labels.shape or not np.array_equal(pred.labels, baseline.labels):
        raise DataError(
            "the baseline's predictions were made on other samples than this evaluation's; "
            "evaluate both models on the same data in the same order"
        )
    return float((pred.top1 == baseline.top1).mean())
