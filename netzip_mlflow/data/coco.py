"""User detection data: a COCO-format folder (images + ``instances.json``) as a :class:`DetectionSplit`.

Layout: ``root/instances.json`` (or ``root/annotations/instances.json``) in COCO's object-detection
format (``images`` with ``id``, ``file_name``; ``annotations`` with ``image_id``, ``category_id``,
``bbox`` as ``[x, y, width, height]`` in pixels, optional ``iscrowd``; ``categories`` with ``id``,
``name``), and the image files at ``root/<file_name>`` or ``root/images/<file_name>``.

Category ids are mapped, in increasing id order, to labels 1..K (0 is background) and named by the
categories' names. Crowd annotations (``iscrowd: 1``) and boxes with no area are skipped. Every image
is converted to RGB and resized to ``image_size`` x ``image_size`` pixels, its boxes scaled with it,
so batches stack. The JSON is read with ``json`` (no pickle); images with Pillow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from netzip_mlflow.data.detection import DetectionDataset, DetectionSplit, Target, split_indices
from netzip_mlflow.errors import DataError

ANNOTATION_FILES = ("instances.json", "annotations/instances.json")
IMAGE_DIRS = ("", "images")


def _find(root: Path, candidates: tuple[str, ...], what: str) -> Path:
    for name in candidates:
        if (root / name).is_file():
            return root / name
    raise DataError(f"data.path: no {what} in {root} (looked for {', '.join(candidates)})")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"data.path: {path} is not readable JSON ({exc})") from exc
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(doc.get(k), list)]
    if missing:
        raise DataError(f"data.path: {path} lacks the COCO list(s) {', '.join(missing)}")
    return doc


def _image_file(root: Path, file_name: str) -> Path:
    for folder in IMAGE_DIRS:
        path = root / folder / file_name
        if path.is_file():
            return path
    raise DataError(f"data.path: image {file_name!r} of the annotations is neither in {root} nor in {root / 'images'}")


def load_coco_folder(
    path: str | Path, image_size: int = 320, test_fraction: float = 0.2, seed: int = 0
) -> DetectionSplit:
    """Load a COCO-format detection folder and split it with a seeded random split.

    Args:
        path: the folder (see the module docstring for its layout).
        image_size: images are resized to this many pixels per side (boxes scaled with them).
        test_fraction: share of the images held out for evaluation, in (0, 1).
        seed: seed of the split.

    Raises:
        DataError: the folder, the JSON or an image is missing or malformed.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"data.path: {root} does not exist or is not a folder; pass a COCO folder")
    doc = _read_json(_find(root, ANNOTATION_FILES, "COCO annotation file"))
    categories = sorted(doc["categories"], key=lambda c: c["id"])
    if not categories:
        raise DataError("data.path: the COCO file lists no categories")
    label_of = {c["id"]: i + 1 for i, c in enumerate(categories)}
    images = sorted(doc["images"], key=lambda im: im["id"])
    if len(images) < 2:
        raise DataError(f"data.path: a detection dataset needs at least 2 images, the COCO file lists {len(images)}")
    boxes: dict[int, list[list[float]]] = {im["id"]: [] for im in images}
    labels: dict[int, list[int]] = {im["id"]: [] for im in images}
    for ann in doc["annotations"]:
        if ann.get("iscrowd", 0) or ann["image_id"] not in boxes:
            continue
        if ann["category_id"] not in label_of:
            raise DataError(f"data.path: annotation {ann.get('id')} has unknown category_id {ann['category_id']}")
        x, y, w, h = (float(v) for v in ann["bbox"])
        if w <= 0 or h <= 0:
            continue
        boxes[ann["image_id"]].append([x, y, x + w, y + h])
        labels[ann["image_id"]].append(label_of[ann["category_id"]])
    pixels = torch.empty((len(images), 3, image_size, image_size), dtype=torch.uint8)
    targets: list[Target] = []
    for i, info in enumerate(images):
        file = _image_file(root, info["file_name"])
        with Image.open(file) as img:
            rgb = img.convert("RGB")
            sx, sy = image_size / rgb.width, image_size / rgb.height
            resized = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
        pixels[i] = torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1)
        b = torch.tensor(boxes[info["id"]], dtype=torch.float32).reshape(-1, 4)
        b = b * torch.tensor([sx, sy, sx, sy])
        b = b.clamp(min=0, max=image_size)
        targets.append({"boxes": b, "labels": torch.tensor(labels[info["id"]], dtype=torch.int64)})
    train_idx, test_idx = split_indices(len(images), test_fraction, seed)
    train = DetectionDataset(pixels[train_idx], [targets[i] for i in train_idx])
    test = DetectionDataset(pixels[test_idx], [targets[i] for i in test_idx])
    names = [str(c["name"]) for c in categories]
    return DetectionSplit(train, test, names, (3, image_size, image_size), f"coco:{root.name}")
