"""The studies shipped in recipes/: they validate, recipe rules name the field, and they run."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image
from torch import nn

from netzip_mlflow.config.loader import load_study, validate_study
from netzip_mlflow.errors import ConfigError
from netzip_mlflow.models.zoo import build_model
from netzip_mlflow.study.runner import run_study
from netzip_mlflow.tracking import keys

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


def _overrides(path: Path, folder: Path) -> dict[str, object]:
    return {"data.path": str(folder)} if path.name == "case_study_1.yaml" else {}


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_shipped_study_validates(path: Path, tmp_path: Path) -> None:
    spec = load_study(path, _overrides(path, tmp_path))
    assert spec.recipes
    for recipe in spec.recipes:
        assert recipe.params is not None


def test_the_three_catalogue_studies_are_there() -> None:
    names = {p.name for p in RECIPES}
    assert {"case_study_1.yaml", "sparsity_sweep.yaml", "deep_compression.yaml"} <= names


def test_case_study_1_has_the_papers_recipes(tmp_path: Path) -> None:
    spec = load_study(ROOT / "recipes/case_study_1.yaml", {"data.path": str(tmp_path)})
    assert spec.model.arch == "resnet18"
    by_name = {r.name: r for r in spec.recipes}
    assert by_name["ptq"].technique == "ptq" and by_name["qat"].technique == "qat"
    assert by_name["gup_r_75"].params["importance"] == "random"
    assert by_name["gup_l1_75"].params["importance"] == "l1"
    for name in ("gup_r_75", "gup_l1_75", "structured_l1_75"):
        assert by_name[name].params["amount"] == 0.75
    assert by_name["structured_l1_75"].params["target"] == "params"


def test_case_study_1_needs_the_image_folder() -> None:
    with pytest.raises(ConfigError) as err:
        load_study(ROOT / "recipes/case_study_1.yaml")
    assert "data" in err.value.field and "path" in err.value.problem


def test_sparsity_sweep_covers_both_importances_at_four_sparsities() -> None:
    spec = load_study(ROOT / "recipes/sparsity_sweep.yaml")
    grid = {(r.params["importance"], r.params["amount"]) for r in spec.recipes}
    assert grid == {(i, a) for i in ("l1", "random") for a in (0.3, 0.5, 0.7, 0.9)}


def test_deep_compression_chains_prune_finetune_ptq() -> None:
    spec = load_study(ROOT / "recipes/deep_compression.yaml")
    chain = next(r for r in spec.recipes if r.name == "structured_50_ft_ptq")
    assert chain.technique == "pipeline"
    chain_names = [s["technique"] for s in chain.params["steps"]]
    assert chain_names == ["prune_structured", "finetune", "ptq"]
    assert chain.params["steps"][2]["params"]["backend"] == "x86"  # step defaults filled in


# ------------------------------------------------------------------------ recipe schema rules


def _study(*recipes: dict) -> dict:
    return {"study": "t", "data": {"builtin": "digits"}, "model": {"arch": "tiny_cnn"},
            "recipes": list(recipes)}


STEPS = [{"technique": "prune_structured", "params": {"amount": 0.5}}, {"technique": "ptq"}]


@pytest.mark.parametrize(
    ("recipe", "field", "words"),
    [
        ({"name": "a"}, "recipes[0]", "'technique'"),
        ({"name": "a", "technique": "ptq", "steps": STEPS}, "recipes[0]", "not both"),
        ({"name": "a", "steps": STEPS, "params": {"amount": 0.5}}, "recipes[0]", "each step"),
        ({"name": "a", "steps": []}, "recipes[0]", "non-empty"),
        ({"name": "a", "steps": [{"technique": "nope"}]}, "recipes[0].steps[0].technique",
         "unknown technique"),
        ({"name": "a", "steps": [{"params": {}}]}, "recipes[0].steps[0].technique", "missing"),
        ({"name": "a", "steps": [STEPS[0], {"technique": "ptq", "params": {"colour": 1}}]},
         "recipes[0].steps[1].params.colour", "unknown parameter"),
        ({"name": "a", "steps": [{"technique": "ptq"}, {"technique": "prune_unstructured",
                                                        "params": {"amount": 1.5}}]},
         "recipes[0].steps[1].params.amount", "(0, 1)"),
        ({"name": "a", "steps": [{"technique": "ptq"}, {"technique": "prune_unstructured"}]},
         "recipes[0].steps[1].technique", "last step"),
        ({"name": "a", "steps": [{"technique": "ptq", "when": "now"}]},
         "recipes[0].steps[0].when", "unknown key"),
        ({"name": "a", "technique": "distill", "params": {"alpha": 2}}, "recipes[0].params.alpha",
         "[0, 1]"),
    ],
)
def test_recipe_errors_name_the_field(recipe: dict, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate_study(_study(recipe))
    message = str(err.value)
    assert f"study: {field}:" in message or f"study: {field} " in message, message
    assert words in message


def test_error_names_the_right_recipe_and_step() -> None:
    ok = {"name": "ok", "technique": "ptq"}
    bad = {"name": "bad", "steps": [STEPS[0], {"technique": "prune_structured",
                                               "params": {"amount": 2.0}}]}
    with pytest.raises(ConfigError) as err:
        validate_study(_study(ok, ok | {"name": "ok2"}, bad))
    assert err.value.field == "study: recipes[2].steps[1].params.amount"


# ---------------------------------------------------------------------------- running studies


def _image_folder(root: Path, classes: int = 3, per_class: int = 14, size: int = 20) -> Path:
    """A tiny ImageFolder: each class a distinct colour plus noise, PNG files."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True)
        colour = np.zeros(3)
        colour[c % 3] = 200
        for i in range(per_class):
            pixels = np.clip(colour + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


QUICK = {
    "model.arch": "tiny_cnn",
    "model.train.epochs": 1,
    "evaluation.isolate": False,
    "evaluation.idle_s": 0.05,
    "evaluation.latency.warmup_s": 0.05,
    "evaluation.latency.budget_s": 0.3,
    "evaluation.latency.min_samples": 5,
}


def _runs(uri: str, experiment: str) -> dict[str, object]:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return {r.data.tags["mlflow.runName"]: r for r in client.search_runs([exp.experiment_id])}


@pytest.fixture
def tracking(tmp_path: Path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(previous)


@pytest.mark.slow
def test_case_study_1_runs_on_a_tiny_image_folder(tmp_path: Path, tracking: str) -> None:
    folder = _image_folder(tmp_path / "images")
    overrides = {
        **QUICK, "data.path": str(folder), "data.image_size": 16, "data.batch_size": 8,
        "recipes.0.params.calibration_batches": 2, "recipes.1.params.epochs": 1,
        "recipes.4.params.finetune_epochs": 1, "recipes.4.params.amount": 0.5,
    }
    result = run_study(ROOT / "recipes/case_study_1.yaml", overrides, progress=False)
    assert not result.failed, [(o.recipe, o.error) for o in result.failed]
    runs = _runs(tracking, "netzip-case-study-1")
    assert {"ptq", "qat", "gup_r_75", "gup_l1_75", "structured_l1_75"} <= set(runs)
    gup = runs["gup_l1_75"]
    assert float(gup.data.params["result.sparsity_achieved"]) == pytest.approx(0.75, abs=0.01)
    # size/sparsity counts every parameter (BatchNorm, biases); only Conv/Linear weights are pruned
    model = build_model("tiny_cnn", 3, (3, 16, 16))
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear))
    total = sum(p.numel() for p in model.parameters())
    assert gup.data.metrics[keys.SPARSITY] == pytest.approx(0.75 * weights / total, abs=0.005)
    structured = runs["structured_l1_75"].data.metrics[keys.PARAMS]
    assert structured < runs["baseline"].data.metrics[keys.PARAMS]
    assert "finetune/loss" in runs["qat"].data.metrics
    assert result.leaderboard is not None
    assert list(result.leaderboard["role"]).count("compressed") == 5  # and the baseline as row 0


@pytest.mark.slow
def test_deep_compression_runs_pipelines_and_distillation(tmp_path: Path, tracking: str) -> None:
    overrides = {
        **QUICK, "data.builtin": "digits", "data.limit": 300, "data.batch_size": 32,
        "recipes.0.params.calibration_batches": 2,
        "recipes.2.steps.2.params.calibration_batches": 2,
        "recipes.3.steps.1.params.calibration_batches": 2, "recipes.4.params.epochs": 1,
    }
    result = run_study(ROOT / "recipes/deep_compression.yaml", overrides, progress=False)
    assert not result.failed, [(o.recipe, o.error) for o in result.failed]
    runs = _runs(tracking, "netzip-deep-compression")
    chain = runs["structured_50_ft_ptq"]
    assert chain.data.tags[keys.TAG_TECHNIQUE] == "pipeline"
    assert chain.data.params["result.steps"] == "prune_structured+finetune+ptq"
    assert float(chain.data.params["result.step1.param_reduction"]) >= 0.5
    assert int(chain.data.params["result.step3.quantized_layers"]) >= 3
    distilled = runs["distill_half_width"]
    assert distilled.data.metrics[keys.PARAMS] < runs["baseline"].data.metrics[keys.PARAMS]
