"""Study YAML validation: each rule gives an error that names the field."""

from pathlib import Path

import pytest
import yaml

from netzip_mlflow.config.loader import apply_overrides, load_study, parse_override, validate_study
from netzip_mlflow.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def minimal(**changes):
    raw = {
        "study": "t",
        "data": {"builtin": "digits"},
        "model": {"arch": "tiny_cnn"},
        "recipes": [{"name": "q", "technique": "ptq"}],
    }
    raw.update(changes)
    return raw


def test_shipped_studies_validate():
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        data = (yaml.safe_load(path.read_text()) or {}).get("data") or {}
        spec = load_study(path, None if "builtin" in data else {"data.path": "/tmp"})
        assert spec.recipes


def test_defaults_filled():
    spec = validate_study(minimal())
    assert spec.experiment_name == "netzip-t"
    assert spec.evaluation.batch_size == 1
    assert spec.recipes[0].params["calibration_batches"] >= 1  # technique defaults filled in


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (minimal(data={}), "data"),
        (minimal(data={"builtin": "digits", "path": "/x"}), "data"),
        (minimal(data={"builtin": "cifar"}), "data.builtin"),
        (minimal(data={"builtin": "digits", "test_fraction": 1.5}), "data.test_fraction"),
        (minimal(recipes=[]), "recipes"),
        (minimal(recipes=[{"name": "a", "technique": "nope"}]), "recipes[0].technique"),
        (minimal(recipes=[{"name": "a", "technique": "prune_unstructured", "params": {"amount": 1.5}}]), "recipes[0].params.amount"),
        (minimal(recipes=[{"name": "a", "technique": "prune_unstructured", "params": {"speed": 1}}]), "recipes[0].params.speed"),
        (minimal(recipes=[{"name": "a", "technique": "ptq"}, {"name": "a", "technique": "ptq"}]), "recipes"),
        (minimal(evaluation={"threads": 0}), "evaluation.threads"),
        (minimal(evaluation={"ratios": {"speedup": "speed/warp"}}), "evaluation.ratios.speedup"),
        (minimal(colour="blue"), "colour"),
        (minimal(study="has space"), "study"),
    ],
)
def test_errors_name_the_field(raw, field):
    with pytest.raises(ConfigError) as err:
        validate_study(raw)
    assert field in str(err.value)


def test_overrides_and_safe_yaml(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(minimal()))
    spec = load_study(path, dict([parse_override("evaluation.threads=2"), parse_override("recipes.0.params.calibration_batches=3")]))
    assert spec.evaluation.threads == 2 and spec.recipes[0].params["calibration_batches"] == 3
    assert apply_overrides({"a": {"b": 1}}, {"a.c": 2}) == {"a": {"b": 1, "c": 2}}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("nonsense")
    evil = tmp_path / "evil.yaml"
    evil.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_study(evil)
    with pytest.raises(ConfigError, match="does not exist"):
        load_study(tmp_path / "missing.yaml")


def test_reliability_fields():
    spec = validate_study(minimal())
    assert spec.model.trust_model_file is False  # pickles are refused unless asked for
    assert spec.evaluation.system_metrics is True and spec.evaluation.system_metrics_interval_s == 5.0
    spec = validate_study(minimal(model={"arch": "tiny_cnn", "trust_model_file": True},
                                  evaluation={"system_metrics": False, "system_metrics_interval_s": 0.5}))
    assert spec.model.trust_model_file and not spec.evaluation.system_metrics
    with pytest.raises(ConfigError, match="evaluation.system_metrics_interval_s"):
        validate_study(minimal(evaluation={"system_metrics_interval_s": 0}))
    with pytest.raises(ConfigError, match="model.trust_model_file"):
        validate_study(minimal(model={"arch": "tiny_cnn", "trust_model_file": "yes please"}))


def test_set_accepts_the_bracket_form_errors_print(tmp_path):
    raw = minimal()
    raw["recipes"] = [
        {"name": "a", "technique": "prune_unstructured", "params": {"amount": 0.2}},
        {"name": "b", "technique": "prune_unstructured", "params": {"amount": 0.3}},
    ]
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert parse_override("recipes[1].params.amount=0.5") == ("recipes.1.params.amount", 0.5)
    spec = load_study(path, dict([parse_override("recipes[1].params.amount=0.5")]))
    assert [r.params["amount"] for r in spec.recipes] == [0.2, 0.5]
    assert apply_overrides({"x": [{"y": 1}]}, {"x[0].y": 2}) == {"x": [{"y": 2}]}  # the API too


def test_ocs_weights_must_be_positive(tmp_path):
    raw = minimal()
    raw["evaluation"] = {"ratios": {"weights": [1, 0, 1, 1]}}
    with pytest.raises(ConfigError, match=r"evaluation\.ratios\.weights.*positive"):
        validate_study(raw)
