"""User image data from a folder tree (``root/<class>/<image>``), indexed and verified whole.

Before anything is trained or logged, every image file under the root is listed and decoded once
(with a progress bar), so a truncated, empty, non-image or decompression-bomb file is named up front
instead of failing a run half-way. Symbolic links are followed only while they stay inside the root,
and a link back to a folder being walked (a loop) is refused: without that, ``cat/loop -> ..`` lists
every other class's images again under ``cat``.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torchvision import transforms

from netzip_mlflow.data.builtin import SplitDataset, stratified_split
from netzip_mlflow.errors import DataError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
LAYOUT = "expected root/<class name>/<image>.png|jpg"


@dataclass
class FolderIndex:
    """What :func:`index_folder` found: ``(path, label)`` samples, class names and what it left out.

    ``corrupt`` holds ``(path, reason)`` of files that could not be decoded (only when skipped);
    ``outside`` the symlinks that point out of the root (not followed).
    """

    samples: list[tuple[str, int]]
    classes: list[str]
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)


class _Walk:
    """A walk of one tree that follows symlinks only inside ``root``, refuses loops and any file
    reached twice."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.outside: list[str] = []
        self.seen: dict[Path, Path] = {}  # real file -> the path it was first reached by

    def _inside(self, real: Path) -> bool:
        return real == self.root or self.root in real.parents

    def files(self, folder: Path, ancestors: frozenset[Path]) -> list[Path]:
        """Image files under ``folder`` (recursively), sorted; ``ancestors`` are the real folders above."""
        real = folder.resolve()
        if real in ancestors:
            raise DataError(
                f"data.path: {folder} is a symlink loop (it leads back to {real}); "
                "remove the link, or replace it with a copy of the images"
            )
        if not self._inside(real):
            self.outside.append(str(folder))
            return []
        found: list[Path] = []
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                path = Path(entry.path)
                if entry.is_dir(follow_symlinks=True):
                    found.extend(self.files(path, ancestors | {real}))
                elif entry.is_file(follow_symlinks=True) and entry.name.lower().endswith(IMAGE_EXTENSIONS):
                    real_file = path.resolve()
                    if not self._inside(real_file):
                        self.outside.append(str(path))
                        continue
                    if real_file in self.seen:
                        raise DataError(
                            f"data.path: {path} and {self.seen[real_file]} are the same file (through a symlink), "
                            "so it would be counted twice, maybe in two classes or in train and test; remove the link"
                        )
                    self.seen[real_file] = path
                    found.append(path)
        return found


def check_image(path: str | Path) -> str | None:
    """Decode the image file once; ``None`` if it is a readable image, else why not (one line)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.verify()  # the container: chunk checksums, a missing end (PNG)
            with Image.open(path) as img:
                img.load()  # the pixels: a truncated JPEG fails only here
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return f"more than {Image.MAX_IMAGE_PIXELS:,} pixels (a decompression bomb?)"
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files
        text = " ".join(str(exc).split())[:120]
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return None


def index_folder(path: str | Path, skip_corrupt: bool = False, progress: bool = True) -> FolderIndex:
    """List and verify every image under ``path`` (one folder per class).

    Raises:
        DataError: the tree holds no class folder with images, has a symlink loop, fewer than two
            classes, or (without ``skip_corrupt``) a file that cannot be decoded (the first is named,
            with how many more there are).
    """
    from tqdm.auto import tqdm

    root = Path(path).expanduser()
    real_root = root.resolve()
    walk = _Walk(real_root)
    per_class: dict[str, list[Path]] = {}
    with os.scandir(root) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.is_dir(follow_symlinks=True):
                per_class[entry.name] = walk.files(Path(entry.path), frozenset({real_root}))
    if not any(per_class.values()):
        raise DataError(f"data.path: {root} holds no images in class folders; {LAYOUT}")
    empty = [name for name, files in per_class.items() if not files]
    if empty:  # a class the model would have an output for but never sees
        raise DataError(
            f"data.path: class folder {root / empty[0]} holds no images"
            f"{f' (nor do {len(empty) - 1} other class folders)' if len(empty) > 1 else ''}; "
            f"add images or remove the folder; {LAYOUT}"
        )
    if len(per_class) < 2:
        (only,) = per_class
        raise DataError(
            f"data.path: {root} has one class folder ({only!s:.60}); a classifier needs at least two classes; {LAYOUT}"
        )
    classes = sorted(per_class)
    samples: list[tuple[str, int]] = []
    corrupt: list[tuple[str, str]] = []
    total = sum(len(files) for files in per_class.values())
    with tqdm(total=total, desc=f"checking images in {root.name}", unit="img", disable=not progress, leave=False) as bar:
        for label, name in enumerate(classes):
            for file in per_class[name]:
                problem = check_image(file)
                if problem is None:
                    samples.append((str(file), label))
                else:
                    corrupt.append((str(file), problem))
                bar.update()
    if corrupt and not skip_corrupt:
        first, reason = corrupt[0]
        more = f" (and {len(corrupt) - 1} more)" if len(corrupt) > 1 else ""
        raise DataError(
            f"data.path: {first} cannot be read as an image: {reason}{more}; "
            "remove or replace it, or set data.skip_corrupt: true to leave such files out"
        )
    if corrupt:
        log.warning("data.path: left out %d image files that cannot be decoded (first: %s: %s)", len(corrupt), *corrupt[0])
    if walk.outside:
        log.warning("data.path: did not follow %d symlinks that point out of %s (first: %s)", len(walk.outside), root, walk.outside[0])
    used = {label for _, label in samples}
    if len(used) < 2:
        raise DataError(f"data.path: {root} has readable images in fewer than two class folders; {LAYOUT}")
    return FolderIndex(samples, classes, corrupt, walk.outside)


class IndexedImages(torch.utils.data.Dataset):
    """The images of a :class:`FolderIndex`, decoded as RGB and transformed (``targets``: the labels)."""

    def __init__(self, index: FolderIndex, transform: transforms.Compose) -> None:
        self.samples = index.samples
        self.targets = [label for _, label in index.samples]
        self.classes = index.classes
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        with Image.open(path) as img:
            return self.transform(img.convert("RGB")), label


def _transform(size: int, channels: int) -> transforms.Compose:
    steps: list[object] = [transforms.Resize(size), transforms.CenterCrop(size)]
    if channels == 1:
        steps += [transforms.Grayscale(1), transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))]
    else:
        steps += [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return transforms.Compose(steps)


def load_image_folder(
    path: str | Path,
    image_size: int = 224,
    channels: int = 3,
    test_fraction: float = 0.2,
    seed: int = 0,
    skip_corrupt: bool = False,
    progress: bool = True,
) -> SplitDataset:
    """Load an ImageFolder tree, every file checked (see :func:`index_folder`).

    If ``path`` holds ``train/`` and ``val/`` (or ``test/``) sub-trees they are used as the split;
    otherwise one tree is split with a seeded stratified split.

    Args:
        path: the root folder.
        image_size: images are resized and centre-cropped to this many pixels per side.
        channels: 1 (greyscale) or 3 (RGB, ImageNet normalisation).
        skip_corrupt: leave out files that cannot be decoded (counted in ``SplitDataset.skipped``)
            instead of raising.
        progress: show a progress bar while the files are checked.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"data.path: {root} does not exist or is not a folder; pass an ImageFolder tree")
    transform = _transform(image_size, channels)
    test_dir = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        train_index = index_folder(root / "train", skip_corrupt, progress)
        test_index = index_folder(test_dir, skip_corrupt, progress)
        if train_index.classes != test_index.classes:
            raise DataError(f"data.path: class folders of {root/'train'} and {test_dir} differ")
        indexes = (train_index, test_index)
        classes = train_index.classes
        train_ds: torch.utils.data.Dataset = IndexedImages(train_index, transform)
        test_ds: torch.utils.data.Dataset = IndexedImages(test_index, transform)
    else:
        index = index_folder(root, skip_corrupt, progress)
        indexes = (index,)
        full = IndexedImages(index, transform)
        labels = torch.tensor(full.targets).numpy()
        tr, te = stratified_split(labels, test_fraction, seed)
        if len(te) == 0 or len(tr) == 0:
            raise DataError(
                f"data.path: {root} has {len(labels)} images; with test_fraction {test_fraction} the "
                f"{'test' if len(te) == 0 else 'train'} split is empty; add images or change data.test_fraction"
            )
        train_ds, test_ds = torch.utils.data.Subset(full, tr), torch.utils.data.Subset(full, te)
        classes = index.classes
    skipped = tuple(p for i in indexes for p, _ in i.corrupt) + tuple(p for i in indexes for p in i.outside)
    return SplitDataset(train_ds, test_ds, classes, (channels, image_size, image_size), str(root), skipped)
