"""A study's baseline: build or load the model, train it, evaluate and log it in its own run.

Also :func:`reuse_baseline` for a resumed study (the earlier baseline run's model, rebuilt from its
tensors-only copy; its pickle only with ``model.trust_model_file``).
"""

from __future__ import annotations

from collections.abc import Callable

import logging
from typing import Any

import mlflow
import torch
from torch import nn

from netzip_mlflow.api import evaluate
from netzip_mlflow.config.schema import StudySpec
from netzip_mlflow.errors import ModelError, TrackingError
from netzip_mlflow.evaluation.report import EvaluationReport
from netzip_mlflow.models.baseline import BaselineModel, make_baseline
from netzip_mlflow.models.loading import open_model_file
from netzip_mlflow.models.training import train
from netzip_mlflow.study.checks import check_model_outputs
from netzip_mlflow.study.context import (
    StudyData,
    baseline_manifest,
    evaluation_config,
    log_study_model,
)
from netzip_mlflow.study.recipe import end_interrupted, epoch_logger, first_batch, record_failure
from netzip_mlflow.study.resume import TAG_CONFIG_HASH, PreviousRuns, baseline_hash
from netzip_mlflow.study.system_metrics import system_metrics
from netzip_mlflow.tracking import keys
from netzip_mlflow.tracking.context import start_run
from netzip_mlflow.tracking.retry import retry_locked
from netzip_mlflow.tracking.stored_model import load_run_model

log = logging.getLogger(__name__)


def initial_model(spec: StudySpec, data: StudyData) -> BaselineModel:
    """The baseline before training: built from ``model.arch`` or loaded from ``model.path``.

    Checked on one real test batch (input shape, (batch, classes) output, label range, finite
    outputs) before anything is logged, so a bad model fails fast with a one-line error. The
    returned ``params`` say what was really built (logged as the baseline run's ``model.*`` params).
    """
    if spec.task == "detection":
        return _initial_detector(spec, data)
    split = data.split
    built = make_baseline(
        spec.model.arch, len(split.classes), split.input_shape, seed=spec.seed,
        path=spec.model.path, trust=spec.model.trust_model_file,
    )
    what = f"the model in {spec.model.path}" if built.loaded else f"model.arch {spec.model.arch!r}"
    inputs, labels = first_batch(data.test)
    check_model_outputs(built.model, inputs, labels, len(split.classes), what)
    return built


def _baseline_model(spec: StudySpec, data: StudyData, progress: bool, run_id: str, built: BaselineModel | None) -> nn.Module:
    built = built if built is not None else initial_model(spec, data)
    model = built.model
    t = spec.model.train
    retry_locked(mlflow.log_params, {**built.params, "train.epochs": t.epochs, "train.lr": t.lr, "train.optimizer": t.optimizer})
    if t.epochs:
        if built.loaded:
            log.warning("fine-tuning the model loaded from %s for %d epochs (model.train.epochs)", spec.model.path, t.epochs)
            retry_locked(mlflow.set_tag, keys.TAG_BASELINE_FINETUNED, "true")
        torch.manual_seed(spec.seed)
        e = spec.evaluation
        fit = _train_detector if spec.task == "detection" else train
        with system_metrics(run_id, e.system_metrics, e.system_metrics_interval_s):
            fit(model, data.train, t.epochs, t.lr, optimizer=t.optimizer, on_epoch_end=epoch_logger("train"), progress=progress)
        if spec.task != "detection":
            inputs, labels = first_batch(data.test)
            check_model_outputs(model, inputs, labels, len(data.split.classes), "the trained baseline model")
    return model


def _initial_detector(spec: StudySpec, data: StudyData) -> BaselineModel:
    """A torchvision detector for the study's classes, or the user's file loaded into it."""
    from netzip_mlflow.models.detection_zoo import build_detector

    split = data.split
    model = build_detector(spec.detection_arch, split.num_classes, split.input_shape[1], seed=spec.seed)
    params = {"model.arch": spec.detection_arch, "model.source": "built", "model.format": "random init"}
    if spec.model.path is not None:
        loaded = open_model_file(spec.model.path, model, trust=spec.model.trust_model_file)
        model = loaded.model
        params = {
            "model.arch": type(model).__name__ if loaded.whole_module else spec.detection_arch,
            "model.source": str(spec.model.path),
            "model.format": "whole module" if loaded.whole_module else "state_dict",
        }
    return BaselineModel(model, params)


def _train_detector(model: nn.Module, *args: Any, **kwargs: Any) -> None:
    from netzip_mlflow.models.detection_zoo import train_detector

    train_detector(model, *args, **kwargs)


def run_baseline(
    spec: StudySpec, data: StudyData, progress: bool, model: BaselineModel | None = None
) -> tuple[nn.Module, EvaluationReport]:
    """Train (or take) the baseline, evaluate and log it in its own run; ``model`` from :func:`initial_model`."""
    config = evaluation_config(spec, data.split.classes, progress)
    tags = {keys.TAG_ROLE: keys.ROLE_BASELINE, keys.TAG_STUDY: spec.study, TAG_CONFIG_HASH: baseline_hash(spec)}
    with retry_locked(start_run, run_name="baseline", nested=True, tags=tags) as run:
        try:
            retry_locked(mlflow.log_params, {"data.source": data.split.name, "seed": spec.seed})
            model = _baseline_model(spec, data, progress, run.info.run_id, model)
            report = evaluate(model.eval(), data.test, spec.task, config, log_to_mlflow=True)
            log_study_model(model, data, baseline_manifest(spec, data))
        except KeyboardInterrupt:
            end_interrupted()
            raise
        except Exception as exc:
            record_failure(exc)
            raise
        except BaseException as exc:  # SystemExit & co. from model code: a failure, never an exit
            message = record_failure(exc)
            raise ModelError(f"the baseline failed: {message}") from exc
    return model, report


def reuse_baseline(spec: StudySpec, previous: PreviousRuns) -> tuple[nn.Module, str] | None:
    """The model and run id of the earlier baseline, or ``None`` if there is none to reuse.

    The model is rebuilt from the run's hash-checked tensors; its pickle is loaded only if the study
    trusts it (``model.trust_model_file``). A model that cannot be loaded safely raises
    :class:`TrackingError` (one line: trust it, or run with ``--fresh``).
    """
    if previous.baseline is None:
        return None
    run_id = previous.baseline.info.run_id
    try:
        return load_run_model(run_id, trust=spec.model.trust_model_file), run_id
    except ModelError as exc:
        raise TrackingError(f"cannot reuse the baseline of the interrupted study: {exc}; or run with --fresh") from exc


def baseline_for(
    spec: StudySpec,
    data: StudyData,
    progress: bool,
    reused: tuple[nn.Module, str] | None,
    model: BaselineModel | None,
    on_phase: Callable[[str], None] | None = None,
) -> tuple[nn.Module, EvaluationReport | str, str]:
    """The baseline model, its reference for the recipes and its run id: the earlier run's
    (``reused``, from :func:`reuse_baseline`, called before the study run is reopened so a refused
    baseline leaves the store untouched; reference = its run id), else trained, evaluated and
    logged now. ``on_phase`` receives one line saying which of the two happens."""
    phase = on_phase or (lambda line: None)
    if reused is not None:
        phase("reusing the baseline of the interrupted study run")
        baseline, run_id = reused
        return baseline, run_id, run_id
    epochs = spec.model.train.epochs
    training = f"training {epochs} epoch{'s' if epochs != 1 else ''}, then " if epochs else ""
    phase(f"baseline: {training}measuring")
    baseline, report = run_baseline(spec, data, progress, model)
    return baseline, report, report.run_id or ""
