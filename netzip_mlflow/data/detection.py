"""Object-detection data: the sample format, batching, and the built-in synthetic ``shapes`` dataset.

Format (torchvision's detection convention): a sample is ``(image, target)`` with ``image`` a float32
``(3, H, W)`` tensor in [0, 1] and ``target = {"boxes": float32 (K, 4) as x1, y1, x2, y2 in pixels,
"labels": int64 (K,)}``. Labels count from 1; 0 is the detectors' background class, so the class
named ``classes[i]`` has label ``i + 1`` and a detector needs ``len(classes) + 1`` outputs.
A batch is ``(images (B, 3, H, W), [target, ...])`` (:func:`detection_collate`): every dataset here
resizes its images to one size, so they stack.

``shapes`` draws squares, circles and triangles of random sizes and colours (1-3 per image, overlapping
at most a little) on textured backgrounds (a random colour gradient, stripes or a checkerboard, plus
noise). Everything comes from one ``numpy`` generator seeded with the study's seed, so the same seed
gives the same images, boxes and train/test split on every machine. Nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from netzip_mlflow.errors import ConfigError, DataError

Target = dict[str, torch.Tensor]
DetectionBatch = tuple[torch.Tensor, list[Target]]

SHAPE_CLASSES: tuple[str, ...] = ("square", "circle", "triangle")
#: Objects per image are drawn uniformly from this closed range.
OBJECTS_PER_IMAGE = (1, 3)
#: Object side as a fraction of the image side, drawn uniformly.
OBJECT_SIZE = (0.15, 0.4)
#: A new object may overlap an earlier one by at most this IoU.
MAX_OVERLAP_IOU = 0.1


class DetectionDataset(Dataset):
    """Images (kept as uint8 to save memory) with their boxes and labels.

    Args:
        images: uint8 ``(N, 3, H, W)``.
        targets: one ``{"boxes", "labels"}`` dict per image (see the module docstring).
    """

    def __init__(self, images: torch.Tensor, targets: Sequence[Target]) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[0] != len(targets):
            raise DataError(
                f"detection images must be uint8 (N, 3, H, W) with one target each; got "
                f"{images.dtype} {tuple(images.shape)} for {len(targets)} targets"
            )
        self.images = images
        self.targets = list(targets)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        target = self.targets[index]
        return self.images[index].float() / 255.0, {k: v.clone() for k, v in target.items()}


@dataclass(frozen=True)
class DetectionSplit:
    """A train/test split of a detection dataset.

    Attributes:
        train, test: datasets yielding ``(image, target)`` samples.
        classes: class names without the background; ``classes[i]`` has label ``i + 1``.
        input_shape: ``(C, H, W)`` of every image.
        name: where the data came from.
    """

    train: Dataset
    test: Dataset
    classes: list[str]
    input_shape: tuple[int, int, int]
    name: str

    @property
    def num_classes(self) -> int:
        """Outputs a torchvision detector needs: the classes plus background."""
        return len(self.classes) + 1

    @staticmethod
    def collate_fn(samples: list[tuple[torch.Tensor, Target]]) -> DetectionBatch:
        """Batch samples (see :func:`detection_collate`)."""
        return detection_collate(samples)


def detection_collate(samples: list[tuple[torch.Tensor, Target]]) -> DetectionBatch:
    """``[(image, target), ...]`` -> ``(images stacked (B, C, H, W), [target, ...])``."""
    if not samples:
        raise DataError("cannot batch an empty list of detection samples")
    shapes = {tuple(image.shape) for image, _ in samples}
    if len(shapes) != 1:
        raise DataError(
            f"detection images of one batch must share a size to stack, got {sorted(shapes)}; "
            "resize them to one size (data.image_size)"
        )
    return torch.stack([image for image, _ in samples]), [target for _, target in samples]


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices of a seeded random split of ``n`` items (at least 1 each)."""
    if not 0 < test_fraction < 1:
        raise ConfigError("data.test_fraction", f"must be in (0, 1), got {test_fraction}")
    if n < 2:
        raise DataError(f"a detection dataset needs at least 2 images to split, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_test = min(max(int(round(n * test_fraction)), 1), n - 1)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two ``x1, y1, x2, y2`` boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured ``(size, size, 3)`` float background in [0, 255]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.uniform(40, 215, 3), rng.uniform(40, 215, 3)
    t = (xx * np.cos(a := rng.uniform(0, np.pi)) + yy * np.sin(a))[..., None]
    img = c0 + (c1 - c0) * np.clip(t, 0, 1)
    kind = rng.integers(3)
    if kind == 1:  # stripes
        period, angle = rng.uniform(6, 20), rng.uniform(0, np.pi)
        wave = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) * size / period)
        img = img + rng.uniform(15, 35) * wave[..., None]
    elif kind == 2:  # checkerboard
        cell = int(rng.integers(8, 24))
        board = ((np.arange(size)[:, None] // cell + np.arange(size)[None, :] // cell) % 2) * 2 - 1
        img = img + rng.uniform(15, 35) * board[..., None]
    img = img + rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255)


def _draw(draw: ImageDraw.ImageDraw, kind: str, box: np.ndarray, colour: tuple[int, int, int]) -> None:
    x1, y1, x2, y2 = (float(v) for v in box)
    if kind == "square":
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=colour)
    elif kind == "circle":
        draw.ellipse((x1, y1, x2 - 1, y2 - 1), fill=colour)
    else:
        draw.polygon([((x1 + x2) / 2, y1), (x2 - 1, y2 - 1), (x1, y2 - 1)], fill=colour)


def _colour(rng: np.random.Generator, background: np.ndarray, box: np.ndarray) -> tuple[int, int, int]:
    """A random colour that differs clearly from the mean background under ``box``."""
    x1, y1, x2, y2 = box.astype(int)
    under = background[y1:y2, x1:x2].reshape(-1, 3).mean(axis=0)
    for _ in range(20):
        colour = rng.integers(0, 256, 3)
        if np.abs(colour - under).sum() > 150:
            break
    return tuple(int(c) for c in colour)


def _boxes(rng: np.random.Generator, size: int) -> list[np.ndarray]:
    count = int(rng.integers(OBJECTS_PER_IMAGE[0], OBJECTS_PER_IMAGE[1] + 1))
    boxes: list[np.ndarray] = []
    for _ in range(count * 10):  # a few tries per object to avoid heavy overlap
        if len(boxes) == count:
            break
        side = int(round(rng.uniform(*OBJECT_SIZE) * size))
        x1, y1 = rng.integers(0, size - side + 1, 2)
        box = np.array([x1, y1, x1 + side, y1 + side], dtype=np.float32)
        if all(box_iou(box, other) <= MAX_OVERLAP_IOU for other in boxes):
            boxes.append(box)
    return boxes


def make_shapes(n_images: int, image_size: int = 128, seed: int = 0) -> DetectionDataset:
    """Generate ``n_images`` synthetic images of squares, circles and triangles with their boxes.

    Args:
        n_images: how many images (at least 2).
        image_size: side of the square images in pixels (at least 32).
        seed: seed of everything drawn.
    """
    if n_images < 2:
        raise ConfigError("data.limit", f"the shapes dataset needs at least 2 images, got {n_images}")
    if image_size < 32:
        raise ConfigError("data.image_size", f"the shapes dataset needs images of at least 32 px, got {image_size}")
    rng = np.random.default_rng(seed)
    images = torch.empty((n_images, 3, image_size, image_size), dtype=torch.uint8)
    targets: list[Target] = []
    for i in range(n_images):
        background = _background(rng, image_size)
        canvas = Image.fromarray(background.astype(np.uint8))
        draw = ImageDraw.Draw(canvas)
        boxes = _boxes(rng, image_size)
        labels = rng.integers(0, len(SHAPE_CLASSES), len(boxes))
        for box, label in zip(boxes, labels):
            _draw(draw, SHAPE_CLASSES[label], box, _colour(rng, background, box))
        images[i] = torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1)
        targets.append({
            "boxes": torch.from_numpy(np.stack(boxes)).float(),
            "labels": torch.from_numpy(labels.astype(np.int64) + 1),
        })
    return DetectionDataset(images, targets)


DEFAULT_SHAPES_IMAGES = 300


def load_shapes(
    n_images: int | None = None, image_size: int = 128, test_fraction: float = 0.2, seed: int = 0
) -> DetectionSplit:
    """The built-in ``shapes`` detection dataset, split into train and test.

    Args:
        n_images: images in total (default :data:`DEFAULT_SHAPES_IMAGES`).
        image_size: side of the square images in pixels.
        test_fraction: share of the images held out for evaluation, in (0, 1).
        seed: seed of the images and of the split.
    """
    data = make_shapes(n_images or DEFAULT_SHAPES_IMAGES, image_size, seed)
    train_idx, test_idx = split_indices(len(data), test_fraction, seed)
    train = DetectionDataset(data.images[train_idx], [data.targets[i] for i in train_idx])
    test = DetectionDataset(data.images[test_idx], [data.targets[i] for i in test_idx])
    return DetectionSplit(train, test, list(SHAPE_CLASSES), (3, image_size, image_size), "shapes")
