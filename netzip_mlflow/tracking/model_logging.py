"""Logging a (compressed) torch model as an MLflow model that loads back with ``mlflow.pytorch``."""

from __future__ import annotations

import importlib.metadata
import warnings

import mlflow
import torch
from torch import nn

from netzip_mlflow import model_pickle

MODEL_NAME = "model"


def _requirements() -> list[str]:
    # Named explicitly: MLflow's requirement inference re-imports the model in a subprocess (slow).
    out = []
    for dist in ("torch", "torchvision", "netzip-mlflow"):
        try:
            out.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def log_torch_model(model: nn.Module, example: torch.Tensor) -> str:
    """Log ``model`` to the active run under ``model/``; returns the model URI.

    The whole module is pickled (``serialization_format="pickle"``; MLflow's default ``pt2`` export
    cannot capture FX-quantized modules; :mod:`netzip_mlflow.model_pickle` handles quantized convs), so FX-quantized and pruned
    models, whose class is not importable by name, load back as they are. Only load models from
    tracking stores you trust.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = mlflow.pytorch.log_model(
            model.cpu().eval(),
            name=MODEL_NAME,
            serialization_format="pickle",
            pickle_module=model_pickle,
            pip_requirements=_requirements(),
        )
    return info.model_uri
