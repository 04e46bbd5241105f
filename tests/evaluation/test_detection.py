"""Detection metrics against hand computations, and the evaluator's detection branch."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from netzip_mlflow.data.detection import DetectionDataset
from netzip_mlflow.errors import DataError
from netzip_mlflow.evaluation.detection import PER_CLASS_TABLE, detection_metrics, match_at_iou
from netzip_mlflow.api import evaluate
from netzip_mlflow.evaluation.latency import LatencySettings
from netzip_mlflow.evaluation.settings import EvaluationConfig
from netzip_mlflow.tracking import keys


def _pred(boxes, labels, scores):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels), "scores": torch.tensor(scores)}


def _gt(boxes, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)}


def test_perfect_predictions_score_one():
    targets = [_gt([[0, 0, 10, 10], [20, 20, 40, 50]], [1, 2]), _gt([[5, 5, 30, 30]], [1])]
    preds = [_pred(t["boxes"].tolist(), t["labels"].tolist(), [0.9] * len(t["labels"])) for t in targets]
    out = detection_metrics(preds, targets, ["a", "b"])
    assert out.metrics[keys.MAP50] == pytest.approx(1.0)
    assert out.metrics[keys.MAP50_95] == pytest.approx(1.0)
    assert out.metrics[keys.PRECISION_IOU50] == 1.0
    assert out.metrics[keys.RECALL_IOU50] == 1.0
    table = out.per_class.set_index("class")
    assert table.loc["a", "gt_boxes"] == 2 and table.loc["b", "gt_boxes"] == 1
    assert table["ap50"].tolist() == pytest.approx([1.0, 1.0])


def test_shifted_box_gives_hand_computed_ap():
    # Ground truth [0, 0, 10, 10]; prediction shifted 1 px right: [1, 0, 11, 10].
    # intersection = 9 * 10 = 90, union = 100 + 100 - 90 = 110, IoU = 90 / 110 = 0.818.
    # COCO matches at IoU >= t for t in 0.50, 0.55, ..., 0.95: matched for 0.50..0.80 (7 thresholds,
    # AP = 1 each: the only detection is a true positive at recall 1), unmatched for 0.85..0.95
    # (AP = 0). mAP@0.5 = 1; mAP@0.5:0.95 = 7 / 10 = 0.7.
    out = detection_metrics([_pred([[1, 0, 11, 10]], [1], [0.9])], [_gt([[0, 0, 10, 10]], [1])])
    assert out.metrics[keys.MAP50] == pytest.approx(1.0)
    assert out.metrics[keys.MAP50_95] == pytest.approx(0.7)
    assert out.per_class["ap50_95"].tolist() == pytest.approx([0.7])


def test_missed_box_gives_101_point_interpolated_ap():
    # Two ground-truth boxes, one found exactly (score 0.9), the other missed. The precision/recall
    # curve is precision 1 up to recall 0.5 and nothing beyond. COCO samples the interpolated precision
    # at 101 recall points 0.00, 0.01, ..., 1.00: 51 points (0.00..0.50) have precision 1, 50 have 0.
    # AP = 51 / 101 at every IoU threshold. Precision at IoU 0.5 = 1/1, recall = 1/2.
    targets = [_gt([[0, 0, 10, 10], [50, 50, 70, 70]], [1, 1])]
    out = detection_metrics([_pred([[0, 0, 10, 10]], [1], [0.9])], targets)
    assert out.metrics[keys.MAP50] == pytest.approx(51 / 101)
    assert out.metrics[keys.MAP50_95] == pytest.approx(51 / 101)
    assert out.metrics[keys.PRECISION_IOU50] == 1.0
    assert out.metrics[keys.RECALL_IOU50] == 0.5


def test_precision_counts_wrong_class_and_low_scores():
    targets = [_gt([[0, 0, 10, 10], [50, 50, 70, 70]], [1, 2])]
    preds = [_pred([[0, 0, 10, 10], [50, 50, 70, 70], [20, 20, 30, 30]], [1, 1, 2], [0.9, 0.8, 0.3])]
    # kept (score >= 0.5): the first two; only the first matches (the second has the wrong class).
    assert match_at_iou(preds, targets) == (1, 2, 2)
    out = detection_metrics(preds, targets)
    assert out.metrics[keys.PRECISION_IOU50] == 0.5
    assert out.metrics[keys.RECALL_IOU50] == 0.5


def test_one_detection_matches_one_box_only():
    # Two detections on the same single box: one true positive, one duplicate false positive.
    preds = [_pred([[0, 0, 10, 10], [0, 0, 10, 9]], [1, 1], [0.9, 0.8])]
    assert match_at_iou(preds, [_gt([[0, 0, 10, 10]], [1])]) == (1, 2, 1)


def test_mismatched_lengths_raise():
    with pytest.raises(DataError, match="one per image"):
        detection_metrics([], [_gt([[0, 0, 1, 1]], [1])])


class FixedBoxDetector(nn.Module):
    """A conv (so the detector has MACs) and a fixed box per image: (10, 10, 40, 40), label 1."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)

    def forward(self, images):
        features = self.conv(images)
        score = torch.sigmoid(features.mean(dim=(1, 2, 3)) * 0 + 2.0)
        return [
            {"boxes": torch.tensor([[10.0, 10.0, 40.0, 40.0]]), "labels": torch.tensor([1]), "scores": s.reshape(1)}
            for s in score
        ]


def test_evaluate_detection_branch():
    images = torch.zeros((4, 3, 48, 48), dtype=torch.uint8)
    boxes = [[10, 10, 40, 40], [10, 10, 40, 40], [10, 10, 40, 40], [10, 10, 25, 40]]  # last: IoU 0.5
    targets = [_gt([b], [1]) for b in boxes]
    config = EvaluationConfig(
        isolate=False, idle_s=0.0, progress=False, eval_batch_size=2,
        latency=LatencySettings(warmup_s=0.0, min_warmup=1, budget_s=0.2, min_samples=5),
        class_names=("thing",),
    )
    report = evaluate(FixedBoxDetector(), DetectionDataset(images, targets), "detection", config, log_to_mlflow=False)
    # Last image: intersection 15*30 = 450, union 900, IoU 0.5 -> matched only at t = 0.50.
    # mAP@0.5 = 1; at t >= 0.55: 3 of 4 found at equal scores -> AP depends on ordering, so check bounds.
    assert report.metrics[keys.MAP50] == pytest.approx(1.0)
    assert 0.7 < report.metrics[keys.MAP50_95] < 1.0
    assert report.metrics[keys.MACS] == 48 * 48 * 4 * 3 * 9  # the conv: H*W*C_out*C_in*k*k
    assert report.metrics[keys.LATENCY_MS] > 0
    assert report.tags[keys.TAG_TASK] == "detection"
    assert report.predictions is None
    assert PER_CLASS_TABLE in report.tables and report.tables[PER_CLASS_TABLE]["class"].tolist() == ["thing"]
    compressed = evaluate(FixedBoxDetector(), DetectionDataset(images, targets), "detection", config,
                          baseline=report, log_to_mlflow=False)
    assert compressed.tags[keys.ratio_metric_tag("performance")] == keys.MAP50
    assert compressed.metrics[keys.RATIO_PERFORMANCE] == pytest.approx(1.0)
    assert math.isfinite(compressed.metrics[keys.OCS])
