"""Object-detection evaluation: mAP, precision/recall at IoU 0.5, per-class AP, and the evaluator branch.

``detection_metrics`` computes COCO mAP with torchmetrics' ``MeanAveragePrecision`` (``iou_type="bbox"``,
backend ``pycocotools``; 101-point interpolated AP, at most 100 detections per image, all object areas):

* ``accuracy/map50``: mAP at IoU 0.5; ``accuracy/map50_95``: mAP averaged over IoU 0.50:0.05:0.95.
* ``accuracy/precision_iou50`` and ``accuracy/recall_iou50``: at one operating point. Detections with
  score >= ``score_threshold`` (default 0.5) are matched greedily, highest score first, to the unmatched
  ground-truth box of the same class and image with the highest IoU, if that IoU is >= 0.5 (COCO's
  matching rule). precision = matched detections / kept detections; recall = matched ground-truth boxes /
  all ground-truth boxes; both pooled over every class and image (micro). With no kept detection
  precision is 0, with no ground truth recall is 0.
* a per-class table: AP@0.5 and AP@0.5:0.95 per class (from the same COCO evaluation), with the
  number of ground-truth boxes and of kept detections.

:class:`DetectionTask` is the accuracy pass of ``nz.evaluate(model, data, task="detection")``: the model is
timed on a real batch of images and its eval-mode forward includes its own postprocessing (box decoding,
NMS), so latency, energy and CPU are per image *including* postprocessing; MACs and CHATS are counted
over that same whole forward pass.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset
from torchmetrics.detection import MeanAveragePrecision
from torchvision.ops import box_iou
from tqdm.auto import tqdm

from netzip_mlflow.data.batches import as_batches
from netzip_mlflow.data.detection import Target, detection_collate
from netzip_mlflow.errors import ConfigError, DataError, ModelError
from netzip_mlflow.evaluation.accuracy import model_input
from netzip_mlflow.evaluation.settings import EvaluationConfig
from netzip_mlflow.evaluation.tasks import AccuracyPass
from netzip_mlflow.tracking import keys

log = logging.getLogger(__name__)

#: COCO backend of torchmetrics' MeanAveragePrecision (the ``[detection]`` extra; locked in constraints.txt).
MAP_BACKEND = "pycocotools"
#: IoU at which precision and recall are reported.
IOU_MATCH = 0.5
#: Detections below this score are dropped before precision and recall.
SCORE_THRESHOLD = 0.5
#: Name of the per-class AP table in ``EvaluationReport.tables`` (logged as ``detection/<name>.csv``).
PER_CLASS_TABLE = "detection/per_class_ap"

Prediction = dict[str, torch.Tensor]


@dataclass(frozen=True)
class DetectionMetrics:
    """What :func:`detection_metrics` measured.

    Attributes:
        metrics: ``accuracy/map50``, ``accuracy/map50_95``, ``accuracy/precision_iou50``,
            ``accuracy/recall_iou50`` (fractions 0-1).
        per_class: one row per class: ``label``, ``class``, ``ap50``, ``ap50_95`` (NaN for a class
            with neither ground truth nor detections), ``gt_boxes``, ``detections`` (score >= threshold).
        omitted: why metrics are left out (empty when none is): with no ground-truth box in the
            data, mAP and recall are undefined (COCO reports -1), so they are not logged as 0.
    """

    metrics: dict[str, float]
    per_class: pd.DataFrame
    omitted: str = ""


NO_GROUND_TRUTH = (
    "no ground-truth boxes in the evaluation data: mAP and recall are undefined (COCO reports -1), "
    "so they are not logged"
)


def _check_pairs(predictions: Sequence[Prediction], targets: Sequence[Target]) -> None:
    if len(predictions) != len(targets):
        raise DataError(f"got {len(predictions)} predictions for {len(targets)} targets; give one per image")
    for i, (pred, target) in enumerate(zip(predictions, targets)):
        for name, need in ((("pred", pred), ("boxes", "scores", "labels")), (("target", target), ("boxes", "labels"))):
            what, item = name
            if not isinstance(item, Mapping) or any(k not in item for k in need):
                raise DataError(f"image {i}: the {what} must be a dict with {', '.join(need)}")


def match_at_iou(
    predictions: Sequence[Prediction],
    targets: Sequence[Target],
    iou_threshold: float = IOU_MATCH,
    score_threshold: float = SCORE_THRESHOLD,
) -> tuple[int, int, int]:
    """``(matched detections, kept detections, ground-truth boxes)`` by COCO's greedy matching.

    Per image and class, detections with score >= ``score_threshold`` are taken highest score first;
    each takes the unmatched ground-truth box with the highest IoU if that IoU is >= ``iou_threshold``.
    """
    tp = kept = gts = 0
    for pred, target in zip(predictions, targets):
        keep = pred["scores"] >= score_threshold
        boxes, scores, labels = pred["boxes"][keep], pred["scores"][keep], pred["labels"][keep]
        kept += int(keep.sum())
        gts += int(target["labels"].numel())
        for label in torch.unique(labels):
            gt = target["boxes"][target["labels"] == label].float()
            mine = labels == label
            if gt.numel() == 0:
                continue
            order = torch.argsort(scores[mine], descending=True, stable=True)
            ious = box_iou(boxes[mine][order].float(), gt)
            taken = torch.zeros(gt.shape[0], dtype=torch.bool)
            for row in ious:
                row = row.masked_fill(taken, -1.0)
                best = int(row.argmax())
                if row[best] >= iou_threshold:
                    taken[best] = True
                    tp += 1
    return tp, kept, gts


def _ap50_per_class(precision: torch.Tensor) -> torch.Tensor:
    """AP@0.5 per class from COCO's precision array ``(T, R, K, A, M)`` (area all, most detections)."""
    p = precision[0, :, :, 0, -1]  # (recall thresholds, classes)
    valid = p > -1
    sums = torch.where(valid, p, torch.zeros_like(p)).sum(dim=0)
    counts = valid.sum(dim=0)
    return torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, float("nan")))


def detection_metrics(
    predictions: Sequence[Prediction],
    targets: Sequence[Target],
    class_names: Sequence[str] | None = None,
    score_threshold: float = SCORE_THRESHOLD,
) -> DetectionMetrics:
    """mAP@0.5, mAP@0.5:0.95, precision and recall at IoU 0.5 and a per-class AP table.

    Args:
        predictions: per image ``{"boxes" (N, 4) x1y1x2y2, "scores" (N,), "labels" (N,)}``.
        targets: per image ``{"boxes" (K, 4) x1y1x2y2, "labels" (K,)}``.
        class_names: ``class_names[i]`` names label ``i + 1`` (label 0 is background).
        score_threshold: detections below this score are not counted in precision and recall
            (mAP uses every detection).
    """
    _check_pairs(predictions, targets)
    if not targets:
        raise DataError("no images to evaluate; pass a non-empty detection dataset")
    preds = [{k: v.detach().cpu().float() if k != "labels" else v.detach().cpu().long() for k, v in p.items()
              if k in ("boxes", "scores", "labels")} for p in predictions]
    gts = [{"boxes": t["boxes"].detach().cpu().float(), "labels": t["labels"].detach().cpu().long()} for t in targets]
    try:
        metric = MeanAveragePrecision(iou_type="bbox", class_metrics=True, extended_summary=True, backend=MAP_BACKEND)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "task", f"detection metrics need {MAP_BACKEND}, which is not installed ({exc})",
            "pip install 'netzip-mlflow[detection]'",
        ) from None
    metric.update(preds, gts)
    result = metric.compute()
    tp, kept, n_gt = match_at_iou(preds, gts, IOU_MATCH, score_threshold)
    metrics = {keys.PRECISION_IOU50: tp / kept if kept else 0.0}
    omitted = ""
    if n_gt:
        metrics[keys.MAP50] = max(float(result["map_50"]), 0.0)
        metrics[keys.MAP50_95] = max(float(result["map"]), 0.0)
        metrics[keys.RECALL_IOU50] = tp / n_gt
    else:
        omitted = f"{keys.MAP50}, {keys.MAP50_95}, {keys.RECALL_IOU50}: {NO_GROUND_TRUTH}"
    labels = [int(c) for c in torch.atleast_1d(result["classes"]).tolist()]
    ap50 = _ap50_per_class(result["precision"]).tolist() if labels else []
    ap = torch.atleast_1d(result["map_per_class"]).tolist() if labels else []
    rows = []
    for i, label in enumerate(labels):
        name = class_names[label - 1] if class_names and 0 < label <= len(class_names) else str(label)
        rows.append({
            "label": label,
            "class": name,
            "ap50": ap50[i] if not (isinstance(ap50[i], float) and ap50[i] < 0) else math.nan,
            "ap50_95": ap[i] if ap[i] >= 0 else math.nan,
            "gt_boxes": int(sum(int((t["labels"] == label).sum()) for t in gts)),
            "detections": int(sum(int(((p["labels"] == label) & (p["scores"] >= score_threshold)).sum()) for p in preds)),
        })
    table = pd.DataFrame(rows, columns=["label", "class", "ap50", "ap50_95", "gt_boxes", "detections"])
    return DetectionMetrics(metrics, table, omitted)


# ------------------------------------------------------------------------------------ evaluation


def detection_batches(data: Iterable | Dataset, batch_size: int) -> Iterable:
    """``(images, [target, ...])`` batches: a map-style ``Dataset`` gets a loader with the detection collate."""
    return as_batches(data, batch_size, collate_fn=detection_collate)


def _images(batch: object, index: int) -> tuple[torch.Tensor, list[Target]]:
    if not (isinstance(batch, tuple | list) and len(batch) == 2):
        raise DataError(f"detection batch {index} is a {type(batch).__name__}, expected (images, targets)")
    images, targets = batch
    if isinstance(images, list | tuple):
        images = torch.stack(list(images))
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise DataError(f"detection batch {index}: images must stack to (B, C, H, W)")
    if not isinstance(targets, list | tuple) or len(targets) != images.shape[0]:
        raise DataError(
            f"detection batch {index}: targets must be a list of one dict per image; "
            "use netzip_mlflow.data.detection.detection_collate as the DataLoader's collate_fn"
        )
    return images, list(targets)


@torch.inference_mode()
def predict_detections(
    model: nn.Module, data: Iterable, device: str = "cpu", progress: bool = False
) -> tuple[list[Prediction], list[Target], torch.Tensor]:
    """Run the detector over ``data``: its predictions, the targets, and the first batch of images."""
    model.eval()
    preds: list[Prediction] = []
    targets: list[Target] = []
    first: torch.Tensor | None = None
    bar = tqdm(data, desc="detect", total=len(data) if hasattr(data, "__len__") else None,
               disable=not progress, leave=False)
    for i, batch in enumerate(bar):
        images, batch_targets = _images(batch, i)
        first = images if first is None else first
        try:
            out = model(model_input(images, model, device))
        except RuntimeError as exc:
            raise ModelError(f"the detector failed on images of shape {tuple(images.shape)}: {exc}") from exc
        if not isinstance(out, list | tuple) or len(out) != images.shape[0] or not all(isinstance(o, Mapping) for o in out):
            raise ModelError(
                "a detection model must return one {'boxes', 'labels', 'scores'} dict per image in eval mode; "
                f"got {type(out).__name__}"
            )
        preds.extend({k: v.detach().cpu() for k, v in o.items()} for o in out)
        targets.extend({k: v.detach().cpu() for k, v in t.items()} for t in batch_targets)
    if first is None:
        raise DataError("the evaluation data yielded no batches; pass a non-empty dataset")
    return preds, targets, first


class DetectionTask:
    """Accuracy pass of a detector (``task="detection"``).

    The report has no classification ``predictions`` (no agreement or class-level impact for
    detection); its ``tables`` hold the per-class AP table. The performance ratio uses mAP@0.5 unless
    the configuration names another metric than the classification default ``accuracy/top1``.
    """

    name = "detection"

    def configure(self, config: EvaluationConfig) -> EvaluationConfig:
        """mAP@0.5 feeds the performance ratio unless another metric was chosen."""
        return config.with_task_defaults(self.name)

    def accuracy_pass(self, model: nn.Module, data: Iterable | Dataset, config: EvaluationConfig) -> AccuracyPass:
        """mAP, precision/recall at IoU 0.5 and the per-class AP table over ``data``."""
        batches = detection_batches(data, config.eval_batch_size)
        names = list(config.class_names) if config.class_names else None
        preds, targets, first = predict_detections(model, batches, config.device, config.progress)
        measured = detection_metrics(preds, targets, names)
        class_names = names or [str(label) for label in sorted({int(v) for t in targets for v in t["labels"]})]
        tags: dict[str, str] = {}
        if measured.omitted:
            tags[keys.TAG_OMITTED_METRICS] = measured.omitted
            log.warning("detection metrics left out: %s", measured.omitted)
        return AccuracyPass(
            metrics=dict(measured.metrics),
            first_inputs=first,
            samples=len(targets),
            class_names=class_names,
            params={
                "eval.map_backend": MAP_BACKEND,
                "eval.pr_score_threshold": SCORE_THRESHOLD,
                "eval.latency_includes_postprocessing": True,
            },
            tables={PER_CLASS_TABLE: measured.per_class},
            tags=tags,
        )
