"""Model size metrics: bytes on disk (plain and gzip-compressed) and parameter counts.

Disk size is that of what ships: the model's ``state_dict`` written with ``torch.save`` to a file
named ``model.pt`` (the name matters by a few bytes: ``torch.save`` stores every record under a
folder named after the file). Quantized packed weights serialize through the ``state_dict``. MB are
10^6 bytes.

Parameter counts follow the layer-tensor definition of :mod:`netzip_mlflow.evaluation.weights`:
every weight and bias a layer owns, packed quantized ones included, buffers (BatchNorm running
statistics, observers, scales, masks) excluded, each tied tensor once.
"""

from __future__ import annotations

import gzip
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from netzip_mlflow.errors import ModelError
from netzip_mlflow.evaluation.weights import count_nonzero, iter_layer_tensors, unique_tensors
from netzip_mlflow.tracking import keys

BYTES_PER_MB = 1_000_000
SAVED_FILE_NAME = "model.pt"
GZIP_LEVEL = 9


@dataclass(frozen=True)
class SizeReport:
    """Size of one model.

    Attributes:
        disk_bytes: bytes of the ``state_dict`` saved with ``torch.save``.
        disk_mb: ``disk_bytes`` in MB (10^6 bytes).
        disk_mb_gzip: MB of the same bytes gzip-compressed at level 9.
        params: weight and bias elements (packed quantized ones included).
        params_nonzero: those that are not exactly zero.
        sparsity: ``1 - params_nonzero / params`` (0.0 for a model without parameters).
    """

    disk_bytes: int
    disk_mb: float
    disk_mb_gzip: float
    params: int
    params_nonzero: int
    sparsity: float

    @classmethod
    def of(cls, data: bytes, params: int, params_nonzero: int) -> SizeReport:
        """The report of a model whose shipped bytes are ``data`` (gzip -9 measured here)."""
        return cls(
            disk_bytes=len(data),
            disk_mb=len(data) / BYTES_PER_MB,
            disk_mb_gzip=len(gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)) / BYTES_PER_MB,
            params=params,
            params_nonzero=params_nonzero,
            sparsity=1.0 - params_nonzero / params if params else 0.0,
        )

    def as_metrics(self) -> dict[str, float]:
        """The ``size/*`` metrics, keyed by the constants of :mod:`netzip_mlflow.tracking.keys`."""
        return {
            keys.DISK_MB: self.disk_mb,
            keys.DISK_MB_GZIP: self.disk_mb_gzip,
            keys.PARAMS: float(self.params),
            keys.PARAMS_NONZERO: float(self.params_nonzero),
            keys.SPARSITY: self.sparsity,
        }


def model_size(model: nn.Module) -> SizeReport:
    """Measure ``model``: serialized ``state_dict`` size (plain, gzip -9) and parameter counts."""
    data = serialized_state_dict(model)
    return SizeReport.of(data, *param_counts(model))


def param_counts(model: nn.Module) -> tuple[int, int]:
    """Weight and bias elements of ``model``'s layers (each tied tensor once), and those not zero."""
    tensors = unique_tensors(list(iter_layer_tensors(model)))
    return sum(t.numel() for t in tensors), sum(count_nonzero(t) for t in tensors)


def serialized_state_dict(model: nn.Module) -> bytes:
    """The bytes of ``torch.save(model.state_dict(), "<tmp>/model.pt")``."""
    with tempfile.TemporaryDirectory(prefix="netzip-size-") as folder:
        path = Path(folder) / SAVED_FILE_NAME
        try:
            torch.save(model.state_dict(), path)
        except Exception as error:
            raise ModelError(
                f"cannot serialize the model's state_dict with torch.save ({type(error).__name__}: "
                f"{error}); keep only tensors and packed quantized parameters in the state_dict"
            ) from error
        return path.read_bytes()


def file_size_mb(path: str | os.PathLike[str]) -> float:
    """Size of the file at ``path`` in MB (10^6 bytes)."""
    try:
        return os.path.getsize(path) / BYTES_PER_MB
    except OSError as error:
        raise ModelError(
            f"cannot read the size of {os.fspath(path)!r} ({error.strerror}); pass the path of an "
            "existing saved model file"
        ) from error
