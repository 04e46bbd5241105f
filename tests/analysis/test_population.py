"""The population method read back from logged runs: seeds grouped per recipe, Welch test as scipy's."""

import io
from contextlib import redirect_stdout

import mlflow
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from netzip_mlflow.analysis.class_impact import class_impact_population
from netzip_mlflow.analysis.population import population_impact, population_table
from netzip_mlflow.cli.main import main
from netzip_mlflow.errors import TrackingError
from netzip_mlflow.tracking import keys

N_CLASSES = 3
LABELS = np.repeat(np.arange(N_CLASSES), 20)


def _predictions(seed: int, damage_class: int | None) -> np.ndarray:
    """Labels with a few seeded errors; ``damage_class`` loses 8 to 10 of its 20 samples."""
    rng = np.random.default_rng(seed)
    pred = LABELS.copy()
    noisy = rng.choice(len(LABELS), size=3, replace=False)
    pred[noisy] = (pred[noisy] + 1) % N_CLASSES
    if damage_class is not None:
        idx = np.flatnonzero(LABELS == damage_class)[: 8 + seed % 3]
        pred[idx] = (damage_class + 1) % N_CLASSES
    return pred


def _log_run(role: str, name: str, top1: np.ndarray, tags: dict, params: dict, tmp_path) -> str:
    with mlflow.start_run(run_name=name, tags={keys.TAG_ROLE: role, keys.TAG_STUDY: "s", **tags}) as run:
        mlflow.log_params(params)
        path = tmp_path / run.info.run_id / "predictions.npz"  # the contract name
        path.parent.mkdir()
        np.savez_compressed(path, labels=LABELS, topk=top1[:, None], num_classes=N_CLASSES)
        mlflow.log_artifact(str(path), "predictions")
    return run.info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("population")
    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("pop")
    base, comp = {}, {}
    for seed in (0, 1, 2):
        base[seed] = _predictions(10 + seed, None)
        base_id = _log_run(keys.ROLE_BASELINE, "baseline", base[seed], {}, {"seed": seed}, tmp_path)
        comp[seed] = _predictions(20 + seed, damage_class=1)
        tags = {keys.TAG_RECIPE: "prune", keys.TAG_BASELINE_RUN: base_id}
        _log_run(keys.ROLE_COMPRESSED, "prune", comp[seed], tags, {}, tmp_path)
    # a recipe run with one seed only: the population method does not apply to it
    _log_run(keys.ROLE_COMPRESSED, "ptq", base[0], {keys.TAG_RECIPE: "ptq", keys.TAG_BASELINE_RUN: base_id}, {}, tmp_path)
    yield uri, base, comp
    mlflow.set_tracking_uri(previous)


def test_population_impact_equals_the_direct_computation(store):
    _, base, comp = store
    (result,) = population_impact("pop", "s")

    assert result.recipe == "prune"
    assert result.seeds == (0, 1, 2)
    expected = class_impact_population(LABELS, [base[s] for s in (0, 1, 2)], [comp[s] for s in (0, 1, 2)])
    pd.testing.assert_frame_equal(result.impact.per_class, expected.per_class)
    # class 1 lost about half its samples in every seed; relative to the model accuracy (Hooker et
    # al.'s normalisation) the untouched classes 0 and 2 therefore moved up
    assert result.impact.degraded == ["1"]
    assert result.impact.improved == ["0", "2"]


def test_welch_p_value_of_the_damaged_class_is_scipys(store):
    _, base, comp = store
    (result,) = population_impact("pop", "s")

    def recall_gap(preds):  # class-1 recall minus the population's mean top-1 accuracy
        mean_top1 = np.mean([(p == LABELS).mean() for p in preds])
        return [(p[LABELS == 1] == 1).mean() - mean_top1 for p in preds]

    b = recall_gap([base[s] for s in (0, 1, 2)])
    c = recall_gap([comp[s] for s in (0, 1, 2)])
    expected = stats.ttest_ind(b, c, equal_var=False).pvalue
    assert result.impact.per_class.loc[1, "p_value"] == pytest.approx(expected)


def test_population_table_has_one_row_per_recipe_and_class(store):
    table = population_table(population_impact("pop", "s"))

    assert len(table) == N_CLASSES
    assert list(table.columns[:3]) == ["recipe", "seeds", "alpha"]
    assert set(table["seeds"]) == {"0,1,2"}


def test_cli_prints_the_impacted_classes(store):
    uri, _, _ = store
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["--tracking-uri", uri, "class-impact", "--experiment", "pop", "--study", "s", "--format", "csv"])

    assert code == 0
    table = pd.read_csv(io.StringIO(out.getvalue()))
    assert table.loc[table["direction"] == "degraded", "class_index"].tolist() == [1]
    assert table.loc[1, "impacted"]


def test_cli_without_repeated_seeds_says_how_to_get_them(store):
    uri, _, _ = store
    assert main(["--tracking-uri", uri, "class-impact", "--experiment", "pop", "--study", "other"]) == 2


def test_unknown_experiment_is_a_tracking_error(store):
    with pytest.raises(TrackingError, match="not found"):
        population_impact("nope", "s")
