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
    assert by_name["bnn"].technique == "bnn"  # the paper's five: PTQ, QAT, GUP_R, GUP_L1, BNN


def test_case_study_3_ranks_binary_variants_against_ptq_and_qat() -> None:
    spec = load_study(ROOT / "recipes/case_study_3.yaml")
    assert spec.data.builtin == "mnist" and spec.model.arch == "resnet18"
    assert spec.report.radar_top_k == 4  # the paper's Fig. 8b: the top four
    by_name = {r.name: (r.technique, r.params) for r in spec.recipes}
    assert by_name["ptq"][0] == "ptq" and by_name["qat"][0] == "qat"
    binary = {name: params for name, (technique, params) in by_name.items() if technique == "bnn"}
    variants = {(p["scaling"], p["activations"], p["shortcut"]) for p in binary.values()}
    assert variants == {
        ("none", "binary", "block"), ("channel", "binary", "block"),
        ("none", "binary", "layer"), ("none", "float", "block"),
    }


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


def test_report_radar_top_k_is_checked() -> None:
    study = {**_study({"name": "a", "technique": "fp16"}), "report": {"radar_top_k": 3}}
    assert validate_study(study).report.radar_top_k == 3
    with pytest.raises(ConfigError, match="radar_top_k"):
        validate_study({**_study({"name": "a", "technique": "fp16"}), "report": {"radar_top_k": 0}})


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
        ({"name": "a", "technique": "bnn", "params": {"activations": "ternary"}},
         "recipes[0].params.activations", "binary, float"),
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
        "recipes.5.params.epochs": 1,
    }
    result = run_study(ROOT / "recipes/case_study_1.yaml", overrides, progress=False)
    assert not result.failed, [(o.recipe, o.error) for o in result.failed]
    runs = _runs(tracking, "netzip-case-study-1")
    assert {"ptq", "qat", "gup_r_75", "gup_l1_75", "structured_l1_75", "bnn"} <= set(runs)
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
    assert keys.TAG_LATENCY_KERNELS in runs["bnn"].data.tags
    assert runs["bnn"].data.metrics[keys.CHATS] < runs["ptq"].data.metrics[keys.CHATS]
    assert result.leaderboard is not None
    assert list(result.leaderboard["role"]).count("compressed") == 6  # and the baseline as row 0


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


def test_case_study_2_has_the_papers_runtimes() -> None:
    spec = load_study(ROOT / "recipes/case_study_2.yaml")
    kinds = {
        r.name: (r.technique, r.params.get("quantize")) for r in spec.recipes if r.technique != "pipeline"
    }
    assert kinds == {
        "torch_ptq_int8": ("ptq", None), "onnx_fp32": ("onnx", "none"), "onnx_int8": ("onnx", "int8"),
        "openvino_fp32": ("openvino", "none"), "openvino_int8": ("openvino", "int8"),
    }
    last_steps = {r.params["steps"][-1]["technique"] for r in spec.recipes if r.technique == "pipeline"}
    assert last_steps == {"ptq", "onnx", "openvino"}
    assert spec.data.builtin == "mnist" and spec.model.arch == "resnet18"


@pytest.mark.slow
def test_case_study_2_runs_and_a_failed_export_fails_only_its_run(
    tmp_path: Path, tracking: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    import torch.onnx

    real_export = torch.onnx.export

    def export(*args, **kwargs):  # the recipe asking for opset 16 hits an unexportable operator
        if kwargs.get("opset_version") == 16:
            raise torch.onnx.errors.UnsupportedOperatorError("aten::fft_fft2", 16, None)
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", export)
    overrides = {
        **QUICK, "data.builtin": "digits", "data.limit": 300, "data.batch_size": 32,
        "recipes.0.params.calibration_batches": 2, "recipes.2.params.calibration_batches": 2,
        "recipes.4.params.calibration_batches": 2,
    }
    import yaml

    raw = yaml.safe_load((ROOT / "recipes/case_study_2.yaml").read_text())
    raw["recipes"].append({"name": "unexportable", "technique": "onnx", "params": {"opset": 16}})
    study = tmp_path / "case_study_2.yaml"
    study.write_text(yaml.safe_dump(raw))
    result = run_study(study, overrides, progress=False)
    assert [(o.recipe, o.status) for o in result.failed] == [("unexportable", "FAILED")]
    assert "aten::fft_fft2" in result.failed[0].error
    runs = _runs(tracking, "netzip-case-study-2")
    assert runs["unexportable"].info.status == "FAILED"
    assert "aten::fft_fft2" in runs["unexportable"].data.tags[keys.TAG_ERROR]
    runtimes = {name: run.data.tags.get(keys.TAG_RUNTIME) for name, run in runs.items() if name != "unexportable"}
    assert runtimes["baseline"] == runtimes["torch_ptq_int8"] == runtimes["structured75_ft_ptq"] == "torch"
    assert runtimes["onnx_int8"] == runtimes["structured75_ft_onnx_int8"] == "onnxruntime"
    assert runtimes["openvino_fp32"] == runtimes["structured75_ft_openvino_int8"] == "openvino"
    ptq, onnx_int8 = runs["torch_ptq_int8"].data.metrics, runs["onnx_int8"].data.metrics
    assert onnx_int8[keys.CHATS] == ptq[keys.CHATS] and onnx_int8[keys.MACS] == ptq[keys.MACS]
    assert keys.OCS in onnx_int8  # ratios against the torch fp32 baseline
    assert runs["openvino_int8"].data.tags[keys.TAG_SW_PREFIX + "openvino"]
    table = result.leaderboard
    assert set(table["runtime"]) == {"torch", "onnxruntime", "openvino"}
