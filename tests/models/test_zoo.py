"""Built-in architectures at full and reduced width."""

from __future__ import annotations

import pytest
import torch
import torchvision

from netzip_mlflow.errors import ConfigError
from netzip_mlflow.models.zoo import build_model


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_half_width_resnet18_has_half_the_channels_and_the_same_structure() -> None:
    full = build_model("resnet18", 10, (3, 32, 32))
    half = build_model("resnet18", 10, (3, 32, 32), width=0.5)
    assert isinstance(half, torchvision.models.ResNet)
    assert [type(m) for m in half.modules()] == [type(m) for m in full.modules()]
    assert half.conv1.out_channels == 32 and half.layer4[1].conv2.out_channels == 256
    assert half.layer2[0].downsample[0].out_channels == half.layer2[0].conv2.out_channels == 64
    assert half.fc.in_features == 256 and half.fc.out_features == 10
    # conv parameters scale with width^2: about a quarter of the full model
    assert 0.2 < _params(half) / _params(full) < 0.3
    with torch.no_grad():
        assert half.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_narrow_models_are_freshly_initialised_and_seeded() -> None:
    a = build_model("tiny_cnn", 4, (1, 8, 8), seed=3, width=0.5)
    b = build_model("tiny_cnn", 4, (1, 8, 8), seed=3, width=0.5)
    c = build_model("tiny_cnn", 4, (1, 8, 8), seed=4, width=0.5)
    assert a.features[0].out_channels == 8 and a.classifier.in_features == 16
    assert torch.equal(a.features[0].weight, b.features[0].weight)
    assert not torch.equal(a.features[0].weight, c.features[0].weight)
    # Kaiming normal, fan-out mode: std = sqrt(2 / (out_channels * 3 * 3))
    weight = build_model("resnet18", 10, (3, 64, 64), width=0.5).layer3[0].conv2.weight
    expected = (2 / (weight.shape[0] * 9)) ** 0.5
    assert weight.std().item() == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("width", [0.0, 1.5, -0.1])
def test_width_out_of_range_names_the_field(width: float) -> None:
    with pytest.raises(ConfigError) as err:
        build_model("tiny_cnn", 4, (1, 8, 8), width=width)
    assert err.value.field == "width"


def test_unknown_architecture_names_the_field() -> None:
    with pytest.raises(ConfigError) as err:
        build_model("vgg99", 4, (1, 8, 8))
    assert err.value.field == "model.arch"


def test_any_torchvision_classifier_by_name_with_the_datas_classes_and_channels() -> None:
    model = build_model("mobilenet_v3_small", 3, (1, 32, 32))
    reference = torchvision.models.mobilenet_v3_small(num_classes=3)
    assert isinstance(model, torchvision.models.MobileNetV3)
    assert model.features[0][0].in_channels == 1  # the stem rebuilt for grey images
    assert model.classifier[-1].out_features == 3
    # everything but the stem is torchvision's own layout: same parameter names and shapes
    ours = {k: v.shape for k, v in model.state_dict().items() if not k.startswith("features.0.0")}
    theirs = {k: v.shape for k, v in reference.state_dict().items() if not k.startswith("features.0.0")}
    assert ours == theirs
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 1, 32, 32)).shape == (2, 3)


def test_unknown_architecture_names_the_field_and_close_names() -> None:
    with pytest.raises(ConfigError, match=r"model\.arch.*mobilenet_v3_small"):
        build_model("mobilenet_v3_smal", 3, (3, 32, 32))


def test_narrowing_a_torchvision_model_keeps_its_classifier() -> None:
    half = build_model("mobilenet_v3_small", 5, (3, 32, 32), width=0.5)
    assert half.classifier[-1].out_features == 5
    assert half.features[0][0].out_channels == 8  # 16 stem channels halved
