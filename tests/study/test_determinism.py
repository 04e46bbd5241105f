"""Same study, same seed: the same accuracies and ops/size figures (timing and energy aside)."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from netzip_mlflow.study.runner import run_study
from netzip_mlflow.tracking import keys

pytestmark = pytest.mark.slow

RECIPES = [
    {"name": "ptq_int8", "technique": "ptq", "params": {"calibration_batches": 1}},
    {"name": "gup_50_ft", "technique": "prune_unstructured", "params": {"amount": 0.5, "finetune_epochs": 1}},
]
REPRODUCIBLE = (
    keys.TOP1, keys.TOP5, keys.F1_MACRO, keys.PRECISION_MICRO, keys.MACS, keys.MACS_EFFECTIVE, keys.CHATS,
    keys.DISK_MB, keys.PARAMS, keys.PARAMS_NONZERO, keys.SPARSITY,
)
COMPARED_ONLY = (keys.AGREEMENT, keys.RATIO_PERFORMANCE, keys.RATIO_COMPRESSION, keys.CIE_CLASSES, keys.CIE_IMAGES)


def _metrics(client, result):
    out = {"baseline": client.get_run(result.baseline_run_id).data.metrics}
    for outcome in result.outcomes:
        assert outcome.status == "FINISHED", outcome
        out[outcome.recipe] = client.get_run(outcome.run_id).data.metrics
    return out


def test_same_seed_same_numbers_and_fresh_vs_resume(study_file, store):
    path = study_file("determinism", recipes=RECIPES, model={"arch": "tiny_cnn", "train": {"epochs": 2, "lr": 0.1}})
    client = MlflowClient(store)
    first = run_study(path, progress=False)
    second = run_study(path, progress=False, fresh=True)  # a new study run, everything re-run
    assert second.study_run_id != first.study_run_id and second.baseline_run_id != first.baseline_run_id
    a, b = _metrics(client, first), _metrics(client, second)
    for name in a:
        keys_here = REPRODUCIBLE + (COMPARED_ONLY if name != "baseline" else ())
        for key in keys_here:
            if key in a[name] or key in b[name]:
                assert a[name][key] == b[name][key], (name, key, a[name][key], b[name][key])
        # torch.save writes a per-save serialization id into the archive: a byte or two of gzip noise
        assert a[name][keys.DISK_MB_GZIP] == pytest.approx(b[name][keys.DISK_MB_GZIP], abs=16e-6), name
    assert 0 < a["gup_50_ft"][keys.SPARSITY] < 1
    # no --fresh: the latest study run is complete, so everything is reused and nothing new is logged
    before = len(client.search_runs([client.get_experiment_by_name("netzip-tiny-rel").experiment_id]))
    third = run_study(path, progress=False)
    assert third.resumed and third.baseline_reused and all(o.reused for o in third.outcomes)
    assert third.study_run_id == second.study_run_id
    after = len(client.search_runs([client.get_experiment_by_name("netzip-tiny-rel").experiment_id]))
    assert after == before
