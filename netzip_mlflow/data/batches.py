"""Turn what users pass as data (a DataLoader, a Dataset, a list of batches) into batches."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from netzip_mlflow.errors import DataError

Batch = tuple[torch.Tensor, torch.Tensor]


def as_batches(
    data: Iterable[Batch] | Dataset, batch_size: int = 128, collate_fn: Callable[[list], object] | None = None
) -> Iterable[Batch]:
    """An iterable of ``(inputs, targets)`` batches (the package's one batch adapter).

    A ``Dataset`` (map-style, has ``__getitem__`` and ``__len__``) is wrapped in an unshuffled
    ``DataLoader`` with ``batch_size`` (and ``collate_fn``, e.g. detection's list-of-targets
    collate); anything else is taken to yield batches already.
    """
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, Dataset) and hasattr(data, "__len__"):
        return DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)
    if isinstance(data, Iterable):
        return data
    raise DataError(
        f"data of type {type(data).__name__} is neither a Dataset nor an iterable of "
        "(inputs, targets) batches; pass a torch DataLoader"
    )


def iter_checked(data: Iterable[Batch]) -> Iterator[Batch]:
    """Iterate batches, checking each is an ``(inputs, targets)`` pair of tensors."""
    for i, batch in enumerate(data):
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise DataError(f"batch {i} is a {type(batch).__name__}, expected (inputs, targets)")
        inputs, targets = batch
        if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
            raise DataError(f"batch {i}: inputs and targets must be tensors")
        yield inputs, targets


def first_batch(data: Iterable[Batch]) -> Batch:
    """The first ``(inputs, targets)`` batch; ``DataError`` if there is none."""
    for batch in iter_checked(data):
        return batch
    raise DataError("the data yielded no batches; pass a non-empty dataset")
