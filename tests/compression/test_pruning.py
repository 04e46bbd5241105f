"""prune_unstructured: global random (GUP_R) and L1 (GUP_L1) pruning of Conv/Linear weights."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from netzip_mlflow.compression.registry import compress
from netzip_mlflow.errors import CompressionError, ConfigError


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def _global_sparsity(model: nn.Module) -> float:
    weights = _weights(model)
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


@pytest.mark.parametrize("importance", ["random", "l1"])
@pytest.mark.parametrize("amount", [0.3, 0.75, 0.9])
def test_global_sparsity_matches_amount(
    tiny_cnn: nn.Module, untouched: Callable, importance: str, amount: float
) -> None:
    check = untouched(tiny_cnn)
    result = compress(tiny_cnn, "prune_unstructured", {"amount": amount, "importance": importance})
    check()
    assert abs(_global_sparsity(result.model) - amount) <= 0.01
    assert result.info["sparsity_achieved"] == pytest.approx(_global_sparsity(result.model))
    assert result.info["pruned_layers"] == 3
    assert result.info["pruned_weights"] == sum(w.numel() for w in _weights(tiny_cnn))
    # masks are permanent: plain weights, no weight_orig / weight_mask, no pruning hooks
    keys = result.model.state_dict().keys()
    assert keys == tiny_cnn.state_dict().keys()
    assert not any(m._forward_pre_hooks for m in result.model.modules())


def test_l1_removes_exactly_the_smallest_magnitudes(tiny_cnn: nn.Module) -> None:
    result = compress(tiny_cnn, "prune_unstructured", {"amount": 0.5, "importance": "l1"})
    original = torch.cat([w.detach().flatten() for w in _weights(tiny_cnn)])
    pruned = torch.cat([w.detach().flatten() for w in _weights(result.model)])
    removed = original[pruned == 0].abs()
    kept = original[pruned != 0].abs()
    assert removed.max() <= kept.min()
    assert torch.equal(pruned[pruned != 0], original[pruned != 0])  # kept weights untouched


def test_random_is_reproducible_with_the_same_seed(tiny_cnn: nn.Module) -> None:
    def mask(seed: int) -> torch.Tensor:
        params = {"importance": "random", "amount": 0.5, "seed": seed}
        model = compress(tiny_cnn, "prune_unstructured", params).model
        return torch.cat([(w == 0).flatten() for w in _weights(model)])

    assert torch.equal(mask(3), mask(3))
    assert not torch.equal(mask(3), mask(4))


def test_random_does_not_disturb_the_global_generator(tiny_cnn: nn.Module) -> None:
    torch.manual_seed(42)
    expected = torch.rand(3)
    torch.manual_seed(42)
    compress(tiny_cnn, "prune_unstructured", {"importance": "random"})
    assert torch.equal(torch.rand(3), expected)


def test_finetuning_keeps_pruned_weights_at_zero(
    tiny_cnn: nn.Module, loader: DataLoader, batch: torch.Tensor
) -> None:
    epochs: list[int] = []
    params = {"amount": 0.6, "finetune_epochs": 2, "lr": 0.05}
    result = compress(
        tiny_cnn, "prune_unstructured", params, data=loader, progress=False,
        on_epoch_end=lambda epoch, _: epochs.append(epoch),
    )
    assert epochs == [0, 1]
    assert result.info["finetune_epochs"] == 2 and "finetune_loss" in result.info
    pruned_only = compress(tiny_cnn, "prune_unstructured", {"amount": 0.6}).model
    for tuned, mask in zip(_weights(result.model), _weights(pruned_only), strict=True):
        assert torch.all(tuned[mask == 0] == 0)  # the same weights pruned, and still zero
        assert not torch.equal(tuned, mask)  # while the kept ones were trained
    assert not result.model.training
    with torch.no_grad():
        assert result.model(batch).shape == (batch.shape[0], 10)


def test_finetuning_without_data_names_the_field(tiny_cnn: nn.Module) -> None:
    with pytest.raises(ConfigError) as err:
        compress(tiny_cnn, "prune_unstructured", {"finetune_epochs": 1})
    assert err.value.field == "data"


def test_a_model_without_conv_or_linear_cannot_be_pruned() -> None:
    with pytest.raises(CompressionError, match="no Conv or Linear layer"):
        compress(nn.Sequential(nn.ReLU()), "prune_unstructured")
