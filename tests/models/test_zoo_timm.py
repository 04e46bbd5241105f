"""timm architectures by name (``model.arch: timm/<name>``, the ``[timm]`` extra): random weights,
nothing downloaded, the dataset's classes and channels."""

from __future__ import annotations

import pytest
import torch

from netzip_mlflow.errors import ConfigError
from netzip_mlflow.models import zoo
from netzip_mlflow.models.zoo import build_model, check_architecture

timm = pytest.importorskip("timm")


def test_a_timm_model_is_timms_own_with_our_classes_and_channels():
    model = build_model("timm/resnet10t", 7, (1, 32, 32), seed=3)
    reference = timm.create_model("resnet10t", pretrained=False, num_classes=7, in_chans=1)
    assert type(model) is type(reference)
    assert [(n, p.shape) for n, p in model.named_parameters()] == [(n, p.shape) for n, p in reference.named_parameters()]
    assert model.get_submodule("conv1.0").in_channels == 1
    again = build_model("timm/resnet10t", 7, (1, 32, 32), seed=3)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert model.eval()(torch.zeros(2, 1, 32, 32)).shape == (2, 7)


def test_a_vision_transformer_gets_the_images_side():
    model = build_model("timm/vit_tiny_patch16_224", 4, (3, 32, 32))
    assert model.patch_embed.img_size == (32, 32)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 4)


def test_an_unknown_timm_name_is_refused_with_the_closest_names():
    with pytest.raises(ConfigError, match=r"model\.arch: unknown timm architecture 'resnet10x'.*timm/resnet10t"):
        check_architecture("timm/resnet10x")


def test_without_timm_the_error_names_the_extra(monkeypatch):
    monkeypatch.setattr(zoo, "_timm", lambda: None)
    with pytest.raises(ConfigError, match=r"model\.arch: 'timm/resnet10t' needs timm.*netzip-mlflow\[timm\]"):
        check_architecture("timm/resnet10t")
