"""Resuming an interrupted study: which earlier runs can be reused, and which were orphaned.

Runs are matched by study name and a hash of the resolved configuration, stored as the tag
``netzip.config_hash``:

* the study run and its baseline carry :func:`baseline_hash` (model, data, seed, task and the
  measurement settings: everything the baseline's numbers depend on);
* a recipe run carries :func:`recipe_hash` (technique, resolved params and the baseline hash).

Running a study again without ``--fresh`` reopens the latest study run with the same baseline hash,
marks its runs still ``RUNNING`` (left by a killed process) as ``KILLED``, reuses its FINISHED
baseline (model rebuilt from the run's tensors-only copy, see
:mod:`netzip_mlflow.tracking.stored_model`; its pickle only with ``--trust-model-file``) and FINISHED
recipe runs with a matching hash, and runs only what is missing. Two runs of the same study never
overlap: each holds the study's lease (:mod:`netzip_mlflow.study.lease`), so runs found RUNNING here
really are orphans.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import mlflow
from mlflow.entities import Run, RunStatus
from mlflow.tracking import MlflowClient

from netzip_mlflow.config.schema import RecipeSpec, StudySpec
from netzip_mlflow.tracking import keys
from netzip_mlflow.tracking.retry import retry_locked
from netzip_mlflow.tracking.search import search_all_runs

log = logging.getLogger(__name__)

TAG_CONFIG_HASH = keys.TAG_CONFIG_HASH
TAG_RESUMED = keys.TAG_RESUMED
KILLED_MESSAGE = "Interrupted: the process running this run stopped before it ended; resumed by a later run"


def _digest(obj: Mapping[str, Any]) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def baseline_hash(spec: StudySpec) -> str:
    """Hash of what the baseline's numbers depend on: model, data, seed, task and measurement settings.

    The OCS weights and ratio metrics (``evaluation.ratios``), the system-metrics switch, the
    watchdog (``evaluation.timeout_s``) and ``model.trust_model_file`` are left out: they do not
    change any measured number.
    """
    evaluation = spec.evaluation.model_dump(
        mode="json", exclude={"ratios", "system_metrics", "system_metrics_interval_s", "timeout_s"}
    )
    return _digest(
        {
            "model": spec.model.model_dump(mode="json", exclude={"trust_model_file"}),
            "data": spec.data.model_dump(mode="json"),
            "seed": spec.seed,
            "task": spec.task,
            "evaluation": evaluation,
        }
    )


def recipe_hash(recipe: RecipeSpec, base_hash: str) -> str:
    """Hash of a recipe's resolved config (technique, params with defaults) and its baseline's hash."""
    return _digest({"technique": recipe.technique, "params": dict(recipe.params), "baseline": base_hash})


@dataclass
class PreviousRuns:
    """What an earlier run of the same study left that can be reused."""

    study_run_id: str | None = None
    baseline: Run | None = None
    recipes: dict[str, Run] = field(default_factory=dict)  # recipe name -> FINISHED run with matching hash
    killed: list[str] = field(default_factory=list)  # run ids marked KILLED


def _search(client: MlflowClient, experiment_id: str, filter_string: str, order_by: list[str] | None = None) -> list[Run]:
    return search_all_runs(client, [experiment_id], filter_string, order_by=order_by, call=retry_locked)


def find_previous(spec: StudySpec, experiment_id: str, client: MlflowClient | None = None) -> PreviousRuns:
    """The latest study run of ``spec`` with the same baseline hash, and what in it can be reused.

    Runs of it still RUNNING are marked KILLED (the process that ran them is gone).
    """
    client = client or MlflowClient()
    base_hash = baseline_hash(spec)
    parents = _search(
        client,
        experiment_id,
        f"tags.`{keys.TAG_ROLE}` = '{keys.ROLE_STUDY}' and tags.`{keys.TAG_STUDY}` = '{spec.study}' "
        f"and tags.`{TAG_CONFIG_HASH}` = '{base_hash}'",
        order_by=["attributes.start_time DESC"],
    )
    if not parents:
        return PreviousRuns()
    parent = parents[0]
    found = PreviousRuns(study_run_id=parent.info.run_id)
    children = _search(client, experiment_id, f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    for run in children:
        if run.info.status == RunStatus.to_string(RunStatus.RUNNING):
            mark_killed(run.info.run_id, client)
            found.killed.append(run.info.run_id)
    finished = sorted(
        (r for r in children if r.info.status == "FINISHED"), key=lambda r: r.info.start_time or 0, reverse=True
    )
    for run in finished:
        tags = run.data.tags
        if tags.get(keys.TAG_ROLE) == keys.ROLE_BASELINE and tags.get(TAG_CONFIG_HASH) == base_hash:
            found.baseline = found.baseline or run
    if found.baseline is not None:
        wanted = {r.name: recipe_hash(r, base_hash) for r in spec.recipes}
        for run in finished:
            tags = run.data.tags
            name = tags.get(keys.TAG_RECIPE)
            if (
                tags.get(keys.TAG_ROLE) == keys.ROLE_COMPRESSED
                and name in wanted
                and tags.get(TAG_CONFIG_HASH) == wanted[name]
                and tags.get(keys.TAG_BASELINE_RUN) == found.baseline.info.run_id
            ):
                found.recipes.setdefault(name, run)
    return found


def mark_killed(run_id: str, client: MlflowClient | None = None) -> None:
    """End an orphaned RUNNING run as KILLED, saying why in ``netzip.error``."""
    client = client or MlflowClient()
    retry_locked(client.set_tag, run_id, keys.TAG_ERROR, KILLED_MESSAGE)
    retry_locked(client.set_terminated, run_id, "KILLED")
    log.warning("run %s was left RUNNING by an interrupted study; marked KILLED", run_id)
