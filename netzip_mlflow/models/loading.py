"""Loading user models from files, safely by default.

A state_dict is loaded with ``torch.load(weights_only=True)``, which cannot run code. A whole pickled
``nn.Module`` needs ``trust=True`` (``--trust-model-file`` on the CLI): unpickling can execute arbitrary
code, so only do it for files you made yourself.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from netzip_mlflow.errors import ModelError


def load_model_file(path: str | Path, model: nn.Module | None = None, trust: bool = False) -> nn.Module:
    """Load ``path`` into ``model`` (a state_dict file) or as a whole module (``trust=True``).

    Args:
        path: a file written by ``torch.save``.
        model: the architecture to load a state_dict into; required unless ``trust`` is set.
        trust: allow unpickling a whole module (can run code from the file).
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise ModelError(f"model.path: {file} does not exist")
    try:
        obj = torch.load(file, map_location="cpu", weights_only=not trust)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile) as exc:
        hint = (
            "it holds more than tensors; if you made it yourself, pass --trust-model-file "
            "(unpickling can run code)"
            if not trust and "weights_only" in str(exc)
            else "the file is corrupt or truncated; save it again with torch.save"
        )
        raise ModelError(f"model.path: cannot load {file}: {hint}") from exc
    if isinstance(obj, nn.Module):
        return obj
    if not isinstance(obj, dict):
        raise ModelError(f"model.path: {file} holds a {type(obj).__name__}, expected a state_dict or nn.Module")
    if model is None:
        raise ModelError(f"model.path: {file} holds a state_dict; also name the architecture (model.arch)")
    try:
        model.load_state_dict(obj)
    except RuntimeError as exc:
        raise ModelError(f"model.path: {file} does not fit the architecture: {exc}") from exc
    return model
