"""The built-in detector: built offline with seeded weights, torchvision's contract, a training loop."""

from __future__ import annotations

import math

import pytest
import torch

from netzip_mlflow.data.detection import detection_collate, make_shapes
from netzip_mlflow.errors import ConfigError, ModelError
from netzip_mlflow.models.detection_zoo import DEFAULT_DETECTOR, build_detector, train_detector


def test_seeded_and_eval_contract():
    a = build_detector(DEFAULT_DETECTOR, 4, 64, seed=1)
    b = build_detector(DEFAULT_DETECTOR, 4, 64, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert a.roi_heads.box_predictor.cls_score.out_features == 4
    with torch.no_grad():
        out = a.eval()(torch.rand(2, 3, 64, 64))
    assert len(out) == 2 and set(out[0]) == {"boxes", "labels", "scores"}


def test_train_detector_reports_losses_per_epoch():
    data = make_shapes(4, 64, seed=0)
    batches = [detection_collate([data[0], data[1]]), detection_collate([data[2], data[3]])]
    model = build_detector(DEFAULT_DETECTOR, 4, 64)
    seen = []
    history = train_detector(model, batches, 1, 1e-3, optimizer="adam", progress=False,
                             on_epoch_end=lambda e, m: seen.append((e, m)))
    assert len(history) == 1 and seen[0][0] == 0
    assert {"loss", "loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"} <= set(history[0])
    parts = sum(v for k, v in history[0].items() if k != "loss")
    assert history[0]["loss"] == pytest.approx(parts, rel=1e-5) and math.isfinite(parts)
    assert not model.training


def test_errors():
    with pytest.raises(ConfigError, match="model.arch"):
        build_detector("yolo", 4, 64)
    with pytest.raises(ConfigError, match="optimizer"):
        train_detector(build_detector(DEFAULT_DETECTOR, 4, 64), [], 1, 0.1, optimizer="rmsprop")
    with pytest.raises(ModelError, match=r"model\(images, targets\)"):
        train_detector(torch.nn.Linear(2, 2), [(torch.zeros(1, 2), [{}])], 1, 0.1, progress=False)

    class NoDict(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, images, targets):
            return self.w.sum()

    with pytest.raises(ModelError, match="dict of losses"):
        train_detector(NoDict(), [(torch.zeros(1, 2), [{}])], 1, 0.1, progress=False)
