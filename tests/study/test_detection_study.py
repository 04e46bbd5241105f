"""Detection studies: load-time validation of recipes, and a tiny end-to-end run (slow)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from netzip_mlflow.config.loader import load_study
from netzip_mlflow.errors import ConfigError
from netzip_mlflow.study.context import evaluation_config
from netzip_mlflow.tracking import keys

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "detection_quickstart.yaml"


def test_quickstart_loads_with_map_performance():
    spec = load_study(RECIPE)
    assert spec.task == "detection" and spec.data.builtin == "shapes"
    assert evaluation_config(spec, ["square"], progress=False).ratios.performance == keys.MAP50


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"recipes.1.technique": "ptq", "recipes.1.params": {}}, "recipes[1].technique"),
        ({"recipes.0.technique": "qat"}, "recipes[0].technique"),
        ({"recipes.0.technique": "fp16"}, "recipes[0].technique"),
        ({"recipes.1.params.finetune_epochs": 1}, "recipes[1].params.finetune_epochs"),
        ({"recipes.2.params.importance": "taylor"}, "recipes[2].params.importance"),
    ],
)
def test_recipes_that_do_not_apply_are_rejected_at_load(override, field):
    with pytest.raises(ConfigError) as err:
        load_study(RECIPE, override)
    assert err.value.field.endswith(field)


def test_fp16_is_allowed_on_gpu_and_task_data_mismatch_rejected():
    spec = load_study(RECIPE, {"recipes.0.technique": "fp16", "evaluation.device": "cuda"})
    assert spec.recipes[0].technique == "fp16"
    with pytest.raises(ConfigError, match="classification dataset"):
        load_study(RECIPE, {"data.builtin": "digits", "data.limit": None})
    with pytest.raises(ConfigError, match="detection dataset"):
        load_study(RECIPE, {"task": "classification"})


@pytest.mark.slow
def test_tiny_detection_study_end_to_end(tmp_path):
    """The quickstart's tiny detector on 40 images of 64 px for 3 epochs (about a minute on 2 idle cores)."""
    from netzip_mlflow.study.runner import run_study

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    overrides = {
        "data.limit": 40, "data.image_size": 64, "data.batch_size": 4,
        "model.train.epochs": 3, "evaluation.eval_batch_size": 8, "evaluation.idle_s": 0.0,
        "evaluation.latency.warmup_s": 0.1, "evaluation.latency.budget_s": 0.5,
        "evaluation.latency.min_samples": 5, "recipes.2.params.tolerance": 0.2,
    }
    result = run_study(RECIPE, overrides, progress=False)
    assert not result.failed, [o.error for o in result.failed]
    board = result.leaderboard
    compressed = board[board["role"] == keys.ROLE_COMPRESSED] if "role" in board.columns else board
    assert len(compressed) == 3 and keys.MAP50 in board.columns
    client = mlflow.tracking.MlflowClient()
    base = client.get_run(result.baseline_run_id)
    assert base.data.params["train.epochs"] == "3"
    losses = [m.value for m in sorted(client.get_metric_history(base.info.run_id, "train/loss"), key=lambda m: m.step)]
    assert len(losses) == 3 and losses[-1] < losses[0]
    base_map = base.data.metrics[keys.MAP50]
    assert 0.0 <= base_map <= 1.0 and base.data.metrics[keys.MACS] > 0
    assert any(a.path == "detection" for a in client.list_artifacts(result.baseline_run_id))
    for outcome in result.outcomes:
        run = client.get_run(outcome.run_id)
        assert run.data.tags[keys.ratio_metric_tag("performance")] == keys.MAP50
        assert keys.RATIO_SPEEDUP in run.data.metrics
        if base_map > 0 and run.data.metrics[keys.MAP50] > 0:
            ratio = run.data.metrics[keys.RATIO_PERFORMANCE]
            assert ratio == pytest.approx(run.data.metrics[keys.MAP50] / base_map, rel=1e-6)
        else:  # a zero mAP on either side leaves the performance ratio out, and says so
            assert keys.RATIO_PERFORMANCE not in run.data.metrics
            assert "performance" in run.data.tags[keys.TAG_MISSING_RATIOS]
    pruned = client.get_run(next(o.run_id for o in result.outcomes if o.recipe == "backbone_l1_30"))
    assert float(pruned.data.params["result.mac_reduction"]) >= 0.3
