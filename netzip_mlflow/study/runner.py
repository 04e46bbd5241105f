"""Running a study: baseline, then each recipe as its own MLflow run, then the leaderboard.

MLflow layout (DESIGN.md section 4): one parent run per study (``netzip.role=study``) with nested
``baseline`` and ``compressed`` runs.

Reliability:

* A recipe that fails (raises, returns NaN/Inf outputs, runs out of memory) marks its run FAILED
  with ``netzip.error`` (type and one-line message) and its traceback as an artifact; the study goes
  on with the others. A baseline that fails fails the study the same way (nothing logged is lost).
* Running the same study again resumes it (see :mod:`netzip_mlflow.study.resume`): finished runs
  are reused, orphaned RUNNING runs marked KILLED, only what is missing is run. ``fresh=True``
  starts a new study run.
* MLflow calls are retried while SQLite reports 'database is locked' (several studies at once).
"""

from __future__ import annotations

import gc
import logging
import re
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
from netzip_mlflow.errors import ModelError, short_repr
from netzip_mlflow.evaluation.evaluator import EvaluationReport, evaluate
from netzip_mlflow.models.loading import load_model_file
from netzip_mlflow.models.training import train
from netzip_mlflow.models.zoo import build_model
from netzip_mlflow.study.checks import check_model_outputs
from netzip_mlflow.study.executors import Executor, StudyJob, make_executor
from netzip_mlflow.study.context import StudyData, evaluation_config, example_inputs, load_data
from netzip_mlflow.study.resume import (
    TAG_CONFIG_HASH,
    TAG_RESUMED,
    PreviousRuns,
    baseline_hash,
    find_previous,
    load_logged_model,
    recipe_hash,
)
from netzip_mlflow.study.lease import lock_file, study_lease
from netzip_mlflow.study.preflight import preflight
from netzip_mlflow.study.store import retry_locked
from netzip_mlflow.study.system_metrics import system_metrics
from netzip_mlflow.tracking import keys
from netzip_mlflow.tracking.experiments import ensure_experiment
from netzip_mlflow.tracking.uri import mask_credentials
from netzip_mlflow.tracking.model_logging import log_torch_model

log = logging.getLogger(__name__)

TRACEBACK_ARTIFACT = "error/traceback.txt"
INTERRUPTED = "KeyboardInterrupt: interrupted by user"
"""The ``netzip.error`` of a run stopped by Ctrl-C (it ends KILLED)."""
TAG_LEADERBOARD_NOTE = "netzip.leaderboard.note"
"""Why the study's leaderboard or plots are missing or incomplete (the study still FINISHED)."""


@dataclass(frozen=True)
class RecipeOutcome:
    """What became of one recipe."""

    recipe: str
    technique: str
    run_id: str
    status: str  # "FINISHED" or "FAILED"
    error: str | None = None
    ocs: float | None = None
    reused: bool = False  # a FINISHED run of an earlier, interrupted run of the study


@dataclass
class StudyResult:
    """The runs a study made and its leaderboard."""

    study: str
    experiment: str
    study_run_id: str
    baseline_run_id: str
    outcomes: list[RecipeOutcome] = field(default_factory=list)
    leaderboard: pd.DataFrame | None = None
    resumed: bool = False
    baseline_reused: bool = False
    killed: list[str] = field(default_factory=list)  # orphaned runs marked KILLED
    notes: list[str] = field(default_factory=list)  # e.g. why there are no plots (tag netzip.leaderboard.note)

    @property
    def failed(self) -> list[RecipeOutcome]:
        """Recipes whose run ended FAILED."""
        return [o for o in self.outcomes if o.status == "FAILED"]


def safe_name(text: str, limit: int = 100) -> str:
    """``text`` reduced to ``[A-Za-z0-9_.-]`` (other characters become ``_``), never ``.``/``..``.

    Used wherever a user string becomes a run name or part of an artifact path.
    """
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", text)[:limit].lstrip(".")
    return name or "_"


def error_message(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 500 characters, credentials in URIs masked),
    for the ``netzip.error`` tag."""
    if isinstance(exc, SystemExit):
        return f"SystemExit: the code called sys.exit({short_repr(exc.code, 60)}), which would have ended the study"
    text = mask_credentials(str(exc).strip())
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:500]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return mask_credentials(text.splitlines()[0][:300]) if text else type(exc).__name__


def _end_interrupted() -> None:
    """Tag the active run as interrupted by the user and end it KILLED; never raises."""
    try:
        retry_locked(mlflow.set_tag, keys.TAG_ERROR, INTERRUPTED)
        retry_locked(mlflow.end_run, status="KILLED")
    except Exception as log_exc:  # noqa: BLE001 - the interrupt matters more
        log.warning("could not mark the interrupted run KILLED: %s", _first_line(log_exc))


def _record_failure(exc: BaseException) -> str:
    """Tag the active run with the error and log the traceback; never raises."""
    message = error_message(exc)
    try:
        retry_locked(mlflow.set_tag, keys.TAG_ERROR, message)
        retry_locked(mlflow.log_text, traceback.format_exc(), TRACEBACK_ARTIFACT)
    except Exception as log_exc:  # noqa: BLE001 - the original error matters more
        log.warning("could not record the error in MLflow: %s", _first_line(log_exc))
    return message


def _epoch_logger(prefix: str):
    def on_epoch_end(epoch: int, metrics: Mapping[str, float]) -> None:
        retry_locked(mlflow.log_metrics, {f"{prefix}/{k}": float(v) for k, v in metrics.items()}, step=epoch)

    return on_epoch_end


def _flat_params(prefix: str, params: Mapping[str, Any]) -> dict[str, str]:
    return {f"{prefix}{k}": str(v) for k, v in params.items()}


def _first_batch(loader) -> tuple[torch.Tensor, torch.Tensor]:
    return next(iter(loader))


def _trains(recipe: RecipeSpec) -> bool:
    """Whether the recipe trains (QAT, fine-tuning): some ``*epochs`` parameter is positive."""
    return any(k.endswith("epochs") and isinstance(v, int) and v > 0 for k, v in recipe.params.items())


def initial_model(spec: StudySpec, data: StudyData) -> nn.Module:
    """The baseline before training: built from ``model.arch`` or loaded from ``model.path``.

    Checked on one real test batch (input shape, (batch, classes) output, label range, finite
    outputs) before anything is logged, so a bad model fails fast with a one-line error.
    """
    if spec.task == "detection":
        return _initial_detector(spec, data)
    split = data.split
    model = build_model(spec.model.arch, len(split.classes), split.input_shape, seed=spec.seed)
    what = f"model.arch {spec.model.arch!r}"
    if spec.model.path is not None:
        model = load_model_file(spec.model.path, model, trust=spec.model.trust_model_file)
        what = f"the model in {spec.model.path}"
    inputs, labels = _first_batch(data.test)
    check_model_outputs(model, inputs, labels, len(split.classes), what)
    return model


def _baseline_model(spec: StudySpec, data: StudyData, progress: bool, run_id: str, model: nn.Module | None) -> nn.Module:
    model = model if model is not None else initial_model(spec, data)
    if spec.model.path is not None:
        return model
    t = spec.model.train
    retry_locked(mlflow.log_params, {"train.epochs": t.epochs, "train.lr": t.lr, "train.optimizer": t.optimizer})
    if t.epochs:
        torch.manual_seed(spec.seed)
        e = spec.evaluation
        fit = _train_detector if spec.task == "detection" else train
        with system_metrics(run_id, e.system_metrics, e.system_metrics_interval_s):
            fit(model, data.train, t.epochs, t.lr, optimizer=t.optimizer, on_epoch_end=_epoch_logger("train"), progress=progress)
        if spec.task != "detection":
            inputs, labels = _first_batch(data.test)
            check_model_outputs(model, inputs, labels, len(data.split.classes), "the trained baseline model")
    return model


def _arch(spec: StudySpec) -> str:
    return spec.detection_arch if spec.task == "detection" else spec.model.arch


def _initial_detector(spec: StudySpec, data: StudyData) -> nn.Module:
    """A torchvision detector for the study's classes, or the user's file loaded into it."""
    from netzip_mlflow.models.detection_zoo import build_detector

    split = data.split
    model = build_detector(spec.detection_arch, split.num_classes, split.input_shape[1], seed=spec.seed)
    if spec.model.path is not None:
        model = load_model_file(spec.model.path, model, trust=spec.model.trust_model_file)
    return model


def _train_detector(model: nn.Module, *args: Any, **kwargs: Any) -> None:
    from netzip_mlflow.models.detection_zoo import train_detector

    train_detector(model, *args, **kwargs)


def _run_baseline(
    spec: StudySpec, data: StudyData, progress: bool, model: nn.Module | None = None
) -> tuple[nn.Module, EvaluationReport]:
    """Train (or take) the baseline, evaluate and log it in its own run; ``model`` from :func:`initial_model`."""
    config = evaluation_config(spec, data.split.classes, progress)
    tags = {keys.TAG_ROLE: keys.ROLE_BASELINE, keys.TAG_STUDY: spec.study, TAG_CONFIG_HASH: baseline_hash(spec)}
    with retry_locked(mlflow.start_run, run_name="baseline", nested=True, tags=tags) as run:
        try:
            retry_locked(mlflow.log_params, {"model.arch": _arch(spec), "data.source": data.split.name, "seed": spec.seed})
            model = _baseline_model(spec, data, progress, run.info.run_id, model)
            report = evaluate(model.eval(), data.test, spec.task, config, log_to_mlflow=True)
            retry_locked(log_torch_model, model, example_inputs(data))
        except KeyboardInterrupt:
            _end_interrupted()
            raise
        except Exception as exc:
            _record_failure(exc)
            raise
        except BaseException as exc:  # SystemExit & co. from model code: a failure, never an exit
            message = _record_failure(exc)
            raise ModelError(f"the baseline failed: {message}") from exc
    return model, report


def _reuse_baseline(previous: PreviousRuns) -> tuple[nn.Module, str] | None:
    """The model and run id of the earlier baseline, or ``None`` if there is none to reuse."""
    if previous.baseline is None:
        return None
    run_id = previous.baseline.info.run_id
    return load_logged_model(run_id), run_id


def _run_recipe(
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
        mlflow.start_run, run_name=safe_name(recipe.name), nested=True, parent_run_id=parent_run_id, tags=tags
    ) as run:
        run_id = run.info.run_id
        try:
            retry_locked(mlflow.log_params, _flat_params("recipe.", recipe.params))
            torch.manual_seed(spec.seed)
            e = spec.evaluation
            with system_metrics(run_id, e.system_metrics and _trains(recipe), e.system_metrics_interval_s):
                result = compress(
                    baseline, recipe.technique, recipe.params, data=data.train,
                    example_inputs=example_inputs(data), on_epoch_end=_epoch_logger("finetune"),
                )
            retry_locked(mlflow.log_params, _flat_params("result.", result.info))
            if spec.task != "detection":  # detectors return per-image box lists, checked by their metrics
                inputs, labels = _first_batch(data.test)
                check_model_outputs(result.model, inputs, labels, len(data.split.classes), f"recipe {recipe.name!r}")
            report = evaluate(result.model, data.test, spec.task, config, baseline=base_report, log_to_mlflow=True)
            retry_locked(log_torch_model, result.model, example_inputs(data))
        except KeyboardInterrupt:
            _end_interrupted()
            raise
        except BaseException as exc:  # noqa: BLE001 - any failure of one recipe (MemoryError, torch's
            # OutOfMemoryError, a SystemExit from model code) must not stop the study
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            message = _record_failure(exc)
            retry_locked(mlflow.end_run, status="FAILED")
            log.error("recipe %s failed: %s", recipe.name, message)
            return RecipeOutcome(recipe.name, recipe.technique, run_id, "FAILED", message)
    return RecipeOutcome(recipe.name, recipe.technique, run_id, "FINISHED", ocs=report.metrics.get(keys.OCS))


def _reused_outcome(recipe: RecipeSpec, previous: PreviousRuns) -> RecipeOutcome | None:
    run = previous.recipes.get(recipe.name)
    if run is None:
        return None
    return RecipeOutcome(
        recipe.name, recipe.technique, run.info.run_id, "FINISHED", ocs=run.data.metrics.get(keys.OCS), reused=True
    )


def _with_trust(spec: StudySpec) -> StudySpec:
    return spec.model_copy(update={"model": spec.model.model_copy(update={"trust_model_file": True})})


def run_study(
    study: str | Path | StudySpec,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
    fresh: bool = False,
    trust_model_file: bool = False,
    executor: Executor | None = None,
) -> StudyResult:
    """Run a study: train or load the baseline, evaluate it, then compress and evaluate each recipe.

    Args:
        study: a study YAML path or an already validated :class:`StudySpec`.
        overrides: dotted-key overrides applied to the YAML before validation
            (e.g. ``{"data.path": "/data/images", "recipes.0.params.amount": 0.5}``).
        progress: show progress bars.
        fresh: start a new study run even if an earlier run of this study can be resumed.
        trust_model_file: allow ``model.path`` to be a whole pickled module. Unpickling can run
            arbitrary code: only for files you made yourself (same as ``model.trust_model_file``).
        executor: where recipes run (default: the study's ``executor:`` section, i.e. one after
            another in this process; see :mod:`netzip_mlflow.study.executors`).

    Returns the runs made (or reused) and the study's leaderboard. Failed recipes are in
    ``result.failed``.
    """
    spec = study if isinstance(study, StudySpec) else load_study(study, overrides)
    if trust_model_file:
        spec = _with_trust(spec)
    executor = executor or make_executor(spec.executor)
    uri = mlflow.get_tracking_uri()
    executor.prepare(spec, uri)  # e.g. Ray needs an http:// tracking server
    preflight(spec)  # the device exists, the power log can be read
    data = load_data(spec, progress)  # bad data and bad models fail here, before the store is touched
    model = initial_model(spec, data)
    # One writer per study: a local store's lease is a lock file (taken before the store is
    # touched); a server's is an experiment tag (needs the experiment).
    experiment_id = None if lock_file(uri, spec.experiment_name, spec.study) else ensure_experiment(spec.experiment_name)
    with study_lease(uri, spec.experiment_name, spec.study, experiment_id):
        return _run_leased(spec, data, model, progress, fresh, executor, experiment_id)


def _run_leased(
    spec: StudySpec, data: StudyData, model: nn.Module, progress: bool, fresh: bool, executor: Executor, experiment_id: str | None
) -> StudyResult:
    """:func:`run_study` once the study's lease is held: open (or reopen) the study run and run it."""
    experiment_id = experiment_id or ensure_experiment(spec.experiment_name)
    retry_locked(mlflow.set_experiment, experiment_id=experiment_id)  # nested runs follow it
    previous = PreviousRuns() if fresh else find_previous(spec, experiment_id)
    if previous.study_run_id:
        parent_run = retry_locked(mlflow.start_run, run_id=previous.study_run_id)
    else:
        tags = {keys.TAG_ROLE: keys.ROLE_STUDY, keys.TAG_STUDY: spec.study, TAG_CONFIG_HASH: baseline_hash(spec)}
        parent_run = retry_locked(mlflow.start_run, run_name=safe_name(spec.study), tags=tags)
    with parent_run as parent:
        try:
            result = _run_in_parent(spec, data, progress, previous, parent.info.run_id, model, executor, experiment_id)
        except KeyboardInterrupt:
            _end_interrupted()
            raise
        except BaseException as exc:
            _record_failure(exc)
            raise
    return result


def _run_in_parent(
    spec: StudySpec,
    data: StudyData,
    progress: bool,
    previous: PreviousRuns,
    parent_id: str,
    model: nn.Module,
    executor: Executor,
    experiment_id: str,
) -> StudyResult:
    resumed = previous.study_run_id is not None
    if resumed:
        log.warning(
            "resuming study %s (run %s): %d finished recipe runs reused, %d orphaned runs marked KILLED",
            spec.study, parent_id, len(previous.recipes), len(previous.killed),
        )
        retry_locked(mlflow.set_tag, TAG_RESUMED, "true")
        if keys.TAG_ERROR in mlflow.get_run(parent_id).data.tags:  # an earlier attempt failed; this one may not
            retry_locked(mlflow.delete_tag, keys.TAG_ERROR)
    else:
        retry_locked(mlflow.log_text, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), "study.yaml")
        retry_locked(mlflow.log_params, {"seed": spec.seed, "recipes": len(spec.recipes), "data.train_samples": len(data.split.train), "data.test_samples": len(data.split.test), "data.skipped_files": len(getattr(data.split, "skipped", ()))})
    reused = _reuse_baseline(previous)
    if reused is not None:
        baseline, base_ref = reused
        base_run_id = base_ref
    else:
        baseline, base_ref = _run_baseline(spec, data, progress, model)
        base_run_id = base_ref.run_id or ""
    result = StudyResult(
        spec.study, spec.experiment_name, parent_id, base_run_id,
        resumed=resumed, baseline_reused=reused is not None, killed=list(previous.killed),
    )
    pending = []
    for recipe in spec.recipes:
        outcome = _reused_outcome(recipe, previous) if reused is not None else None
        if outcome is not None:
            result.outcomes.append(outcome)
        else:
            pending.append(recipe)
    job = StudyJob(spec, data, baseline, base_ref, parent_id, experiment_id, mlflow.get_tracking_uri(), progress)
    result.outcomes.extend(executor.run_recipes(job, pending, _run_recipe))
    result.leaderboard = _log_leaderboard(spec, {o.run_id for o in result.outcomes}, result.notes)
    _log_population(spec)
    return result


def _log_population(spec: StudySpec) -> None:
    """Seed 002's population method for recipes this study has run with several seeds (else nothing)."""
    from netzip_mlflow.analysis.population import population_impact, population_table
    from netzip_mlflow.errors import NetzipError

    try:
        results = population_impact(spec.experiment_name, spec.study)
    except NetzipError as exc:
        log.warning("population class-impact analysis skipped: %s", exc)
        retry_locked(mlflow.set_tag, "netzip.cie.population_error", str(exc)[:500])
        return
    if results:
        retry_locked(mlflow.log_text, population_table(results).to_csv(index=False), "class_impact/population.csv")
        retry_locked(mlflow.log_metrics, {f"cie_population/{r.recipe}/impacted_classes": float(r.impact.impacted_classes) for r in results})


def _note(notes: list[str], text: str) -> None:
    """Record why the leaderboard or plots are incomplete: a warning, the study run's tag, ``notes``."""
    log.warning("%s", text)
    notes.append(text)
    retry_locked(mlflow.set_tag, TAG_LEADERBOARD_NOTE, " | ".join(notes)[:5000])


def _log_leaderboard(spec: StudySpec, run_ids: set[str] | None = None, notes: list[str] | None = None) -> pd.DataFrame | None:
    """Rank this study run's recipe runs (``run_ids``; earlier study runs of the same name are left
    out) and log the table and plots to the study run.

    Plots that cannot be drawn never fail the study: why is said in ``notes`` and the study run's
    tag ``netzip.leaderboard.note`` (e.g. "no recipe has a finite OCS: baseline top-1 is 0").
    """
    from netzip_mlflow.analysis.leaderboard import baselines, leaderboard
    from netzip_mlflow.analysis.render import render

    notes = notes if notes is not None else []

    board = leaderboard(spec.experiment_name, study=spec.study)
    if run_ids is not None and not board.empty:
        board = board[board["run_id"].isin(run_ids)].reset_index(drop=True)
        if "rank" in board.columns and keys.OCS in board.columns:
            board["rank"] = board[keys.OCS].rank(ascending=False, method="min").astype("Int64")
    if board.empty:
        return board
    retry_locked(mlflow.log_text, render(board, "csv"), "leaderboard/leaderboard.csv")
    retry_locked(mlflow.log_text, render(board, "html"), "leaderboard/leaderboard.html")
    base = baselines(spec.experiment_name, study=spec.study)
    referenced = base[base["run_id"].isin(board["baseline_run_id"])] if not base.empty else base
    missing = no_finite_ocs(board, referenced, evaluation_config(spec, []).ratios.performance)
    if missing:
        _note(notes, f"no plots: {missing}")
        return board
    try:
        _log_plots(board, base, referenced)
    except Exception as exc:  # noqa: BLE001 - the runs are logged; a plot must not fail the study
        _note(notes, f"plots incomplete: {error_message(exc)}")
    return board


def no_finite_ocs(board: pd.DataFrame, base: pd.DataFrame, performance: str) -> str | None:
    """``None`` if some recipe in ``board`` has a finite OCS, else what is missing, in words."""
    import numpy as np

    scores = pd.to_numeric(board[keys.OCS], errors="coerce") if keys.OCS in board else pd.Series(dtype=float)
    if bool(np.isfinite(scores.to_numpy(dtype=float)).any()):
        return None
    reason = "no recipe has a finite OCS"
    if not base.empty and performance in base.columns:
        value = pd.to_numeric(base[performance], errors="coerce").iloc[0]
        if not (np.isfinite(value) and value > 0):
            return f"{reason}: the baseline's {performance} is {value:g}, so no performance ratio can be formed"
    elif not base.empty:
        return f"{reason}: the baseline has no {performance} metric"
    absent = [k for k in keys.RATIO_KEYS.values() if k not in board or pd.to_numeric(board[k], errors="coerce").isna().all()]
    return f"{reason}: no recipe has {', '.join(absent)}" if absent else reason


def _log_plots(board: pd.DataFrame, base: pd.DataFrame, referenced: pd.DataFrame) -> None:
    """The radar, OCS bar and bubble plots (and the sparsity sweep) as artifacts of the study run."""
    import tempfile

    from netzip_mlflow.analysis.plots import bubble_plot, ocs_bar_plot, radar_plot
    from netzip_mlflow.analysis.sweeps import plot_sweep, sweep_series

    star = referenced.iloc[0] if not referenced.empty else None  # the baseline of the bubble plot
    figures = {
        "radar": radar_plot(board),
        "ocs_bars": ocs_bar_plot(board),
        "accuracy_latency_bubbles": bubble_plot(board, baseline=star),
    }
    for name, fig in figures.items():
        retry_locked(mlflow.log_figure, fig, f"plots/{name}.png")
    nonzero = dict(zip(base["run_id"], base[keys.PARAMS_NONZERO])) if keys.PARAMS_NONZERO in base else {}
    series = sweep_series(board, nonzero)
    if series:
        with tempfile.TemporaryDirectory() as tmp:
            retry_locked(mlflow.log_artifact, str(plot_sweep(series, f"{tmp}/impact_vs_sparsity.png")), "plots")
