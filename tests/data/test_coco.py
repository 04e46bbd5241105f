"""The COCO-format folder loader on a tiny generated folder."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from netzip_mlflow.data.coco import load_coco_folder
from netzip_mlflow.errors import DataError


def _folder(tmp_path, with_images=True):
    (tmp_path / "images").mkdir()
    images = []
    for i in range(4):
        name = f"img{i}.png"
        if with_images:
            Image.new("RGB", (40, 20), (10 * i, 0, 0)).save(tmp_path / "images" / name)
        images.append({"id": 100 + i, "file_name": name, "width": 40, "height": 20})
    annotations = [
        {"id": 1, "image_id": 100, "category_id": 9, "bbox": [4, 2, 20, 10], "iscrowd": 0},
        {"id": 2, "image_id": 100, "category_id": 5, "bbox": [0, 0, 40, 20], "iscrowd": 1},  # crowd: skipped
        {"id": 3, "image_id": 101, "category_id": 5, "bbox": [10, 5, 10, 5]},
        {"id": 4, "image_id": 102, "category_id": 5, "bbox": [1, 1, 0, 5]},  # no area: skipped
    ]
    categories = [{"id": 9, "name": "dog"}, {"id": 5, "name": "cat"}]
    doc = {"images": images, "annotations": annotations, "categories": categories}
    (tmp_path / "instances.json").write_text(json.dumps(doc))
    return tmp_path


def _all(split):
    items = [split.train[i] for i in range(len(split.train))] + [split.test[i] for i in range(len(split.test))]
    return items


def test_loads_resizes_and_maps_categories(tmp_path):
    split = load_coco_folder(_folder(tmp_path), image_size=80, test_fraction=0.25, seed=0)
    assert split.classes == ["cat", "dog"]  # ids 5, 9 -> labels 1, 2
    assert len(split.train) == 3 and len(split.test) == 1
    assert split.input_shape == (3, 80, 80)
    items = _all(split)
    assert all(image.shape == (3, 80, 80) for image, _ in items)
    found = {tuple(t["boxes"].reshape(-1).tolist()): t["labels"].tolist() for _, t in items if len(t["labels"])}
    # image 100: dog box x 4..24, y 2..12 in a 40x20 image; scaled by (2, 4) -> (8, 8, 48, 48)
    assert found[(8.0, 8.0, 48.0, 48.0)] == [2]
    # image 101: cat box x 10..20, y 5..10 -> (20, 20, 40, 40)
    assert found[(20.0, 20.0, 40.0, 40.0)] == [1]
    assert sum(len(t["labels"]) for _, t in items) == 2  # crowd and empty boxes skipped


def test_same_seed_same_split(tmp_path):
    folder = _folder(tmp_path)
    a = load_coco_folder(folder, 32, 0.5, seed=1)
    b = load_coco_folder(folder, 32, 0.5, seed=1)
    assert torch.equal(a.train.images, b.train.images)


def test_missing_pieces_are_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_coco_folder(tmp_path / "nope")
    with pytest.raises(DataError, match="COCO annotation file"):
        load_coco_folder(tmp_path)
    folder = _folder(tmp_path, with_images=False)
    with pytest.raises(DataError, match="img0.png"):
        load_coco_folder(folder, 32)
