"""The technique registry: names, parameter validation and the compress() contract."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from netzip_mlflow.compression import registry
from netzip_mlflow.compression.registry import (
    compress,
    get_technique,
    list_techniques,
    register_technique,
    validate_params,
)
from netzip_mlflow.compression.result import CompressionResult
from netzip_mlflow.compression.spec import ParamSpec, TechniqueSpec
from netzip_mlflow.errors import ConfigError, ModelError

CONTRACT_NAMES = {"ptq", "ptq_dynamic", "fp16", "qat", "prune_unstructured", "prune_structured"}


def test_every_contract_technique_is_registered_with_a_description() -> None:
    specs = {spec.name: spec for spec in list_techniques()}
    assert CONTRACT_NAMES <= specs.keys()
    for spec in specs.values():
        assert spec.description and "\n" not in spec.description
        for param in spec.params:
            assert param.help
            param.validate(param.default)  # every default is itself valid


def test_validate_fills_defaults() -> None:
    params = validate_params("prune_unstructured", {"amount": 0.5})
    assert params == {
        "amount": 0.5, "importance": "l1", "finetune_epochs": 0, "lr": 1e-3, "optimizer": "sgd",
        "seed": 0,
    }
    assert validate_params("ptq", None) == {"calibration_batches": 10, "backend": "x86"}


def test_an_integer_is_accepted_for_a_float_parameter() -> None:
    params = validate_params("qat", {"lr": 1})
    assert params["lr"] == 1.0 and isinstance(params["lr"], float)


def test_unknown_technique_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        validate_params("prune_magic", {})
    assert err.value.field == "technique"
    assert "prune_magic" in str(err.value)
    for name in CONTRACT_NAMES:
        assert name in str(err.value)


def test_unknown_parameter_names_the_field_and_the_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        validate_params("prune_unstructured", {"ammount": 0.5})
    assert err.value.field == "params.ammount"
    assert "amount" in err.value.fix and "importance" in err.value.fix


def test_out_of_range_amount_states_the_open_interval() -> None:
    with pytest.raises(ConfigError) as err:
        validate_params("prune_unstructured", {"amount": 1.5})
    assert err.value.field == "params.amount"
    assert str(err.value) == "params.amount: must be in (0, 1), got 1.5"


@pytest.mark.parametrize("amount", [0, 1, 0.0, 1.0, -0.1])
def test_amount_bounds_are_exclusive(amount: float) -> None:
    with pytest.raises(ConfigError, match=r"params\.amount: must be in \(0, 1\)"):
        validate_params("prune_structured", {"amount": amount})


@pytest.mark.parametrize(
    ("technique", "params", "field", "fragment"),
    [
        ("prune_unstructured", {"amount": "half"}, "params.amount", "must be a number"),
        ("prune_unstructured", {"amount": True}, "params.amount", "must be a number"),
        ("ptq", {"calibration_batches": 2.5}, "params.calibration_batches", "an integer"),
        ("ptq", {"calibration_batches": 0}, "params.calibration_batches", "[1, inf)"),
        ("ptq", {"backend": "tensorrt"}, "params.backend", "one of: x86, fbgemm, qnnpack"),
        ("prune_structured", {"importance": "l3"}, "params.importance", "random, l1, l2, taylor"),
        ("prune_structured", {"target": "flops"}, "params.target", "one of: params, macs"),
        ("qat", {"epochs": 0}, "params.epochs", "[1, inf)"),
        ("qat", {"lr": 0}, "params.lr", "(0, inf)"),
        ("qat", {"lr": float("nan")}, "params.lr", "a number"),
    ],
)
def test_bad_values_name_the_field_and_the_allowed_values(
    technique: str, params: dict, field: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as err:
        validate_params(technique, params)
    assert err.value.field == field
    assert fragment in str(err.value)


def test_params_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError) as err:
        validate_params("fp16", [("amount", 0.5)])
    assert err.value.field == "params"


def test_compress_validates_before_touching_the_model() -> None:
    with pytest.raises(ConfigError) as err:
        compress(nn.Linear(2, 2), "prune_unstructured", {"amount": 1.5})
    assert err.value.field == "params.amount"


def test_compress_rejects_a_non_module() -> None:
    with pytest.raises(ModelError, match="torch.nn.Module"):
        compress(lambda x: x, "fp16")


def test_data_required_by_a_technique_is_named(tiny_cnn: nn.Module) -> None:
    with pytest.raises(ConfigError) as err:
        compress(tiny_cnn, "ptq")
    assert err.value.field == "data"
    assert "DataLoader" in str(err.value)


def test_example_inputs_required_without_data(tiny_cnn: nn.Module) -> None:
    with pytest.raises(ConfigError) as err:
        compress(tiny_cnn, "prune_structured")
    assert err.value.field == "example_inputs"


def test_register_a_new_technique_and_refuse_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # restored after the test

    def identity(model, params, data, example_inputs, hooks):  # noqa: ANN001, ANN202
        return CompressionResult(model, {"scale": params["scale"]})

    spec = TechniqueSpec(
        name="test_identity", description="does nothing", needs_data=False,
        needs_example_inputs=False, data_usage="not used", apply=identity,
        params=(ParamSpec("scale", float, 1.0, "a number", low=0.0),),
    )
    register_technique(spec)
    original = nn.Linear(2, 2)
    result = compress(original, "test_identity", {"scale": 2})
    assert result.info == {"scale": 2.0}
    assert result.model is not original  # the registry always hands over a copy
    assert torch.equal(result.model.weight, original.weight)
    assert get_technique("test_identity") is spec
    with pytest.raises(ConfigError, match="already registered"):
        register_technique(spec)


def _identity_spec(name: str) -> TechniqueSpec:
    def identity(model, params, data, example_inputs, hooks):  # noqa: ANN001, ANN202
        return CompressionResult(model, {})

    return TechniqueSpec(
        name=name, description="does nothing", needs_data=False, needs_example_inputs=False,
        data_usage="not used", apply=identity, params=(),
    )


def test_entry_point_group_adds_techniques_and_skips_a_broken_provider(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import importlib.metadata

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    providers = {
        "many": [_identity_spec("ep_one"), _identity_spec("ep_two")],
        "factory": lambda: _identity_spec("ep_three"),
        "broken": "not a technique",
    }

    class FakeEntryPoint:
        def __init__(self, name: str) -> None:
            self.name, self.value = name, f"fake:{name}"

        def load(self):  # noqa: ANN202
            return providers[self.name]

    def entry_points(group: str):  # noqa: ANN202
        assert group == registry.ENTRY_POINT_GROUP == "netzip_mlflow.techniques"
        return [FakeEntryPoint(n) for n in providers]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    with caplog.at_level("WARNING"):
        loaded = registry.load_entry_points()
    assert loaded == ["ep_one", "ep_two", "ep_three"]
    assert {"ep_one", "ep_two", "ep_three"} <= {s.name for s in list_techniques()}
    assert "broken" in caplog.text  # named in the warning, the others still loaded
    assert compress(nn.Linear(2, 2), "ep_three").info == {}


def test_the_store_lists_the_builtins_without_anyone_importing_them() -> None:
    from netzip_mlflow.compression.builtins import BUILTIN_TECHNIQUES

    names = [s.name for s in list_techniques()]
    assert names[: len(BUILTIN_TECHNIQUES)] == [s.name for s in BUILTIN_TECHNIQUES]
