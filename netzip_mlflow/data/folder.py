"""User image data from a folder tree (``root/<class>/<image>``) through torchvision's ImageFolder."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision import datasets, transforms

from netzip_mlflow.data.builtin import SplitDataset, stratified_split
from netzip_mlflow.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _folder(path: Path, size: int, channels: int) -> datasets.ImageFolder:
    steps: list[object] = [transforms.Resize(size), transforms.CenterCrop(size)]
    if channels == 1:
        steps += [transforms.Grayscale(1), transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))]
    else:
        steps += [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    try:
        return datasets.ImageFolder(str(path), transform=transforms.Compose(steps))
    except (FileNotFoundError, RuntimeError) as exc:  # torchvision raises these for empty trees
        raise DataError(
            f"data.path: {path} holds no images in class folders ({exc}); "
            "expected root/<class name>/<image>.png|jpg"
        ) from exc


def load_image_folder(
    path: str | Path,
    image_size: int = 224,
    channels: int = 3,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> SplitDataset:
    """Load an ImageFolder tree.

    If ``path`` holds ``train/`` and ``val/`` (or ``test/``) sub-trees they are used as the split;
    otherwise one tree is split with a seeded stratified split.

    Args:
        path: the root folder.
        image_size: images are resized and centre-cropped to this many pixels per side.
        channels: 1 (greyscale) or 3 (RGB, ImageNet normalisation).
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"data.path: {root} does not exist or is not a folder; pass an ImageFolder tree")
    test_dir = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        train = _folder(root / "train", image_size, channels)
        test = _folder(test_dir, image_size, channels)
        if train.classes != test.classes:
            raise DataError(f"data.path: class folders of {root/'train'} and {test_dir} differ")
        classes = train.classes
        train_ds: torch.utils.data.Dataset = train
        test_ds: torch.utils.data.Dataset = test
    else:
        full = _folder(root, image_size, channels)
        labels = torch.tensor(full.targets).numpy()
        tr, te = stratified_split(labels, test_fraction, seed)
        if len(te) == 0 or len(tr) == 0:
            raise DataError(f"data.path: {root} has too few images to split ({len(labels)})")
        train_ds, test_ds = torch.utils.data.Subset(full, tr), torch.utils.data.Subset(full, te)
        classes = full.classes
    return SplitDataset(train_ds, test_ds, classes, (channels, image_size, image_size), str(root))
