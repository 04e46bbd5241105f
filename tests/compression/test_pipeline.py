"""Pipelines ("deep compression"): steps chained on one copy, validated step by step."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from netzip_mlflow.compression.pipeline import compress_pipeline, validate_steps
from netzip_mlflow.compression.quantization import quantized_layer_names
from netzip_mlflow.compression.registry import compress
from netzip_mlflow.errors import ConfigError

PRUNE_FINETUNE_PTQ = [
    {"technique": "prune_structured", "params": {"amount": 0.5}},
    {"technique": "finetune", "params": {"epochs": 2, "lr": 0.01}},
    {"technique": "ptq", "params": {"calibration_batches": 2}},
]


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_prune_finetune_ptq_gives_a_smaller_int8_model(
    tiny_cnn: nn.Module, loader: DataLoader, batch: torch.Tensor, untouched: Callable
) -> None:
    check = untouched(tiny_cnn)
    epochs: list[int] = []
    result = compress_pipeline(
        tiny_cnn, PRUNE_FINETUNE_PTQ, data=loader, progress=False,
        on_epoch_end=lambda epoch, _: epochs.append(epoch),
    )
    check()
    info = result.info
    assert info["steps"] == "prune_structured+finetune+ptq" and info["pipeline_steps"] == 3
    assert info["step1.technique"] == "prune_structured" and info["step3.technique"] == "ptq"
    assert info["step1.param_reduction"] >= 0.5
    assert info["step2.finetune_epochs"] == 2 and info["step3.calibration_batches"] == 2
    assert epochs == [0, 1]
    # the pruned channels are gone from the int8 model: its first conv has fewer output channels
    int8_conv = result.model.get_submodule(quantized_layer_names(result.model)[0])
    assert int8_conv.out_channels < tiny_cnn.features[0].out_channels
    assert info["step3.quantized_layers"] >= 3
    with torch.no_grad():
        assert result.model(batch).shape == tiny_cnn(batch).shape


def test_epochs_are_numbered_across_training_steps(tiny_cnn: nn.Module, loader: DataLoader) -> None:
    epochs: list[int] = []
    steps = [
        {"technique": "prune_unstructured", "params": {"amount": 0.5, "finetune_epochs": 1}},
        {"technique": "finetune", "params": {"epochs": 2}},
    ]
    result = compress(tiny_cnn, steps, data=loader, progress=False,
                      on_epoch_end=lambda epoch, _: epochs.append(epoch))
    assert epochs == [0, 1, 2]
    # masks were made permanent in step 1; plain fine-tuning in step 2 may revive weights
    assert result.info["step1.sparsity_achieved"] == pytest.approx(0.5, abs=0.01)


def test_compress_accepts_steps_in_place_of_a_technique(
    tiny_cnn: nn.Module, batch: torch.Tensor
) -> None:
    steps = [{"technique": "prune_unstructured", "params": {"amount": 0.3}}, {"technique": "fp16"}]
    result = compress(tiny_cnn, steps, example_inputs=batch)
    assert result.info["steps"] == "prune_unstructured+fp16"
    assert all(p.dtype == torch.float16 for p in result.model.parameters())
    with pytest.raises(ConfigError, match="inside each pipeline step"):
        compress(tiny_cnn, steps, {"amount": 0.5}, example_inputs=batch)


def test_validate_fills_every_steps_defaults() -> None:
    steps = validate_steps([{"technique": "prune_structured"}, {"technique": "ptq", "params": {}}])
    assert steps[0]["params"]["amount"] == 0.75 and steps[0]["params"]["target"] == "params"
    assert steps[1]["params"]["backend"] == "x86"


@pytest.mark.parametrize(
    ("steps", "field"),
    [
        ([], "steps"),
        ("ptq", "steps"),
        ([["ptq"]], "steps[0]"),
        ([{"params": {}}], "steps[0].technique"),
        ([{"technique": "ptq", "speed": 1}], "steps[0].speed"),
        ([{"technique": "nope"}], "steps[0].technique"),
        ([{"technique": "ptq"}, {"technique": "prune_structured", "params": {"amount": 2}}],
         "steps[1].params.amount"),
        ([{"technique": "ptq"}, {"technique": "prune_structured"}], "steps[1].technique"),
        ([{"technique": "pipeline", "params": {"steps": []}}], "steps[0].technique"),
    ],
)
def test_invalid_steps_name_the_field(steps: object, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate_steps(steps)
    assert err.value.field == field


def test_a_step_without_the_data_it_needs_says_so(tiny_cnn: nn.Module, batch: torch.Tensor) -> None:
    with pytest.raises(ConfigError) as err:
        compress_pipeline(tiny_cnn, [{"technique": "prune_unstructured"}, {"technique": "ptq"}],
                          example_inputs=batch)
    assert err.value.field == "data"
