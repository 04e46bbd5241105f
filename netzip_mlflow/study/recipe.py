"""One recipe of a study: compress the baseline, check, evaluate and log it in its own MLflow run.

:func:`run_recipe` is what every executor runs per recipe: in this process
(:class:`~netzip_mlflow.study.executors.LocalExecutor`) or imported directly by a Ray task
(:mod:`~netzip_mlflow.study.ray_tasks`). A failure ends only that recipe's run (FAILED, reason in
``netzip.error``, traceback as an artifact), whatever model code raises (``SystemExit`` included);
only Ctrl-C goes on, after the run is marked KILLED with "interrupted by user". Each recipe runs
under a watchdog (:mod:`~netzip_mlflow.study.watchdog`: ``timeout_s``, or a default from its
training epochs): on expiry its run is FAILED with ``timeout after N s in <phase>`` and the study
goes on.
"""

from __future__ import annotations

import gc
import logging
import re
import traceback
from collections.abc import Mapping
from typing import Any

import mlflow
import torch
from torch import nn

from netzip_mlflow.api import evaluate
from netzip_mlflow.compression.registry import compress, validate_params
from netzip_mlflow.config.schema import RecipeSpec, StudySpec
from netzip_mlflow.errors import WatchdogTimeout, short_repr
from netzip_mlflow.evaluation.settings import EvaluationConfig
from netzip_mlflow.models import rebuild
from netzip_mlflow.evaluation.report import EvaluationReport
from netzip_mlflow.study.checks import check_model_outputs
from netzip_mlflow.study.context import StudyData, baseline_manifest, evaluation_config, example_inputs, log_study_model
from netzip_mlflow.study.jobs import RecipeOutcome
from netzip_mlflow.study.resume import TAG_CONFIG_HASH, baseline_hash, recipe_hash
from netzip_mlflow.study.system_metrics import system_metrics
from netzip_mlflow.study.watchdog import RecipeTimeout, Watchdog, default_recipe_timeout_s
from netzip_mlflow.tracking import keys
from netzip_mlflow.tracking.context import start_run
from netzip_mlflow.tracking.retry import retry_locked
from netzip_mlflow.tracking.uri import mask_credentials

log = logging.getLogger(__name__)

TRACEBACK_ARTIFACT = keys.TRACEBACK_ARTIFACT
INTERRUPTED = keys.ERROR_INTERRUPTED
"""The ``netzip.error`` of a run stopped by Ctrl-C (it ends KILLED)."""


def safe_name(text: str, limit: int = 100) -> str:
    """``text`` reduced to ``[A-Za-z0-9_.-]`` (other characters become ``_``), never ``.``/``..``.

    Used wherever a user string becomes a run name or part of an artifact path.
    """
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", text)[:limit].lstrip(".")
    return name or "_"


def error_message(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 500 characters, credentials in URIs masked),
    for the ``netzip.error`` tag; a watchdog's timeout is just ``timeout after N s in <phase>``."""
    if isinstance(exc, SystemExit):
        return f"SystemExit: the code called sys.exit({short_repr(exc.code, 60)}), which would have ended the study"
    text = mask_credentials(str(exc).strip())
    if isinstance(exc, (RecipeTimeout, WatchdogTimeout)):
        return text[:500]
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:500]


def first_line(exc: BaseException) -> str:
    """The first line of ``exc`` (at most 300 characters, credentials masked), for log warnings."""
    text = str(exc).strip()
    return mask_credentials(text.splitlines()[0][:300]) if text else type(exc).__name__


def end_interrupted() -> None:
    """Tag the active run as interrupted by the user (:data:`INTERRUPTED`) and end it KILLED; never raises."""
    try:
        retry_locked(mlflow.set_tag, keys.TAG_ERROR, INTERRUPTED)
        retry_locked(mlflow.end_run, status="KILLED")
    except Exception as log_exc:  # noqa: BLE001 - the interrupt matters more
        log.warning("could not mark the interrupted run KILLED: %s", first_line(log_exc))


def record_failure(exc: BaseException) -> str:
    """Tag the active run with the error and log the traceback; never raises."""
    message = error_message(exc)
    try:
        retry_locked(mlflow.set_tag, keys.TAG_ERROR, message)
        retry_locked(mlflow.log_text, traceback.format_exc(), TRACEBACK_ARTIFACT)
    except Exception as log_exc:  # noqa: BLE001 - the original error matters more
        log.warning("could not record the error in MLflow: %s", first_line(log_exc))
    return message


def epoch_logger(prefix: str):
    def on_epoch_end(epoch: int, metrics: Mapping[str, float]) -> None:
        retry_locked(mlflow.log_metrics, {f"{prefix}/{k}": float(v) for k, v in metrics.items()}, step=epoch)

    return on_epoch_end


def flat_params(prefix: str, params: Mapping[str, Any]) -> dict[str, str]:
    return {f"{prefix}{k}": str(v) for k, v in params.items()}


def first_batch(loader) -> tuple[torch.Tensor, torch.Tensor]:
    return next(iter(loader))


def trains(recipe: RecipeSpec) -> bool:
    """Whether the recipe trains (QAT, fine-tuning): some ``*epochs`` parameter is positive."""
    return any(k.endswith("epochs") and isinstance(v, int) and v > 0 for k, v in recipe.params.items())


def run_recipe(
    recipe: RecipeSpec,
    spec: StudySpec,
    data: StudyData,
    baseline: nn.Module,
    base_report: EvaluationReport | str,
    progress: bool,
    parent_run_id: str | None = None,
) -> RecipeOutcome:
    """Compress, check, evaluate and log one recipe in its own run; any failure ends only this run.

    ``base_report`` is the baseline's report, or the run id of a logged baseline (resumed study).
    """
    config = evaluation_config(spec, data.split.classes, progress)
    base_run_id = base_report if isinstance(base_report, str) else (base_report.run_id or "")
    tags = {
        keys.TAG_ROLE: keys.ROLE_COMPRESSED,
        keys.TAG_STUDY: spec.study,
        keys.TAG_TECHNIQUE: recipe.technique,
        keys.TAG_RECIPE: recipe.name,
        keys.TAG_BASELINE_RUN: base_run_id,
        TAG_CONFIG_HASH: recipe_hash(recipe, baseline_hash(spec)),
    }
    # parent_run_id: set when this runs in another process (a Ray task) with no active parent run.
    with retry_locked(
        start_run, run_name=safe_name(recipe.name), nested=True, parent_run_id=parent_run_id, tags=tags
    ) as run:
        run_id = run.info.run_id
        dog = Watchdog(recipe_timeout_s(recipe, data, config))
        try:
            with dog:
                dog.phase = "compression"
                retry_locked(mlflow.log_params, flat_params("recipe.", recipe.params))
                torch.manual_seed(spec.seed)
                e = spec.evaluation
                with system_metrics(run_id, e.system_metrics and trains(recipe), e.system_metrics_interval_s):
                    result = compress(
                        baseline, recipe.technique, recipe.params, data=data.train,
                        example_inputs=example_inputs(data), on_epoch_end=epoch_logger("finetune"),
                        progress=progress,
                    )
                retry_locked(mlflow.log_params, flat_params("result.", result.info))
                if result.tags:
                    retry_locked(mlflow.set_tags, result.tags)
                dog.phase = "the output check"
                if spec.task != "detection":  # detectors return per-image box lists, checked by their metrics
                    inputs, labels = first_batch(data.test)
                    check_model_outputs(result.model, inputs, labels, len(data.split.classes), f"recipe {recipe.name!r}")
                dog.phase = "evaluation"
                report = evaluate(
                    result.model, data.test, spec.task, config,
                    baseline=base_report, log_to_mlflow=True, baseline_model=baseline,
                )
                dog.phase = "model logging"
                manifest = rebuild.recipe_manifest(
                    baseline_manifest(spec, data), recipe.technique, validate_params(recipe.technique, recipe.params),
                    spec.seed, base_run_id,
                )
                log_study_model(result.model, data, manifest, baseline)
        except KeyboardInterrupt:
            dog.cancel()
            end_interrupted()
            raise
        except BaseException as exc:  # noqa: BLE001 - any failure of one recipe (MemoryError, torch's
            # OutOfMemoryError, a SystemExit from model code, the watchdog's RecipeTimeout) must not
            # stop the study
            dog.cancel()
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            message = record_failure(exc)
            retry_locked(mlflow.end_run, status="FAILED")
            log.error("recipe %s failed: %s", recipe.name, message)
            return RecipeOutcome(recipe.name, recipe.technique, run_id, "FAILED", message)
    return RecipeOutcome(recipe.name, recipe.technique, run_id, "FINISHED", ocs=report.metrics.get(keys.OCS))


def recipe_timeout_s(recipe: RecipeSpec, data: StudyData, config: EvaluationConfig) -> float | None:
    """The recipe's time limit in seconds (``None``: none): ``timeout_s`` if given (0: none), else
    :func:`~netzip_mlflow.study.watchdog.default_recipe_timeout_s`."""
    if recipe.timeout_s is not None:
        return float(recipe.timeout_s) or None
    return default_recipe_timeout_s(recipe.params, len(data.split.train), config.worker_timeout_s())
