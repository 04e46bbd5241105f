"""The synthetic shapes detection dataset: determinism, valid boxes, split, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netzip_mlflow.data.detection import (
    SHAPE_CLASSES,
    box_iou,
    detection_collate,
    load_shapes,
    make_shapes,
    split_indices,
)
from netzip_mlflow.errors import ConfigError, DataError


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = make_shapes(6, 64, seed=3), make_shapes(6, 64, seed=3), make_shapes(6, 64, seed=4)
    assert torch.equal(a.images, b.images)
    assert all(torch.equal(x["boxes"], y["boxes"]) for x, y in zip(a.targets, b.targets))
    assert not torch.equal(a.images, c.images)


def test_boxes_lie_in_the_image_and_labels_name_shapes():
    data = make_shapes(20, 64, seed=0)
    for image, target in (data[i] for i in range(len(data))):
        assert image.shape == (3, 64, 64) and image.dtype == torch.float32
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        boxes = target["boxes"]
        assert 1 <= len(boxes) <= 3 and len(boxes) == len(target["labels"])
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 64).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        assert set(target["labels"].tolist()) <= set(range(1, len(SHAPE_CLASSES) + 1))


def test_objects_are_drawn_inside_their_boxes():
    # Every shape (square, circle, triangle) covers the centre column of its box just below the
    # middle, filled with one colour chosen to differ from the background: the pixels there are equal.
    data = make_shapes(5, 64, seed=1)
    for i in range(len(data)):
        image = data.images[i].int()
        for box in data.targets[i]["boxes"].int().tolist():
            x1, y1, x2, y2 = box
            cx, cy = (x1 + x2) // 2, (y1 + y2) // 2 + 1
            assert torch.equal(image[:, cy, cx], image[:, cy + 1, cx])
            assert torch.equal(image[:, cy, cx], image[:, cy, cx - 1])


def test_split_is_disjoint_complete_and_seeded():
    train, test = split_indices(50, 0.2, seed=7)
    assert len(test) == 10 and len(train) == 40
    assert set(train).isdisjoint(test) and set(train) | set(test) == set(range(50))
    again, _ = split_indices(50, 0.2, seed=7)
    assert np.array_equal(train, again)


def test_load_shapes_split_and_collate():
    split = load_shapes(30, 64, 0.2, seed=0)
    assert len(split.train) == 24 and len(split.test) == 6
    assert split.classes == list(SHAPE_CLASSES) and split.num_classes == 4
    images, targets = detection_collate([split.train[i] for i in range(3)])
    assert images.shape == (3, 3, 64, 64) and len(targets) == 3


def test_overlap_is_limited():
    data = make_shapes(30, 64, seed=2)
    for target in data.targets:
        boxes = target["boxes"].numpy()
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                assert box_iou(boxes[i], boxes[j]) <= 0.1 + 1e-6


def test_errors():
    with pytest.raises(ConfigError):
        make_shapes(1, 64)
    with pytest.raises(ConfigError):
        make_shapes(4, 16)
    with pytest.raises(DataError, match="share a size"):
        detection_collate([(torch.zeros(3, 8, 8), {}), (torch.zeros(3, 9, 9), {})])
