"""Running a compression search: the study's baseline, then Optuna trials, each a recipe run.

MLflow layout: the study's parent run (tag ``netzip.search=true``) holds the baseline run and one
nested run per trial. A trial that ran is an ordinary ``compressed`` recipe run made by the study
machinery (:func:`netzip_mlflow.study.recipe.run_recipe`: same compression, checks, evaluator and
model logging), with the trial number and the sampled parameters as params ``trial.*`` and the
search tags (``netzip.search.trial``, ``.state``, ``.feasible``, ``.violated``). A trial stopped early
on its proxy is a small run with role ``trial``: its proxy metrics and the reason.

Optuna samples: TPE for one objective, NSGA-II for several (``search.sampler``), with the
constraints through ``Trial.set_constraint`` (Optuna 5's replacement of ``constraints_func``). Its
study lives beside the tracking store
(:mod:`netzip_mlflow.search.storage`); running the search again resumes it: the MLflow parent run and
baseline are reused (as ``netzip run`` does), trials a killed process left RUNNING are marked FAIL
(and their runs KILLED), and only the missing trials run, numbered on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from netzip_mlflow.config.loader import load_study
from netzip_mlflow.config.schema import StudySpec
from netzip_mlflow.errors import ConfigError, NetzipError
from netzip_mlflow.search import objective as obj
from netzip_mlflow.search import proxy as px
from netzip_mlflow.search.space import policy_group_names, sample_recipe
from netzip_mlflow.search.storage import resolve_storage
from netzip_mlflow.tracking.uri import mask_credentials
from netzip_mlflow.study.context import StudyData, example_inputs, load_data
from netzip_mlflow.study.executors import reset_data_order
from netzip_mlflow.study.resume import TAG_RESUMED, PreviousRuns, find_previous
from netzip_mlflow.study.baseline import baseline_for, initial_model, reuse_baseline
from netzip_mlflow.study.preflight import preflight
from netzip_mlflow.study.recipe import run_recipe, safe_name
from netzip_mlflow.study.runner import _with_trust, failure_recorded, leased_study, open_study_run
from netzip_mlflow.tracking.context import start_run
from netzip_mlflow.tracking.retry import retry_locked
from netzip_mlflow.tracking import keys

log = logging.getLogger(__name__)

#: Optuna user attributes of a trial.
ATTR_RUN_ID = "mlflow_run_id"
ATTR_CONSTRAINTS = "constraints"
ATTR_ERROR = "error"
ATTR_PRUNED = "pruned_reason"
ATTR_VIOLATED = "violated"
_BIG = 1e30  # stands for "not measured" in Optuna's constraint values (JSON has no inf)


class TrialFailed(NetzipError):
    """A trial's recipe failed (its run is FAILED with the reason); the search goes on."""


@dataclass(frozen=True)
class TrialOutcome:
    """One trial: its number, run, state (COMPLETE / PRUNED / FAIL), values and feasibility."""

    number: int
    run_id: str | None
    state: str
    params: dict[str, Any]
    values: list[float] | None = None
    feasible: bool | None = None
    violated: list[str] = field(default_factory=list)
    note: str | None = None  # the pruning reason or the error


@dataclass
class SearchResult:
    """What a search ran, and its best feasible trial(s)."""

    study: str
    experiment: str
    study_run_id: str
    baseline_run_id: str
    optuna_study: str
    storage: str
    trials: list[TrialOutcome]
    best: list[TrialOutcome]
    objectives: list[str]
    resumed: bool = False

    @property
    def failed(self) -> list[TrialOutcome]:
        """Trials whose recipe failed."""
        return [t for t in self.trials if t.state == "FAIL"]


def _search_hash(spec: StudySpec) -> str:
    """Hash of what defines the search space and goal (not its budget or storage)."""
    dump = spec.search.model_dump(mode="json", exclude={"n_trials", "timeout_s", "storage", "pruning"})
    text = json.dumps(dump, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def optuna_study_name(spec: StudySpec, study_run_id: str) -> str:
    """The Optuna study of this search under MLflow study run ``study_run_id``."""
    return f"{spec.study}:{study_run_id}:{_search_hash(spec)}"


def _sampler(spec: StudySpec):
    """The search's sampler; constraints reach it through ``Trial.set_constraint`` (Optuna 5)."""
    import optuna

    s = spec.search
    kind = s.sampler if s.sampler != "auto" else ("nsga2" if s.multi_objective else "tpe")
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if kind == "nsga2":
        population = s.population_size or max(4, min(50, s.n_trials // 3))
        return optuna.samplers.NSGAIISampler(population_size=population, seed=s.seed)
    startup = s.startup_trials or max(1, min(10, s.n_trials // 3))
    return optuna.samplers.TPESampler(n_startup_trials=startup, seed=s.seed)


def _set_constraints(trial, bounds: list[obj.Constraint], values: list[float]) -> None:
    """Hand the constraint values to Optuna (its samplers read them) and keep them as a user attr."""
    finite = _finite(values)
    for bound, value in zip(bounds, finite):
        trial.set_constraint(bound.label, value)
    trial.set_user_attr(ATTR_CONSTRAINTS, finite)


def _finite(values: list[float]) -> list[float]:
    return [v if math.isfinite(v) else _BIG for v in values]


def _counted(trial) -> bool:
    """Whether a finished trial counts toward ``n_trials`` (one killed with its process does not)."""
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and ATTR_ERROR in trial.user_attrs


def _fail_stale_trials(study) -> int:
    """Mark trials left RUNNING by a killed search FAIL (not counted); returns how many."""
    from optuna.trial import TrialState

    stale = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    for trial in stale:
        study.tell(trial.number, state=TrialState.FAIL)
        log.warning("Optuna trial %d was left RUNNING by an interrupted search; marked FAIL", trial.number)
    return len(stale)


@dataclass
class _Context:
    """What every trial of one search shares."""

    spec: StudySpec
    data: StudyData
    baseline: Any
    base_ref: Any  # the baseline's EvaluationReport, or its run id when reused
    bounds: list[obj.Constraint]
    groups: dict[tuple[int, int], list[str]]
    parent_id: str
    progress: bool
    client: MlflowClient


def _trial_params(trial) -> dict[str, str]:
    out = {f"{keys.PARAM_TRIAL_PREFIX}number": str(trial.number)}
    out.update({f"{keys.PARAM_TRIAL_PREFIX}{k}": str(v) for k, v in trial.params.items()})
    return out


def _log_pruned(ctx: _Context, trial, recipe, result: px.ProxyResult, reason: str, exact: bool) -> str:
    tags = {
        keys.TAG_ROLE: keys.ROLE_TRIAL, keys.TAG_STUDY: ctx.spec.study, keys.TAG_RECIPE: recipe.name,
        keys.TAG_TECHNIQUE: recipe.technique, keys.TAG_TRIAL: str(trial.number), keys.TAG_TRIAL_STATE: "PRUNED",
        keys.TAG_TRIAL_PRUNED_REASON: reason[:500], keys.TAG_TRIAL_FEASIBLE: "false" if exact else "unknown",
    }
    with retry_locked(start_run, run_name=safe_name(recipe.name), nested=True, tags=tags) as run:
        retry_locked(mlflow.log_params, {**_trial_params(trial), **{f"recipe.{k}": str(v) for k, v in recipe.params.items()}})
        retry_locked(mlflow.log_metrics, result.as_metrics())
    return run.info.run_id


def _maybe_prune(ctx: _Context, trial, recipe) -> None:
    """Measure the proxy and stop the trial (``optuna.TrialPruned``) when a pruning rule says so."""
    import optuna

    pruning = ctx.spec.search.pruning
    if not pruning.enabled or ctx.spec.task != "classification":
        return
    plan = px.plan(recipe)
    if not px.useful(plan, ctx.bounds, pruning.min_proxy_accuracy):
        return
    try:
        result = px.measure(plan, ctx.baseline, ctx.data.train, ctx.data.test, example_inputs(ctx.data))
    except NetzipError as exc:  # the recipe itself will fail the same way, in its own FAILED run
        log.info("trial %d: no proxy (%s); running the recipe", trial.number, exc)
        return
    reason = px.prune_reason(plan, result, ctx.bounds, pruning.min_proxy_accuracy)
    if reason is None:
        return
    measured = {keys.MACS: result.macs, keys.TOP1: result.top1}
    known = [px.exact_for(plan, b) for b in ctx.bounds]  # which constraints the proxy measures exactly
    values = [b.value(measured) if ok else 1.0 for b, ok in zip(ctx.bounds, known)]  # 1.0: unknown, counted broken
    violated = [b.label for b, ok, v in zip(ctx.bounds, known, values) if ok and v > 0]
    exact = bool(violated)
    _set_constraints(trial, ctx.bounds, values)
    trial.set_user_attr(ATTR_VIOLATED, violated)
    trial.set_user_attr(ATTR_PRUNED, reason)
    trial.set_user_attr(ATTR_RUN_ID, _log_pruned(ctx, trial, recipe, result, reason, exact))
    log.info("trial %d stopped early: %s", trial.number, reason)
    raise optuna.TrialPruned(reason)


def _tag_trial(ctx: _Context, run_id: str, trial, state: str, feasible: bool | None, violated: list[str]) -> None:
    """Add the trial's params and search tags to its (ended) recipe run."""
    from mlflow.entities import Param, RunTag

    tags = {keys.TAG_TRIAL: str(trial.number), keys.TAG_TRIAL_STATE: state}
    if feasible is not None:
        tags[keys.TAG_TRIAL_FEASIBLE] = "true" if feasible else "false"
        tags[keys.TAG_TRIAL_VIOLATED] = ",".join(violated)
    retry_locked(
        ctx.client.log_batch, run_id,
        params=[Param(k, v) for k, v in _trial_params(trial).items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )


def _objective(ctx: _Context):
    def run_trial(trial) -> float | tuple[float, ...]:
        recipe = sample_recipe(trial, ctx.spec.search, f"trial_{trial.number:04d}", ctx.groups)
        reset_data_order(ctx.data, ctx.spec.seed)  # every trial sees the data in the same order
        _maybe_prune(ctx, trial, recipe)
        reset_data_order(ctx.data, ctx.spec.seed)
        outcome = run_recipe(recipe, ctx.spec, ctx.data, ctx.baseline, ctx.base_ref, ctx.progress)
        trial.set_user_attr(ATTR_RUN_ID, outcome.run_id)
        if outcome.status != "FINISHED":
            trial.set_user_attr(ATTR_ERROR, outcome.error or "failed")
            _tag_trial(ctx, outcome.run_id, trial, "FAIL", None, [])
            raise TrialFailed(outcome.error or "the recipe failed")
        metrics = ctx.client.get_run(outcome.run_id).data.metrics
        try:
            values = obj.objective_values(ctx.spec.search, metrics)
        except NetzipError as exc:
            trial.set_user_attr(ATTR_ERROR, str(exc))
            _tag_trial(ctx, outcome.run_id, trial, "FAIL", None, [])
            raise TrialFailed(str(exc)) from None
        constraint_values = [b.value(metrics) for b in ctx.bounds]
        violated = [b.label for b, v in zip(ctx.bounds, constraint_values) if v > 0]
        _set_constraints(trial, ctx.bounds, constraint_values)
        trial.set_user_attr(ATTR_VIOLATED, violated)
        _tag_trial(ctx, outcome.run_id, trial, "COMPLETE", not violated, violated)
        return values[0] if len(values) == 1 else tuple(values)

    return run_trial


def _outcome(trial) -> TrialOutcome:
    from optuna.trial import TrialState

    constraints = trial.user_attrs.get(ATTR_CONSTRAINTS)
    feasible = None if constraints is None else obj.is_feasible(constraints)
    if trial.state == TrialState.PRUNED:
        feasible = False if feasible is False else None
    note = trial.user_attrs.get(ATTR_PRUNED) or trial.user_attrs.get(ATTR_ERROR)
    values = list(trial.values) if trial.state == TrialState.COMPLETE and trial.values else None
    return TrialOutcome(
        trial.number, trial.user_attrs.get(ATTR_RUN_ID), trial.state.name, dict(trial.params),
        values, feasible, list(trial.user_attrs.get(ATTR_VIOLATED, [])), note,
    )


def _best(outcomes: list[TrialOutcome], directions: list[str]) -> list[TrialOutcome]:
    done = [t for t in outcomes if t.values is not None]
    picked = obj.best_indices([t.values for t in done], [bool(t.feasible) for t in done], directions)
    return [done[i] for i in picked]


def search(
    study: str | Path | StudySpec,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
    fresh: bool = False,
    trust_model_file: bool = False,
    storage: str | None = None,
) -> SearchResult:
    """Run (or resume) the search of a study YAML's ``search:`` block.

    Args:
        study: a study YAML path or a validated :class:`StudySpec` with a ``search`` block.
        overrides: dotted-key overrides applied before validation (``{"search.n_trials": 4}``).
        progress: show progress bars.
        fresh: start a new study run (and a new Optuna study) instead of resuming the last one.
        trust_model_file: as for :func:`netzip_mlflow.study.runner.run_study`.
        storage: Optuna storage URL; overrides ``search.storage`` (default: beside the tracking store).

    Returns the trials (COMPLETE, PRUNED, FAIL) and the best feasible one(s). A failing trial
    recipe is FAIL (its run FAILED with ``netzip.error``) and the search goes on.
    """
    import optuna

    spec = study if isinstance(study, StudySpec) else load_study(study, overrides)
    if spec.search is None:
        raise ConfigError("search", "the study has no search block", "add search: {recipes: [...], ...} or use netzip run")
    if trust_model_file:
        spec = _with_trust(spec)
    storage_url = resolve_storage(storage or spec.search.storage, mlflow.get_tracking_uri())
    preflight(spec)  # the device exists, the power log can be read
    data = load_data(spec, progress)
    model = initial_model(spec, data)
    groups = _resolve_groups(spec, model.model, data)  # the nn.Module inside the BaselineModel
    with leased_study(spec, mlflow.get_tracking_uri()) as experiment_id:  # one writer per study
        previous = PreviousRuns() if fresh else find_previous(spec, experiment_id)
        reused = reuse_baseline(spec, previous)  # a baseline that cannot be loaded safely fails here, untouched
        with open_study_run(spec, previous, {keys.TAG_SEARCH: "true"}) as parent:
            with failure_recorded():
                return _search_in_parent(
                    spec, data, model, groups, previous, reused, parent.info.run_id, storage_url, progress, optuna
                )


def _resolve_groups(spec: StudySpec, model, data: StudyData) -> dict[tuple[int, int], list[str]]:
    """Every searched policy's layer groups: ``auto`` resolved on the model, explicit ones checked."""
    from netzip_mlflow.compression.structured import policy_groups

    names = dict(model.named_modules())
    out: dict[tuple[int, int], list[str]] = {}
    for (i, k), explicit in policy_group_names(spec.search).items():
        if explicit is None:
            out[(i, k)] = policy_groups(model.eval(), example_inputs(data))
            continue
        for name in explicit:
            if name not in names:
                raise ConfigError(
                    f"search.recipes[{i}].steps[{k}].params.layer_policy.groups",
                    f"{name!r} is not a module of the model", "use names from model.named_modules(), or groups: auto",
                )
        out[(i, k)] = explicit
    return out


def _search_in_parent(spec, data, model, groups, previous, reused, parent_id, storage_url, progress, optuna) -> SearchResult:
    resumed = previous.study_run_id is not None
    client = MlflowClient()
    if resumed:
        retry_locked(mlflow.set_tag, TAG_RESUMED, "true")
        retry_locked(mlflow.set_tag, keys.TAG_SEARCH, "true")
    baseline, base_ref, base_run_id = baseline_for(spec, data, progress, reused, model)
    base_metrics = client.get_run(base_run_id).data.metrics
    r = spec.evaluation.ratios
    performance = obj.performance_metric(spec.task, r.performance, "performance" in r.model_fields_set)
    bounds = obj.constraints(spec.search, base_metrics, performance)
    name = optuna_study_name(spec, parent_id)
    directions = [o.resolved_direction for o in spec.search.objective]
    ostudy = optuna.create_study(
        storage=storage_url, study_name=name, load_if_exists=True, directions=directions,
        sampler=_sampler(spec),
    )
    retry_locked(mlflow.set_tags, {keys.TAG_SEARCH_OPTUNA_STUDY: name, keys.TAG_SEARCH_STORAGE: mask_credentials(storage_url)})
    _fail_stale_trials(ostudy)
    done = sum(_counted(t) for t in ostudy.get_trials(deepcopy=False))
    remaining = max(0, spec.search.n_trials - done)
    if resumed or done:
        log.warning("resuming search %s: %d of %d trials done, %d to run", name, done, spec.search.n_trials, remaining)
    ctx = _Context(spec, data, baseline, base_ref, bounds, groups, parent_id, progress, client)

    def stop_at_total(study, _trial) -> None:  # other workers may share the storage
        if sum(_counted(t) for t in study.get_trials(deepcopy=False)) >= spec.search.n_trials:
            study.stop()

    if remaining:
        ostudy.optimize(
            _objective(ctx), n_trials=remaining, timeout=spec.search.timeout_s, catch=(TrialFailed,),
            callbacks=[stop_at_total], show_progress_bar=False,
        )
    outcomes = [_outcome(t) for t in ostudy.get_trials(deepcopy=False) if t.state.is_finished() and _counted(t)]
    best = _best(outcomes, directions)
    result = SearchResult(
        spec.study, spec.experiment_name, parent_id, base_run_id, name, mask_credentials(storage_url),
        outcomes, best, [o.metric for o in spec.search.objective], resumed,
    )
    from netzip_mlflow.search.artifacts import log_search_artifacts

    log_search_artifacts(result, ostudy, spec, bounds, base_metrics, client)
    return result
