"""Class-level impact over several seeds: Hooker et al.'s population method, from logged runs.

A study run more than once with different seeds (``netzip run study.yaml --set seed=1``, ...) holds, for
each recipe, one compressed run per seed, each pointing at the baseline trained with that seed. When a
recipe has at least two seeds, the per-class Welch t-test of
:func:`~netzip_mlflow.analysis.class_impact.class_impact_population` tells which classes changed
significantly; a recipe with one seed keeps the single-model pipeline of seed 002 (logged on its run).

Everything is read back from MLflow (run tags, params and the ``predictions/predictions.npz``
artifact); nothing is recomputed from the models.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from netzip_mlflow.analysis.class_impact import DEFAULT_ALPHA, ClassImpact, class_impact_population
from netzip_mlflow.errors import DataError, TrackingError
from netzip_mlflow.evaluation.accuracy import Predictions
from netzip_mlflow.tracking import keys
from netzip_mlflow.tracking.runs import load_predictions
from netzip_mlflow.tracking.search import search_all_runs
from netzip_mlflow.tracking.uri import mask_credentials

if TYPE_CHECKING:
    import pandas as pd

SEED_PARAM = "seed"


@dataclass(frozen=True)
class PopulationImpact:
    """The population analysis of one recipe.

    Attributes:
        recipe: the recipe name (``netzip.recipe`` tag).
        seeds: the seeds whose baseline and compressed runs were compared, ascending.
        impact: the Welch-test class impact (``impact.method`` is the population method).
        run_ids: the compressed run of each seed, in the order of ``seeds``.
    """

    recipe: str
    seeds: tuple[int, ...]
    impact: ClassImpact
    run_ids: tuple[str, ...] = field(default=())


def _search(client: MlflowClient, experiment_ids: list[str], study: str, role: str) -> list[Run]:
    study_q = study.replace("'", "\\'")
    query = f"tags.`{keys.TAG_STUDY}` = '{study_q}' AND tags.`{keys.TAG_ROLE}` = '{role}' AND attributes.status = 'FINISHED'"
    return search_all_runs(client, experiment_ids, query)


def _experiment_ids(client: MlflowClient, experiment: str) -> list[str]:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise TrackingError(f"experiment {experiment!r} was not found in {mask_credentials(client.tracking_uri)}; check its name")
    return [found.experiment_id]


def _predictions(client: MlflowClient, run_id: str, cache: dict[str, Predictions]) -> Predictions:
    if run_id not in cache:
        loaded = load_predictions(run_id, client)
        if loaded is None:
            raise DataError(
                f"run {run_id} has no predictions/predictions.npz artifact; re-run it with this "
                "version of netzip-mlflow to log its predictions"
            )
        cache[run_id] = loaded
    return cache[run_id]


def recipe_seeds(
    compressed: Sequence[Run], baseline_seed: dict[str, int]
) -> dict[str, dict[int, Run]]:
    """Recipe name -> seed -> its newest compressed run (runs whose baseline has no seed are skipped)."""
    grouped: dict[str, dict[int, Run]] = defaultdict(dict)
    for run in sorted(compressed, key=lambda r: r.info.start_time or 0):
        recipe = run.data.tags.get(keys.TAG_RECIPE)
        seed = baseline_seed.get(run.data.tags.get(keys.TAG_BASELINE_RUN, ""))
        if recipe is not None and seed is not None:
            grouped[recipe][seed] = run  # later runs of the same seed replace earlier ones
    return dict(grouped)


def population_impact(
    experiment: str,
    study: str,
    alpha: float = DEFAULT_ALPHA,
    min_seeds: int = 2,
    client: MlflowClient | None = None,
) -> list[PopulationImpact]:
    """The population class impact of each recipe of ``study`` that was run with ``min_seeds``+ seeds.

    Args:
        experiment: the MLflow experiment name of the study.
        study: the study name (``netzip.study`` tag).
        alpha: significance level of the per-class Welch t-test.
        min_seeds: the fewest seeds a recipe needs (at least 2: a t-test needs two samples a side).

    Raises:
        TrackingError: the experiment does not exist.
        DataError: a run lacks its predictions artifact, or seeds evaluated different test sets.
    """
    client = client or MlflowClient()
    ids = _experiment_ids(client, experiment)
    baselines = {
        r.info.run_id: int(r.data.params[SEED_PARAM])
        for r in _search(client, ids, study, keys.ROLE_BASELINE)
        if SEED_PARAM in r.data.params
    }
    cache: dict[str, Predictions] = {}
    results = []
    for recipe, by_seed in sorted(recipe_seeds(_search(client, ids, study, keys.ROLE_COMPRESSED), baselines).items()):
        if len(by_seed) < max(2, min_seeds):
            continue
        seeds = tuple(sorted(by_seed))
        runs = [by_seed[s] for s in seeds]
        compressed = [_predictions(client, r.info.run_id, cache) for r in runs]
        base = [_predictions(client, r.data.tags[keys.TAG_BASELINE_RUN], cache) for r in runs]
        labels = compressed[0].labels
        if any(not np.array_equal(p.labels, labels) for p in (*compressed, *base)):
            raise DataError(
                f"recipe {recipe!r}: the seeds were evaluated on different test sets; the population "
                "method needs one test set (keep data.test_fraction and the data seed fixed)"
            )
        impact = class_impact_population(
            labels, [p.top1 for p in base], [p.top1 for p in compressed], alpha=alpha,
            num_classes=compressed[0].num_classes,
        )
        results.append(PopulationImpact(recipe, seeds, impact, tuple(r.info.run_id for r in runs)))
    return results


def population_table(results: Sequence[PopulationImpact]) -> pd.DataFrame:
    """One row per recipe and class: the recipe, its seeds, and the per-class t-test columns."""
    import pandas as pd

    frames = [
        r.impact.per_class.assign(recipe=r.recipe, seeds=",".join(map(str, r.seeds)), alpha=r.impact.alpha)
        for r in results
    ]
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames, ignore_index=True)
    first = ["recipe", "seeds", "alpha"]
    return table[first + [c for c in table.columns if c not in first]]
