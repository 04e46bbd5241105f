"""What a study's recipes share: the data, the baseline model and the evaluation settings."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from netzip_mlflow.config.schema import StudySpec
from netzip_mlflow.data.builtin import SplitDataset, load_builtin
from netzip_mlflow.data.detection import DetectionSplit
from netzip_mlflow.data.folder import load_image_folder
from netzip_mlflow.evaluation.settings import EvaluationConfig
from netzip_mlflow.models import rebuild
from netzip_mlflow.runtimes.base import RuntimeModel
from netzip_mlflow.tracking.model_logging import log_model
from netzip_mlflow.tracking.retry import retry_locked
from netzip_mlflow.tracking.stored_model import log_model_weights


@dataclass
class StudyData:
    """The split dataset and its loaders (train shuffled with the study's seed, test in order)."""

    split: SplitDataset | DetectionSplit
    train: DataLoader
    test: DataLoader


def load_data(spec: StudySpec, progress: bool = False) -> StudyData:
    """Load the study's dataset and make its loaders.

    The train/test split follows ``data.seed`` and the training order the study's ``seed``: a study
    repeated with other seeds trains other models on the same split, as the population method of the
    class-level impact analysis needs. An image folder is indexed and every file decoded once
    first (a progress bar when ``progress``), see :func:`netzip_mlflow.data.folder.index_folder`.
    """
    d = spec.data
    collate = None
    if spec.task == "detection":
        split = _detection_split(spec)
        collate = split.collate_fn
    elif d.builtin is not None:
        split = load_builtin(d.builtin, d.test_fraction, d.seed, d.limit)
    else:
        split = load_image_folder(d.path, d.image_size, d.channels, d.test_fraction, d.seed, d.skip_corrupt, progress)
    generator = torch.Generator().manual_seed(spec.seed)
    train = DataLoader(split.train, batch_size=d.batch_size, shuffle=True, generator=generator, collate_fn=collate)
    test = DataLoader(split.test, batch_size=spec.evaluation.eval_batch_size, shuffle=False, collate_fn=collate)
    return StudyData(split, train, test)


def _detection_split(spec: StudySpec) -> DetectionSplit:
    """The built-in ``shapes`` set (``data.limit`` images, default 300) or a COCO folder."""
    d = spec.data
    if d.builtin == "shapes":
        from netzip_mlflow.data.detection import load_shapes

        return load_shapes(d.limit, d.image_size, d.test_fraction, d.seed)
    from netzip_mlflow.data.coco import load_coco_folder

    return load_coco_folder(d.path, d.image_size, d.test_fraction, d.seed)


def evaluation_config(spec: StudySpec, class_names: list[str], progress: bool = True) -> EvaluationConfig:
    """The :class:`EvaluationConfig` a study's YAML describes (its ``evaluation:`` section is the same
    settings model), with the dataset's class names; a detection study's performance ratio defaults to
    mAP@0.5 (docs/architecture.md, "Metric contract")."""
    return spec.evaluation.evaluation_config(class_names, progress).with_task_defaults(spec.task)


def example_inputs(data: StudyData, n: int = 1) -> torch.Tensor:
    """``n`` real training images, for tracing and dependency graphs."""
    inputs, _ = next(iter(DataLoader(data.split.train, batch_size=n, shuffle=False, collate_fn=data.train.collate_fn)))
    return inputs


def model_arch(spec: StudySpec) -> str:
    """The study's architecture name (``model.arch``, or the detector's for a detection study)."""
    return spec.detection_arch if spec.task == "detection" else spec.model.arch


def baseline_manifest(spec: StudySpec, data: StudyData) -> rebuild.Manifest:
    """How a reader rebuilds the baseline without unpickling: the study's own architecture."""
    split = data.split
    classes = split.num_classes if spec.task == "detection" else len(split.classes)
    return rebuild.architecture_manifest(spec.task, model_arch(spec), classes, split.input_shape, spec.seed)


def log_study_model(
    model: nn.Module, data: StudyData, manifest: rebuild.Manifest, baseline: nn.Module | None = None
) -> None:
    """Log ``model`` to the active run in its runtime's MLflow flavor and, for a torch module, the
    tensors-only copy and its rebuild manifest (with their SHA-256 tags, see
    :mod:`netzip_mlflow.tracking.stored_model`). An ONNX Runtime / OpenVINO model is logged as its
    runtime's files only (data, not a pickle: :func:`~netzip_mlflow.tracking.model_logging.load_runtime_model`
    reads them back without unpickling), so it needs no tensors-only copy."""
    retry_locked(log_model, model, example_inputs(data))
    if not isinstance(model, RuntimeModel):
        retry_locked(log_model_weights, model, manifest, baseline)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameter count (for a quick log line; the size metrics count more precisely)."""
    return sum(p.numel() for p in model.parameters())
