"""prune_structured: global channel pruning with physical removal, params or MACs target."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from netzip_mlflow.compression.registry import compress
from netzip_mlflow.compression.structured import output_layer
from netzip_mlflow.errors import CompressionError, ConfigError

# Channel granularity of the tiny model: one channel of the second conv is ~3% of the parameters
# when any channel count may be kept (round_to 1; the default keeps multiples of 8).
GRANULARITY = 0.06
FINE = {"round_to": 1}


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _conv_linear_macs(model: nn.Module, inputs: torch.Tensor) -> int:
    """MACs per sample of Conv2d and Linear layers, from their shapes (closed form)."""
    total = 0

    def conv(module: nn.Conv2d, _: tuple, out: torch.Tensor) -> None:
        nonlocal total
        k_h, k_w = module.kernel_size
        per_output = module.in_channels // module.groups * k_h * k_w
        total += out[0].numel() * per_output

    def linear(module: nn.Linear, _: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += module.in_features * module.out_features

    handles = [
        m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else linear)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    with torch.no_grad():
        model(inputs[:1])
    for handle in handles:
        handle.remove()
    return total


def _state_dict_bytes(model: nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


@pytest.mark.parametrize("importance", ["l1", "l2", "random"])
def test_params_target_removes_parameters_physically(
    tiny_cnn: nn.Module, batch: torch.Tensor, untouched: Callable, importance: str
) -> None:
    check = untouched(tiny_cnn)
    params = {"amount": 0.5, "target": "params", "importance": importance, **FINE}
    result = compress(tiny_cnn, "prune_structured", params, example_inputs=batch)
    check()
    before, after = _params(tiny_cnn), _params(result.model)
    reduction = 1 - after / before
    assert 0.5 <= reduction <= 0.5 + GRANULARITY
    assert result.info["params_before"] == before and result.info["params_after"] == after
    assert result.info["param_reduction"] == pytest.approx(reduction)
    assert result.model.classifier.out_features == tiny_cnn.classifier.out_features
    assert result.info["ignored_layers"] == "classifier"
    conv1, conv2 = result.model.features[0], result.model.features[3]
    assert conv1.out_channels < 16 and conv2.out_channels < 32  # really fewer channels
    assert result.model.features[1].num_features == conv1.out_channels == conv2.in_channels
    assert result.model.classifier.in_features == conv2.out_channels
    assert _state_dict_bytes(result.model) < _state_dict_bytes(tiny_cnn)
    with torch.no_grad():
        assert result.model(batch).shape == tiny_cnn(batch).shape


def test_macs_target_reduces_macs(
    tiny_cnn: nn.Module, batch: torch.Tensor, untouched: Callable
) -> None:
    check = untouched(tiny_cnn)
    params = {"amount": 0.6, "target": "macs", **FINE}
    result = compress(tiny_cnn, "prune_structured", params, example_inputs=batch)
    check()
    before = _conv_linear_macs(tiny_cnn, batch)
    after = _conv_linear_macs(result.model, batch)
    assert result.info["mac_reduction"] >= 0.6
    # torch-pruning also counts BN/ReLU/pool work; conv and linear dominate
    assert 1 - after / before == pytest.approx(result.info["mac_reduction"], abs=0.02)
    assert 0.6 - 0.02 <= 1 - after / before <= 0.6 + GRANULARITY
    assert _params(result.model) < _params(tiny_cnn)
    assert result.model.classifier.out_features == 10


def test_larger_amount_prunes_more(tiny_cnn: nn.Module, batch: torch.Tensor) -> None:
    sizes = [
        _params(compress(tiny_cnn, "prune_structured", {"amount": a, **FINE}, example_inputs=batch).model)
        for a in (0.25, 0.5, 0.75)
    ]
    assert sizes[0] > sizes[1] > sizes[2]


def test_random_importance_is_reproducible(tiny_cnn: nn.Module, batch: torch.Tensor) -> None:
    def kept(seed: int) -> torch.Tensor:
        params = {"importance": "random", "amount": 0.5, "seed": seed, **FINE}
        model = compress(tiny_cnn, "prune_structured", params, example_inputs=batch).model
        return model.features[3].weight.detach()

    first, again, other = kept(1), kept(1), kept(2)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_taylor_needs_data_and_uses_it(
    tiny_cnn: nn.Module, loader: DataLoader, batch: torch.Tensor
) -> None:
    with pytest.raises(ConfigError) as err:
        compress(tiny_cnn, "prune_structured", {"importance": "taylor"}, example_inputs=batch)
    assert err.value.field == "data"
    result = compress(tiny_cnn, "prune_structured", {"importance": "taylor"}, data=loader)
    assert result.info["param_reduction"] >= 0.75
    assert all(p.grad is None for p in result.model.parameters())


def test_finetuning_after_pruning_reports_epochs(
    tiny_cnn: nn.Module, loader: DataLoader
) -> None:
    epochs: list[int] = []
    result = compress(
        tiny_cnn, "prune_structured", {"finetune_epochs": 1}, data=loader, progress=False,
        on_epoch_end=lambda epoch, _: epochs.append(epoch),
    )
    assert epochs == [0]
    assert result.info["finetune_epochs"] == 1 and result.info["finetune_loss"] > 0
    assert not result.model.training


def test_unreachable_target_says_how_far_it_got(batch: torch.Tensor) -> None:
    # only the classifier is prunable and it is never pruned: nothing can be removed
    model = nn.Sequential(nn.Flatten(), nn.Linear(256, 10))
    with pytest.raises(CompressionError, match=r"at most 0\.0% was reached"):
        compress(model, "prune_structured", {"amount": 0.5}, example_inputs=batch)


def test_output_layer_is_the_last_to_run_not_the_last_declared(batch: torch.Tensor) -> None:
    class HeadFirst(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(8, 10)
            self.body = nn.Conv2d(1, 8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(x).mean((2, 3)))

    name, module = output_layer(HeadFirst(), batch)
    assert name == "head" and isinstance(module, nn.Linear)


def test_round_to_keeps_channel_counts_at_a_multiple(tiny_cnn: nn.Module, batch: torch.Tensor) -> None:
    for round_to in (4, 8):
        params = {"amount": 0.5, "round_to": round_to}
        result = compress(tiny_cnn, "prune_structured", params, example_inputs=batch)
        conv1, conv2 = result.model.features[0], result.model.features[3]
        assert conv1.out_channels % round_to == 0 and conv2.out_channels % round_to == 0
        assert conv1.out_channels < 16 or conv2.out_channels < 32  # something was pruned
        assert result.info["round_to"] == round_to and result.info["param_reduction"] >= 0.5
    fine = compress(tiny_cnn, "prune_structured", {"amount": 0.5, **FINE}, example_inputs=batch)
    assert fine.info["round_to"] == 1


# --- per-layer sparsity policy (layer_policy) ------------------------------------------------------


def test_policy_groups_are_the_blocks_that_hold_prunable_layers(tiny_cnn: nn.Module, batch: torch.Tensor) -> None:
    from netzip_mlflow.compression.structured import policy_groups
    from netzip_mlflow.models.zoo import build_model

    assert policy_groups(tiny_cnn, batch) == ["features.0", "features.3"]  # one trunk: its conv children
    resnet = build_model("resnet18", 10, (1, 28, 28), seed=0).eval()
    assert policy_groups(resnet, torch.zeros(1, 1, 28, 28)) == ["conv1", "layer1", "layer2", "layer3", "layer4"]


def test_policy_reaches_the_mac_target_with_ratios_scaled_by_weight(tiny_cnn: nn.Module, batch: torch.Tensor) -> None:
    before = _conv_linear_macs(tiny_cnn, batch)
    result = compress(tiny_cnn, "prune_structured",
                      {"amount": 0.4, "target": "macs", "layer_policy": "features.0=1.0,features.3=0.5", "round_to": 1},
                      example_inputs=batch)
    after = _conv_linear_macs(result.model, batch)
    assert 0.4 <= 1 - after / before <= 0.4 + 0.01 + GRANULARITY
    scale = result.info["channel_ratio"]
    assert result.info["policy.features.0"] == pytest.approx(scale * 1.0)
    assert result.info["policy.features.3"] == pytest.approx(scale * 0.5)
    convs = [m for m in result.model.features if isinstance(m, nn.Conv2d)]
    for conv, width, ratio in zip(convs, (16, 32), (scale, scale * 0.5)):  # torch-pruning keeps int(n * (1 - r))
        assert conv.out_channels == int(width * (1 - ratio))


def test_weight_zero_keeps_a_group_whole(tiny_cnn: nn.Module, batch: torch.Tensor) -> None:
    result = compress(tiny_cnn, "prune_structured",
                      {"amount": 0.2, "target": "params", "layer_policy": "features.0=0,features.3=1", "round_to": 1},
                      example_inputs=batch)
    first, second = [m for m in result.model.features if isinstance(m, nn.Conv2d)]
    assert first.out_channels == 16 and second.out_channels < 32
    assert result.model.classifier.out_features == 10


def test_uniform_and_global_reach_the_same_target_differently(tiny_cnn: nn.Module, batch: torch.Tensor) -> None:
    params = {"amount": 0.5, "target": "macs", "round_to": 1}
    uniform = compress(tiny_cnn, "prune_structured", {**params, "layer_policy": "features.0=1,features.3=1"}, example_inputs=batch)
    first, second = [m for m in uniform.model.features if isinstance(m, nn.Conv2d)]
    assert first.out_channels / 16 == pytest.approx(second.out_channels / 32, abs=1 / 16)  # same share per layer
    assert uniform.info["mac_reduction"] >= 0.5


@pytest.mark.parametrize(("policy", "words"), [
    ("features.9=0.5", "not a module"),
    ("features.0=1.5", "weight in [0, 1]"),
    ("features.0", "NAME=WEIGHT"),
    ("features.0=abc", "NAME=WEIGHT"),
])
def test_bad_policy_names_the_param(tiny_cnn: nn.Module, batch: torch.Tensor, policy: str, words: str) -> None:
    with pytest.raises(CompressionError) as err:
        compress(tiny_cnn, "prune_structured", {"amount": 0.3, "layer_policy": policy}, example_inputs=batch)
    assert "params.layer_policy" in str(err.value) and words in str(err.value)
