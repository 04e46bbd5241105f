"""Running a study: baseline, then each recipe as its own MLflow run, then the leaderboard.

MLflow layout (DESIGN.md section 4): one parent run per study (``netzip.role=study``) with nested
``baseline`` and ``compressed`` runs. A recipe that fails marks its run FAILED with ``netzip.error``
(type and one-line message) and its traceback as an artifact; the study goes on with the others.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import torch
import yaml
from torch import nn

from netzip_mlflow.compression.registry import compress
from netzip_mlflow.config.loader import load_study
from netzip_mlflow.config.schema import RecipeSpec, StudySpec
from netzip_mlflow.evaluation.evaluator import EvaluationReport, evaluate
from netzip_mlflow.models.loading import load_model_file
from netzip_mlflow.models.training import train
from netzip_mlflow.models.zoo import build_model
from netzip_mlflow.study.executors import Executor, StudyJob, make_executor
from netzip_mlflow.study.context import StudyData, evaluation_config, example_inputs, load_data
from netzip_mlflow.tracking import keys
from netzip_mlflow.tracking.experiments import ensure_experiment
from netzip_mlflow.tracking.model_logging import log_torch_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecipeOutcome:
    """What became of one recipe."""

    recipe: str
    technique: str
    run_id: str
    status: str  # "FINISHED" or "FAILED"
    error: str | None = None
    ocs: float | None = None


@dataclass
class StudyResult:
    """The runs a study made and its leaderboard."""

    study: str
    experiment: str
    study_run_id: str
    baseline_run_id: str
    outcomes: list[RecipeOutcome] = field(default_factory=list)
    leaderboard: pd.DataFrame | None = None

    @property
    def failed(self) -> list[RecipeOutcome]:
        """Recipes whose run ended FAILED."""
        return [o for o in self.outcomes if o.status == "FAILED"]


def _epoch_logger(prefix: str):
    def on_epoch_end(epoch: int, metrics: Mapping[str, float]) -> None:
        mlflow.log_metrics({f"{prefix}/{k}": float(v) for k, v in metrics.items()}, step=epoch)

    return on_epoch_end


def _flat_params(prefix: str, params: Mapping[str, Any]) -> dict[str, str]:
    return {f"{prefix}{k}": str(v) for k, v in params.items()}


def _baseline_model(spec: StudySpec, data: StudyData, progress: bool) -> nn.Module:
    split = data.split
    model = build_model(spec.model.arch, len(split.classes), split.input_shape, seed=spec.seed)
    if spec.model.path is not None:
        return load_model_file(spec.model.path, model, trust=spec.model.trust_model_file)
    t = spec.model.train
    mlflow.log_params({"train.epochs": t.epochs, "train.lr": t.lr, "train.optimizer": t.optimizer})
    if t.epochs:
        torch.manual_seed(spec.seed)
        train(model, data.train, t.epochs, t.lr, optimizer=t.optimizer, on_epoch_end=_epoch_logger("train"), progress=progress)
    return model


def _run_baseline(spec: StudySpec, data: StudyData, progress: bool) -> tuple[nn.Module, EvaluationReport]:
    config = evaluation_config(spec, data.split.classes, progress)
    with mlflow.start_run(run_name="baseline", nested=True, tags={keys.TAG_ROLE: keys.ROLE_BASELINE, keys.TAG_STUDY: spec.study}):
        mlflow.log_params({"model.arch": spec.model.arch, "data.source": data.split.name, "seed": spec.seed})
        model = _baseline_model(spec, data, progress)
        report = evaluate(model.eval(), data.test, spec.task, config, log_to_mlflow=True)
        log_torch_model(model, example_inputs(data))
    return model, report


def _run_recipe(
    recipe: RecipeSpec, spec: StudySpec, data: StudyData, baseline: nn.Module, base_report: EvaluationReport, progress: bool,
    parent_run_id: str | None = None,
) -> RecipeOutcome:
    config = evaluation_config(spec, data.split.classes, progress)
    tags = {
        keys.TAG_ROLE: keys.ROLE_COMPRESSED,
        keys.TAG_STUDY: spec.study,
        keys.TAG_TECHNIQUE: recipe.technique,
        keys.TAG_RECIPE: recipe.name,
        keys.TAG_BASELINE_RUN: base_report.run_id or "",
    }
    # parent_run_id: set when this runs in another process (a Ray task) with no active parent run.
    with mlflow.start_run(run_name=recipe.name, nested=True, parent_run_id=parent_run_id, tags=tags) as run:
        run_id = run.info.run_id
        try:
            mlflow.log_params(_flat_params("recipe.", recipe.params))
            torch.manual_seed(spec.seed)
            result = compress(
                baseline, recipe.technique, recipe.params, data=data.train,
                example_inputs=example_inputs(data), on_epoch_end=_epoch_logger("finetune"),
            )
            mlflow.log_params(_flat_params("result.", result.info))
            report = evaluate(result.model, data.test, spec.task, config, baseline=base_report, log_to_mlflow=True)
            log_torch_model(result.model, example_inputs(data))
        except Exception as exc:  # noqa: BLE001 - any failure of one recipe must not stop the study
            message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]
            mlflow.set_tag(keys.TAG_ERROR, message)
            mlflow.log_text(traceback.format_exc(), "error/traceback.txt")
            mlflow.end_run(status="FAILED")
            log.error("recipe %s failed: %s", recipe.name, message)
            return RecipeOutcome(recipe.name, recipe.technique, run_id, "FAILED", message)
    return RecipeOutcome(recipe.name, recipe.technique, run_id, "FINISHED", ocs=report.metrics.get(keys.OCS))


def run_study(
    study: str | Path | StudySpec, overrides: Mapping[str, Any] | None = None, progress: bool = True,
    executor: Executor | None = None,
) -> StudyResult:
    """Run a study: train or load the baseline, evaluate it, then compress and evaluate each recipe.

    Args:
        study: a study YAML path or an already validated :class:`StudySpec`.
        overrides: dotted-key overrides applied to the YAML before validation
            (e.g. ``{"data.path": "/data/images", "recipes.0.params.amount": 0.5}``).
        progress: show progress bars.
        executor: where recipes run (default: the study's ``executor:`` section, i.e. one after
            another in this process; see :mod:`netzip_mlflow.study.executors`).

    Returns the runs made and the study's leaderboard. Recipes that fail are in ``result.failed``.
    """
    spec = study if isinstance(study, StudySpec) else load_study(study, overrides)
    executor = executor or make_executor(spec.executor)
    executor.prepare(spec, mlflow.get_tracking_uri())
    experiment_id = ensure_experiment(spec.experiment_name)
    mlflow.set_experiment(experiment_id=experiment_id)  # nested runs follow the active experiment
    data = load_data(spec)
    with mlflow.start_run(run_name=spec.study, tags={keys.TAG_ROLE: keys.ROLE_STUDY, keys.TAG_STUDY: spec.study}) as parent:
        mlflow.log_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), "study.yaml")
        mlflow.log_params({"seed": spec.seed, "recipes": len(spec.recipes), "data.train_samples": len(data.split.train), "data.test_samples": len(data.split.test)})
        baseline, base_report = _run_baseline(spec, data, progress)
        result = StudyResult(spec.study, spec.experiment_name, parent.info.run_id, base_report.run_id or "")
        job = StudyJob(spec, data, baseline, base_report, parent.info.run_id, experiment_id, mlflow.get_tracking_uri(), progress)
        result.outcomes.extend(executor.run_recipes(job, spec.recipes, _run_recipe))
        result.leaderboard = _log_leaderboard(spec)
    return result


def _log_leaderboard(spec: StudySpec) -> pd.DataFrame | None:
    from netzip_mlflow.analysis.leaderboard import leaderboard
    from netzip_mlflow.analysis.plots import bubble_plot, ocs_bar_plot, radar_plot
    from netzip_mlflow.analysis.render import render

    board = leaderboard(spec.experiment_name, study=spec.study)
    if board.empty:
        return board
    mlflow.log_text(render(board, "csv"), "leaderboard/leaderboard.csv")
    mlflow.log_text(render(board, "html"), "leaderboard/leaderboard.html")
    for name, plot in (("radar", radar_plot), ("ocs_bars", ocs_bar_plot), ("accuracy_latency_bubbles", bubble_plot)):
        fig = plot(board)
        mlflow.log_figure(fig, f"plots/{name}.png")
    return board
