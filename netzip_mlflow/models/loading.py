"""Loading user models from files, safely by default.

A state_dict is loaded with ``torch.load(weights_only=True)``, which only rebuilds tensors and plain
containers and cannot run code. A whole pickled ``nn.Module`` needs ``trust=True``
(``--trust-model-file`` on the CLI, ``model.trust_model_file: true`` in a study YAML): a pickle can
run arbitrary code when it is loaded (any ``__reduce__`` it names is called), so only trust files
you made yourself or got from someone you would let run programs on your machine. Save models to
share as ``torch.save(model.state_dict(), path)`` and name the architecture in ``model.arch``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from netzip_mlflow.errors import ModelError


@dataclass(frozen=True)
class LoadedModel:
    """What :func:`open_model_file` loaded: the module, whether it was a whole pickled module, and
    which of the ``alternatives`` took the state_dict (``None``: the ``model`` given)."""

    model: nn.Module
    whole_module: bool
    alternative: int | None = None


def load_model_file(
    path: str | Path,
    model: nn.Module | None = None,
    trust: bool = False,
    alternatives: Sequence[Callable[[], nn.Module | None]] = (),
) -> nn.Module:
    """The module of :func:`open_model_file` (same arguments)."""
    return open_model_file(path, model, trust, alternatives).model


def open_model_file(
    path: str | Path,
    model: nn.Module | None = None,
    trust: bool = False,
    alternatives: Sequence[Callable[[], nn.Module | None]] = (),
) -> LoadedModel:
    """Load ``path`` into ``model`` (a state_dict file) or as a whole module (``trust=True``).

    Args:
        path: a file written by ``torch.save``.
        model: the architecture to load a state_dict into; required unless ``trust`` is set.
        trust: allow unpickling a whole module (can run code from the file).
        alternatives: builders of other layouts of the same architecture (torchvision's standard
            stem, say), tried in order when the state_dict does not fit ``model``; the first that
            fits is returned. A builder may return ``None`` (no such layout).
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise ModelError(f"model.path: {file} does not exist")
    try:
        obj = torch.load(file, map_location="cpu", weights_only=not trust)
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways: UnpicklingError,
        # RuntimeError, EOFError, BadZipFile, OSError (truncated zip), IndexError (text file), ...
        hint = (
            "it holds more than tensors; if you made it yourself, pass --trust-model-file "
            "(unpickling can run code)"
            if not trust and "weights_only" in str(exc)
            else "the file is corrupt or truncated; save it again with torch.save"
        )
        raise ModelError(f"model.path: cannot load {file}: {hint}") from exc
    if isinstance(obj, nn.Module):
        return LoadedModel(obj, whole_module=True)
    if not isinstance(obj, dict):
        raise ModelError(f"model.path: {file} holds a {type(obj).__name__}, expected a state_dict or nn.Module")
    if model is None:
        raise ModelError(f"model.path: {file} holds a state_dict; also name the architecture (model.arch)")
    try:
        model.load_state_dict(obj)
    except RuntimeError as exc:
        for index, build in enumerate(alternatives):
            other = build()
            if other is None:
                continue
            try:
                other.load_state_dict(obj)
            except RuntimeError:
                continue
            return LoadedModel(other, whole_module=False, alternative=index)
        details = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
        first = details[0][:300] if details else str(exc).splitlines()[0]
        raise ModelError(
            f"model.path: {file} does not fit the architecture {type(model).__name__} built for this data "
            f"({first}); save the state_dict of model.arch built with the dataset's number of classes "
            "and input channels (model.arch names any torchvision classification model, e.g. mobilenet_v3_small), "
            "or load a whole module you saved with torch.save(model) and --trust-model-file"
        ) from exc
    return LoadedModel(model, whole_module=False)
