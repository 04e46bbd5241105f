"""Running a study: baseline, then each recipe as its own MLflow run, then the leaderboard.

MLflow layout (docs/architecture.md, "MLflow layout"): one parent run per study (``netzip.role=study``) with nested
``baseline`` and ``compressed`` runs.

Reliability:

* A recipe that fails (raises, returns NaN/Inf outputs, runs out of memory) marks its run FAILED
  with ``netzip.error`` (type and one-line message) and its traceback as an artifact; the study goes
  on with the others. A baseline that fails fails the study the same way (nothing logged is lost).
* Running the same study again resumes it (see :mod:`netzip_mlflow.study.resume`): finished runs
  are reused, orphaned RUNNING runs marked KILLED, only what is missing is run. ``fresh=True``
  starts a new study run.
* MLflow calls are retried while SQLite reports 'database is locked' (several studies at once).
* One writer per study (:mod:`netzip_mlflow.study.lease`): a second run of the same study while the
  first holds its lease stops with one line naming the holder; a lease of a dead process is taken over.
* Everything the store does not need is checked first (:mod:`netzip_mlflow.study.preflight`, the
  whole dataset, the model on one real batch). Ctrl-C marks the interrupted run KILLED ("interrupted
  by user") and propagates; anything else model code raises (``SystemExit`` included) fails only its run.
* Plots that cannot be drawn never fail a study whose recipes finished (:mod:`netzip_mlflow.study.summary`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import yaml

from netzip_mlflow.config.loader import load_study
from netzip_mlflow.config.schema import RecipeSpec, StudySpec
from netzip_mlflow.errors import ConfigError
from netzip_mlflow.models.baseline import BaselineModel
from netzip_mlflow.study.baseline import baseline_for, initial_model, reuse_baseline
from netzip_mlflow.study.context import StudyData, load_data
from netzip_mlflow.study.executors import Executor, LocalExecutor, make_executor
from netzip_mlflow.study.jobs import RecipeOutcome, StudyJob, StudyResult
from netzip_mlflow.study.lease import lock_file, study_lease
from netzip_mlflow.study.preflight import preflight
from netzip_mlflow.study.recipe import TRACEBACK_ARTIFACT, end_interrupted, error_message, record_failure, run_recipe, safe_name
from netzip_mlflow.study.resume import TAG_CONFIG_HASH, TAG_RESUMED, PreviousRuns, baseline_hash, find_previous
from netzip_mlflow.study.summary import log_leaderboard, log_population
from netzip_mlflow.tracking import keys
from netzip_mlflow.tracking.context import start_run
from netzip_mlflow.tracking.experiments import ensure_experiment
from netzip_mlflow.tracking.retry import retry_locked

__all__ = [
    "RecipeOutcome", "StudyResult", "TRACEBACK_ARTIFACT", "error_message", "initial_model", "run_recipe",
    "run_study", "safe_name",
]

log = logging.getLogger(__name__)


PhaseFn = Callable[[str], None]
"""Receives one status line per phase of a study."""


def _model_line(spec: StudySpec) -> str:
    m = spec.model
    if m.path is None:
        return f"{spec.detection_arch if spec.task == 'detection' else m.arch}, random init"
    return f"loading {m.path}"


def _announced(run_one: Callable[..., RecipeOutcome], phase: PhaseFn, total: int) -> Callable[..., RecipeOutcome]:
    """``run_one`` that first reports "recipe i of n: name (technique)" (local executor only)."""
    count = 0

    def run(recipe: RecipeSpec, *args: Any, **kwargs: Any) -> RecipeOutcome:
        nonlocal count
        count += 1
        phase(f"recipe {count} of {total}: {recipe.name} ({recipe.technique})")
        return run_one(recipe, *args, **kwargs)

    return run


def _reused_outcome(recipe: RecipeSpec, previous: PreviousRuns) -> RecipeOutcome | None:
    run = previous.recipes.get(recipe.name)
    if run is None:
        return None
    return RecipeOutcome(
        recipe.name, recipe.technique, run.info.run_id, "FINISHED", ocs=run.data.metrics.get(keys.OCS), reused=True
    )


def open_study_run(spec: StudySpec, previous: PreviousRuns, extra_tags: Mapping[str, str] | None = None):
    """Start the study's parent run: the earlier one of ``previous`` to resume, or a new one tagged
    with the role, study and baseline hash (and ``extra_tags``)."""
    if previous.study_run_id:
        return retry_locked(start_run, run_id=previous.study_run_id)
    tags = {keys.TAG_ROLE: keys.ROLE_STUDY, keys.TAG_STUDY: spec.study, TAG_CONFIG_HASH: baseline_hash(spec)}
    return retry_locked(start_run, run_name=safe_name(spec.study), tags={**tags, **(extra_tags or {})})


def _with_trust(spec: StudySpec) -> StudySpec:
    return spec.model_copy(update={"model": spec.model.model_copy(update={"trust_model_file": True})})


def run_study(
    study: str | Path | StudySpec,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
    fresh: bool = False,
    trust_model_file: bool = False,
    executor: Executor | None = None,
    on_phase: PhaseFn | None = None,
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
        on_phase: called with one line as each phase starts ("baseline: ... measuring",
            "recipe 2 of 3: ..."); the CLI prints them. Default: logged at INFO level.

    Returns the runs made (or reused) and the study's leaderboard. Failed recipes are in
    ``result.failed``.
    """
    phase = on_phase or (lambda line: log.info("%s", line))
    spec = study if isinstance(study, StudySpec) else load_study(study, overrides)
    if not spec.recipes:
        raise ConfigError("recipes", "the study has no recipes, only a search block", "run it with netzip search")
    if trust_model_file:
        spec = _with_trust(spec)
    executor = executor or make_executor(spec.executor)
    try:
        uri = mlflow.get_tracking_uri()
        executor.prepare(spec, uri)  # e.g. Ray needs an http:// tracking server
        preflight(spec)  # the device exists, the power log can be read
        phase(f"study {spec.study}: loading the data")
        data = load_data(spec, progress)  # bad data and bad models fail here, before the store is touched
        phase(f"building the baseline model ({_model_line(spec)})")
        model = initial_model(spec, data)
        with leased_study(spec, uri) as experiment_id:
            previous = PreviousRuns() if fresh else find_previous(spec, experiment_id)
            reused = reuse_baseline(spec, previous)  # a baseline that cannot be loaded safely fails here, untouched
            with open_study_run(spec, previous) as parent:
                with failure_recorded():
                    return _run_in_parent(
                        spec, data, progress, previous, reused, parent.info.run_id, model, executor, experiment_id, phase
                    )
    finally:
        executor.close()


@contextmanager
def leased_study(spec: StudySpec, uri: str) -> Iterator[str]:
    """Hold the study's lease (:mod:`netzip_mlflow.study.lease`) and yield its experiment id, made the
    active experiment. A local store's lease is a lock file, taken before the store is touched; a
    server's is an experiment tag (it needs the experiment)."""
    experiment_id = None if lock_file(uri, spec.experiment_name, spec.study) else ensure_experiment(spec.experiment_name)
    with study_lease(uri, spec.experiment_name, spec.study, experiment_id):
        experiment_id = experiment_id or ensure_experiment(spec.experiment_name)
        retry_locked(mlflow.set_experiment, experiment_id=experiment_id)  # nested runs follow it
        yield experiment_id


@contextmanager
def failure_recorded() -> Iterator[None]:
    """Inside the active study run: Ctrl-C ends it KILLED ("interrupted by user"), anything else
    raised marks it FAILED with ``netzip.error``; the exception propagates either way."""
    try:
        yield
    except KeyboardInterrupt:
        end_interrupted()
        raise
    except BaseException as exc:
        record_failure(exc)
        raise


def _run_in_parent(
    spec: StudySpec,
    data: StudyData,
    progress: bool,
    previous: PreviousRuns,
    reused: tuple[nn.Module, str] | None,
    parent_id: str,
    model: BaselineModel,
    executor: Executor,
    experiment_id: str,
    phase: PhaseFn,
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
        retry_locked(mlflow.log_text, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), keys.STUDY_ARTIFACT)
        retry_locked(mlflow.log_params, {"seed": spec.seed, "recipes": len(spec.recipes), "data.train_samples": len(data.split.train), "data.test_samples": len(data.split.test), "data.skipped_files": len(getattr(data.split, "skipped", ()))})
    baseline, base_ref, base_run_id = baseline_for(spec, data, progress, reused, model, phase)
    result = StudyResult(
        spec.study, spec.experiment_name, parent_id, base_run_id, experiment_id=experiment_id,
        resumed=resumed, baseline_reused=reused is not None, killed=list(previous.killed),
    )
    pending = []
    for recipe in spec.recipes:
        outcome = _reused_outcome(recipe, previous) if reused else None
        if outcome is not None:
            result.outcomes.append(outcome)
        else:
            pending.append(recipe)
    job = StudyJob(spec, data, baseline, base_ref, parent_id, experiment_id, mlflow.get_tracking_uri(), progress)
    if result.outcomes:
        phase(f"{len(result.outcomes)} of {len(spec.recipes)} recipes reused from the interrupted study run")
    local = isinstance(executor, LocalExecutor)
    if pending and not local:
        phase(f"{len(pending)} recipes submitted to {type(executor).__name__}")
    result.outcomes.extend(executor.run_recipes(job, pending, _announced(run_recipe, phase, len(pending)) if local else run_recipe))
    phase("ranking the recipes and drawing the plots")
    result.leaderboard = log_leaderboard(spec, {o.run_id for o in result.outcomes}, result.notes)
    log_population(spec)
    return result
