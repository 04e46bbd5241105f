"""Accuracy metrics against scikit-learn on the same predictions."""

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, top_k_accuracy_score
from torch import nn

from netzip_mlflow.errors import DataError, ModelError
from netzip_mlflow.evaluation.accuracy import Predictions, accuracy_metrics, agreement, predict
from netzip_mlflow.tracking import keys


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    n, c = 500, 7
    labels = rng.integers(0, c, n)
    scores = rng.normal(size=(n, c))
    scores[np.arange(n), labels] += 1.0  # a better-than-chance classifier
    topk = np.argsort(-scores, axis=1)[:, :5]
    return labels, scores, Predictions(labels, topk, c)


def test_top1_top5_match_sklearn(scored):
    labels, scores, pred = scored
    m = accuracy_metrics(pred)
    assert m[keys.TOP1] == pytest.approx(accuracy_score(labels, scores.argmax(1)))
    assert m[keys.TOP5] == pytest.approx(top_k_accuracy_score(labels, scores, k=5, labels=range(7)))


@pytest.mark.parametrize("average", ["macro", "micro"])
def test_precision_recall_f1_match_sklearn(scored, average):
    labels, scores, pred = scored
    m = accuracy_metrics(pred)
    y = scores.argmax(1)
    assert m[f"accuracy/precision_{average}"] == pytest.approx(precision_score(labels, y, average=average, zero_division=0))
    assert m[f"accuracy/recall_{average}"] == pytest.approx(recall_score(labels, y, average=average, zero_division=0))
    assert m[f"accuracy/f1_{average}"] == pytest.approx(f1_score(labels, y, average=average, zero_division=0))


def test_agreement_counts_equal_top1():
    labels = np.array([0, 1, 2, 3])
    a = Predictions(labels, np.array([[0], [1], [2], [0]]), 4)
    b = Predictions(labels, np.array([[0], [2], [2], [1]]), 4)
    assert agreement(a, b) == 0.5
    other = Predictions(np.array([3, 2, 1, 0]), np.array([[0], [1], [2], [0]]), 4)
    with pytest.raises(DataError, match="same data"):
        agreement(a, other)


def test_predict_runs_model_over_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x = torch.randn(10, 1, 2, 2)
    y = torch.randint(0, 3, (10,))
    pred = predict(model, [(x[:6], y[:6]), (x[6:], y[6:])])
    assert pred.num_classes == 3 and pred.topk.shape == (10, 3)
    assert np.array_equal(pred.top1, model(x).argmax(1).numpy())


def test_predict_rejects_labels_beyond_outputs():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(DataError, match="labels range over 0..5"):
        predict(model, [(torch.randn(2, 1, 2, 2), torch.tensor([0, 5]))])


def test_predict_rejects_wrong_input_shape_and_output():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(ModelError, match="input shape"):
        predict(model, [(torch.randn(2, 1, 3, 3), torch.tensor([0, 1]))])
    with pytest.raises(ModelError, match="logits of shape"):
        predict(nn.Identity(), [(torch.randn(2, 1, 2, 2), torch.tensor([0, 1]))])


class NanForLargeInputs(nn.Module):
    """Logits that are NaN for every input whose mean is above 5, finite otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x.flatten(1))
        return torch.where(x.flatten(1).mean(1, keepdim=True) > 5, torch.nan, out)


def test_predict_rejects_nan_outputs_anywhere_in_the_data():
    """The pre-flight check sees one batch; NaNs that appear only later are caught and counted."""
    y = torch.tensor([0, 1, 2, 0])
    clean, poisoned = torch.zeros(4, 1, 2, 2), torch.zeros(4, 1, 2, 2)
    poisoned[1:3] = 10.0  # two of the four samples of the third batch
    with pytest.raises(ModelError, match=r"NaN/Inf\) for 2 of 12 evaluation samples, first in batch 2"):
        predict(NanForLargeInputs(), [(clean, y), (clean, y), (poisoned, y)])
    assert predict(NanForLargeInputs(), [(clean, y)]).topk.shape == (4, 3)


def test_macro_averages_run_over_classes_in_labels_or_predictions():
    # 5 classes; class 2 only predicted, classes 3 and 4 in neither: they are left out (sklearn's
    # default labels = union of labels and predictions), not averaged in as zeros.
    labels, top1 = np.array([0, 0, 1, 1, 0]), np.array([0, 2, 1, 1, 1])
    m = accuracy_metrics(Predictions(labels, top1[:, None], 5))
    assert m[keys.RECALL_MACRO] == pytest.approx(recall_score(labels, top1, average="macro", zero_division=0))
    assert m[keys.RECALL_MACRO] == pytest.approx((1 / 3 + 1 + 0) / 3)  # class 2: no sample, recall 0
    assert m[keys.PRECISION_MACRO] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert m[keys.F1_MACRO] == pytest.approx(f1_score(labels, top1, average="macro", zero_division=0))
