"""A study's baseline: build or load the model, train it, evaluate and log it in its own run.

Also :func:`reuse_baseline` for a resumed study (the earlier baseline run's logged model).
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
from netzip_mlflow.errors import ModelError
from netzip_mlflow.evaluation.report import EvaluationReport
from netzip_mlflow.models.baseline import BaselineModel, make_baseline
from netzip_mlflow.models.loading import open_model_file
from netzip_mlflow.models.training import train
from netzip_mlflow.study.checks import check_model_outputs
from netzip_mlflow.study.context import StudyData, evaluation_config, example_inputs
from netzip_mlflow.study.recipe import end_interrupted, epoch_logger, first_batch, record_failure
from netzip_mlflow.study.resume import TAG_CONFIG_HASH, PreviousRuns, baseline_hash, load_logged_model
from netzip_mlflow.study.system_metrics import system_metrics
from netzip_mlflow.tracking import keys
from netzip_mlflow.tracking.context import start_run
from netzip_mlflow.tracking.model_logging import log_torch_model
from netzip_mlflow.tracking.retry import retry_locked

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
            retry_locked(log_torch_model, model, example_inputs(data))
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


def reuse_baseline(previous: PreviousRuns) -> tuple[nn.Module, str] | None:
    """The model and run id of the earlier baseline, or ``None`` if there is none to reuse."""
    if previous.baseline is None:
        return None
    run_id = previous.baseline.info.run_id
    return load_logged_model(run_id), run_id


def baseline_for(
    spec: StudySpec,
    data: StudyData,
    progress: bool,
    previous: PreviousRuns,
    model: BaselineModel | None,
    on_phase: Callable[[str], None] | None = None,
) -> tuple[nn.Module, EvaluationReport | str, str]:
    """The baseline model, its reference for the recipes and its run id: the earlier run's
    (reference = its run id) when ``previous`` has one, else trained, evaluated and logged now.
    ``on_phase`` receives one line saying which of the two happens."""
    phase = on_phase or (lambda line: None)
    reused = reuse_baseline(previous)
    if reused is not None:
        phase("reusing the baseline of the interrupted study run")
        baseline, run_id = reused
        return baseline, run_id, run_id
    epochs = spec.model.train.epochs
    training = f"training {epochs} epoch{'s' if epochs != 1 else ''}, then " if epochs else ""
    phase(f"baseline: {training}measuring")
    baseline, report = run_baseline(spec, data, progress, model)
    return baseline, report, report.run_id or ""
