"""Logging a (compressed) model as an MLflow model that loads back.

* torch modules: ``mlflow.pytorch`` (:func:`log_torch_model`).
* ONNX Runtime models: MLflow's own ``mlflow.onnx`` flavor (``mlflow.onnx.load_model`` gives the
  ``ModelProto``, ``mlflow.pyfunc.load_model`` an ONNX Runtime session).
* OpenVINO models: the IR files (``model.xml`` + ``model.bin``) as artifacts of a ``pyfunc`` model
  whose loader (:class:`OpenVinoPyfunc`) compiles them for the CPU, so
  ``mlflow.pyfunc.load_model(uri).predict(batch)`` runs them.

:func:`load_runtime_model` loads either runtime model back as a
:class:`~netzip_mlflow.runtimes.base.RuntimeModel` (a callable ``nn.Module``).
"""

from __future__ import annotations

import importlib.metadata
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from torch import nn

from netzip_mlflow import model_pickle
from netzip_mlflow.errors import TrackingError
from netzip_mlflow.runtimes.base import RuntimeModel
from netzip_mlflow.tracking import keys

MODEL_NAME = "model"
IR_ARTIFACT = keys.OPENVINO_IR_ARTIFACT


def _requirements(*distributions: str) -> list[str]:
    # Named explicitly: MLflow's requirement inference re-imports the model in a subprocess (slow).
    out = []
    for dist in (*distributions, "netzip-mlflow"):
        try:
            out.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def log_model(model: nn.Module, example: torch.Tensor) -> str:
    """Log ``model`` to the active run under ``model/`` with the flavor of its runtime; returns
    the model URI."""
    if isinstance(model, RuntimeModel):
        if model.runtime.name == "onnxruntime":
            return log_onnx_model(model)
        return log_openvino_model(model)
    return log_torch_model(model, example)


@contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """Silence logger ``name`` below ERROR for the body, then put its level back. MLflow warns on
    every pickle-format save; this docstring and the README's trust section say it once instead."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def log_torch_model(model: nn.Module, example: torch.Tensor) -> str:
    """Log ``model`` to the active run under ``model/``; returns the model URI.

    The whole module is pickled (``serialization_format="pickle"``; MLflow's default ``pt2`` export
    cannot capture FX-quantized modules; :mod:`netzip_mlflow.model_pickle` handles quantized convs), so FX-quantized and pruned
    models, whose class is not importable by name, load back as they are. Only load models from
    tracking stores you trust.
    """
    with warnings.catch_warnings(), _quiet_logger("mlflow.pytorch"):
        warnings.simplefilter("ignore")
        info = mlflow.pytorch.log_model(
            model.cpu().eval(),
            name=MODEL_NAME,
            serialization_format="pickle",
            pickle_module=model_pickle,
            pip_requirements=_requirements("torch", "torchvision"),
        )
    return info.model_uri


def log_onnx_model(model: RuntimeModel) -> str:
    """Log an ONNX Runtime model with ``mlflow.onnx`` (CPU provider); returns the model URI."""
    import onnx

    proto = onnx.load(str(model.files()[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = mlflow.onnx.log_model(
            proto, name=MODEL_NAME, onnx_execution_providers=["CPUExecutionProvider"],
            pip_requirements=_requirements("onnx", "onnxruntime"),
        )
    return info.model_uri


class OpenVinoPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow ``pyfunc`` loader of an OpenVINO IR logged as the artifact :data:`IR_ARTIFACT`."""

    def load_context(self, context: Any) -> None:
        from netzip_mlflow.runtimes.openvino_rt import OpenVinoRuntime

        self._model = RuntimeModel(OpenVinoRuntime(), Path(context.artifacts[IR_ARTIFACT]), None)

    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        """Float32 outputs of a float32 batch (N, C, H, W). (``np.ndarray`` is a hint MLflow infers
        no schema from: the input passes through as given.)"""
        return self._model.session().run(np.ascontiguousarray(np.asarray(model_input, dtype=np.float32)))


def log_openvino_model(model: RuntimeModel) -> str:
    """Log an OpenVINO model: its IR files as artifacts of an :class:`OpenVinoPyfunc` model."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME, python_model=OpenVinoPyfunc(), artifacts={IR_ARTIFACT: str(model.folder)},
            pip_requirements=_requirements("openvino"),
        )
    return info.model_uri


def load_runtime_model(model_uri: str) -> RuntimeModel:
    """An ONNX Runtime or OpenVINO model logged by :func:`log_model`, as a runnable
    :class:`RuntimeModel` (without the source model's facts: it runs, it is not re-measured).

    Raises:
        TrackingError: the URI holds neither an ONNX model nor an OpenVINO IR.
    """
    from netzip_mlflow.runtimes.onnx_export import ONNX_FILE
    from netzip_mlflow.runtimes.onnxruntime_rt import OnnxRuntime
    from netzip_mlflow.runtimes.openvino_rt import XML_FILE, OpenVinoRuntime

    root = Path(mlflow.artifacts.download_artifacts(model_uri))
    if (root / ONNX_FILE).is_file():
        return RuntimeModel(OnnxRuntime(), root, None).eval()
    found = sorted(root.rglob(XML_FILE))
    if found:
        return RuntimeModel(OpenVinoRuntime(), found[0].parent, None).eval()
    raise TrackingError(
        f"{model_uri} holds neither {ONNX_FILE} nor an OpenVINO {XML_FILE}; pass the URI of a model "
        "logged by an onnx or openvino recipe (runs:/<run id>/model)"
    )
