"""nni: NNI 3.0 pruners make masks; channels are removed through torch-pruning (optional extra)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from netzip_mlflow.compression.registry import compress

pytest.importorskip("nni.compression.pruning", reason="the optional extra [nni] is not installed")


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("pruner", ["l1norm", "l2norm", "fpgm"])
def test_channel_pruners_remove_the_masked_channels(
    tiny_cnn: nn.Module, batch: torch.Tensor, pruner: str
) -> None:
    result = compress(tiny_cnn, "nni", {"pruner": pruner, "amount": 0.5}, example_inputs=batch)
    model = result.model
    # half the output channels of each conv are gone, BN and the next layer follow
    assert model.features[0].out_channels == 8 and model.features[3].out_channels == 16
    assert model.features[1].num_features == 8 and model.features[3].in_channels == 8
    assert model.classifier.in_features == 16 and model.classifier.out_features == 10
    assert result.info["params_after"] == _params(model) < _params(tiny_cnn)
    assert result.info["ignored_layers"] == "classifier"
    with torch.no_grad():
        assert model(batch).shape == tiny_cnn(batch).shape


def test_l1norm_keeps_the_channels_of_largest_l1_norm(
    tiny_cnn: nn.Module, batch: torch.Tensor
) -> None:
    result = compress(tiny_cnn, "nni", {"pruner": "l1norm", "amount": 0.5}, example_inputs=batch)
    weight = tiny_cnn.features[0].weight.detach()
    kept = torch.sort(torch.topk(weight.abs().flatten(1).sum(1), 8).indices).values
    assert torch.equal(result.model.features[0].weight.detach(), weight[kept])


def test_level_pruner_zeroes_weights_within_one_percent(
    tiny_cnn: nn.Module, loader: DataLoader
) -> None:
    result = compress(tiny_cnn, "nni", {"pruner": "level", "amount": 0.6, "finetune_epochs": 1},
                      data=loader, progress=False)
    convs = [result.model.features[0], result.model.features[3]]
    zeros = sum(int((c.weight == 0).sum()) for c in convs)
    total = sum(c.weight.numel() for c in convs)
    assert zeros / total == pytest.approx(0.6, abs=0.01)
    assert result.info["sparsity_achieved"] == pytest.approx(zeros / total)
    head = result.model.classifier.weight
    assert torch.count_nonzero(head) == head.numel()
    assert _params(result.model) == _params(tiny_cnn)
