"""The Ray tasks of :class:`~netzip_mlflow.study.executors.RayExecutor`: one recipe, or one baseline
evaluation on a machine class. Imported only when the Ray executor runs.

A task gets the study spec, the tracking URI, the study's parent run and the baseline run; it
rebuilds the data from the spec (built-in datasets ship in packages; a ``data.path`` must exist on
every worker, e.g. a shared mount), loads the baseline model from the baseline run's logged MLflow
model, and logs its own run nested under the parent run. Every run it makes is tagged with the Ray
node it ran on (``netzip.ray.node_id``, ``netzip.ray.node_ip``, ``netzip.ray.hostname``).
"""

from __future__ import annotations

import json
import logging
import socket
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ray

from netzip_mlflow.config.schema import RecipeSpec, ResourceSpec, StudySpec
from netzip_mlflow.study.jobs import RecipeFn, RecipeOutcome, StudyJob
from netzip_mlflow.tracking import keys

if TYPE_CHECKING:  # pragma: no cover - typing only
    from torch import nn

    from netzip_mlflow.evaluation.report import EvaluationReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteJob:
    """What a task needs to find its way: small and picklable (no data, no model)."""

    spec: StudySpec
    tracking_uri: str
    experiment_id: str
    study_run_id: str
    baseline_run_id: str


def task_options(resources: ResourceSpec) -> dict[str, Any]:
    """``.options(...)`` for a task with ``resources``; no retries (a retried recipe would log twice)."""
    options: dict[str, Any] = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus, "max_retries": 0}
    if resources.custom:
        options["resources"] = dict(resources.custom)
    return options


def node_tags(resources: dict[str, Any] | None = None) -> dict[str, str]:
    """Tags naming the Ray node this task runs on (and what it asked for)."""
    context = ray.get_runtime_context()
    tags = {
        keys.TAG_EXECUTOR: "ray",
        keys.TAG_RAY_NODE_ID: context.get_node_id(),
        keys.TAG_RAY_NODE_IP: ray.util.get_node_ip_address(),
        keys.TAG_RAY_HOSTNAME: socket.gethostname(),
    }
    if resources is not None:
        tags[keys.TAG_RAY_RESOURCES] = json.dumps(resources, sort_keys=True)
    return tags


def _enter(job: RemoteJob) -> None:
    import mlflow

    mlflow.set_tracking_uri(job.tracking_uri)
    mlflow.set_experiment(experiment_id=job.experiment_id)


def _baseline_model(job: RemoteJob) -> nn.Module:
    import warnings

    import mlflow

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Logged by this study's own baseline run on the team's server: a trusted store.
        return mlflow.pytorch.load_model(f"runs:/{job.baseline_run_id}/model", map_location="cpu").eval()


def _tag_run(run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag
    from mlflow.tracking import MlflowClient

    MlflowClient().log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


@ray.remote
def baseline_task(job: RemoteJob, hw_class: str, resources: dict[str, Any]) -> EvaluationReport:
    """Evaluate the study's baseline model on a node of machine class ``hw_class``.

    Logs run ``baseline@<hw_class>`` (role ``baseline``) under the study run and returns its report,
    against which that class's recipes are compared.
    """
    import mlflow

    from netzip_mlflow.api import evaluate
    from netzip_mlflow.study.context import evaluation_config, load_data
    from netzip_mlflow.tracking.context import start_run

    _enter(job)
    spec = job.spec
    data = load_data(spec)
    model = _baseline_model(job)
    tags = {
        keys.TAG_ROLE: keys.ROLE_BASELINE, keys.TAG_STUDY: spec.study, keys.TAG_HW_CLASS: hw_class,
        keys.TAG_BASELINE_OF: job.baseline_run_id, **node_tags(resources),
    }
    with start_run(run_name=f"baseline@{hw_class}", parent_run_id=job.study_run_id, tags=tags):
        model_class = f"{type(model).__module__}.{type(model).__qualname__}"  # what was really loaded
        mlflow.log_params({"model.class": model_class, "data.source": data.split.name, "seed": spec.seed})
        report = evaluate(model, data.test, spec.task, evaluation_config(spec, data.split.classes, False), log_to_mlflow=True)
    report.exemplar_images = {}
    return report


@ray.remote
def recipe_task(
    job: RemoteJob, recipe: RecipeSpec, base_report: EvaluationReport, run_recipe: RecipeFn | None = None
) -> RecipeOutcome:
    """Compress, evaluate and log one recipe nested under the study run.

    ``run_recipe``: ``None`` runs :func:`netzip_mlflow.study.recipe.run_recipe` (imported here, not
    pickled with the task); tests pass a stand-in.
    """
    from netzip_mlflow.study.context import load_data

    if run_recipe is None:
        from netzip_mlflow.study.recipe import run_recipe

    _enter(job)
    data = load_data(job.spec)  # a fresh loader: the same shuffle as the local executor's reset
    model = _baseline_model(job)
    outcome = run_recipe(recipe, job.spec, data, model, base_report, False, parent_run_id=job.study_run_id)
    tags = node_tags(recipe.resources.model_dump())
    if recipe.resources.hardware_class:
        tags[keys.TAG_HW_CLASS] = recipe.resources.hardware_class
    _tag_run(outcome.run_id, tags)
    return outcome


def record_lost_task(job: StudyJob, recipe: RecipeSpec, exc: BaseException) -> RecipeOutcome:
    """Account for a recipe whose task died (worker lost, node gone, baseline task failed).

    Its run, if it got as far as making one, is marked FAILED; otherwise a FAILED run is made, so
    every recipe of the study has a run that says what happened.
    """
    from mlflow.entities import RunStatus, RunTag
    from mlflow.tracking import MlflowClient

    from netzip_mlflow.study.recipe import error_message

    client = MlflowClient(job.tracking_uri)
    message = error_message(exc)
    found = client.search_runs(
        [job.experiment_id],
        f"tags.`mlflow.parentRunId` = '{job.study_run_id}' and tags.`{keys.TAG_RECIPE}` = '{recipe.name}'",
    )
    if found and found[0].info.status == "FINISHED":  # the run was complete; only its node tags were lost
        run = found[0]
        return RecipeOutcome(recipe.name, recipe.technique, run.info.run_id, "FINISHED", ocs=run.data.metrics.get(keys.OCS))
    if found:
        run_id = found[0].info.run_id
    else:
        tags = {
            keys.TAG_ROLE: keys.ROLE_COMPRESSED, keys.TAG_STUDY: job.spec.study, keys.TAG_TECHNIQUE: recipe.technique,
            keys.TAG_RECIPE: recipe.name, keys.TAG_BASELINE_RUN: job.baseline_run_id,
            "mlflow.parentRunId": job.study_run_id, keys.TAG_EXECUTOR: "ray",
        }
        run_id = client.create_run(job.experiment_id, tags=tags, run_name=recipe.name).info.run_id
    client.log_batch(run_id, tags=[RunTag(keys.TAG_ERROR, message)])
    client.log_text(run_id, "".join(traceback.format_exception(exc)), keys.TRACEBACK_ARTIFACT)
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
    log.error("recipe %s was lost on the Ray cluster: %s", recipe.name, message)
    return RecipeOutcome(recipe.name, recipe.technique, run_id, "FAILED", message)
