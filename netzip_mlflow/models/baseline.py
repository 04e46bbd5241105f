"""The baseline a study starts from, with a description of what was really built or loaded.

Three ways to bring a model (README "Bring your own model"): by name (``model.arch``: a built-in or
any torchvision classification model, random weights), a state_dict file of such an architecture
(``model.path``; saved by us or by torchvision itself), or a whole pickled module
(``model.path`` with ``--trust-model-file``). :attr:`BaselineModel.params` says which, and is logged
as the baseline run's ``model.*`` params.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from netzip_mlflow.models.loading import open_model_file
from netzip_mlflow.models.zoo import build_model, standard_variant


@dataclass
class BaselineModel:
    """A baseline model and the MLflow params describing it.

    ``params`` holds ``model.arch`` (the architecture name, or the class of a whole module),
    ``model.class`` (the module's Python class), ``model.source`` (``built`` or the file),
    ``model.format`` (``random init``, ``state_dict`` or ``whole module``), ``model.layout``
    (``netzip`` or ``torchvision standard``, for state_dicts) and ``model.params`` (parameter count).
    """

    model: nn.Module
    params: dict[str, str] = field(default_factory=dict)

    @property
    def loaded(self) -> bool:
        """Whether the weights came from a file (then training is opt-in, see ``model.train``)."""
        return self.params.get("model.source", "built") != "built"


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _class_name(model: nn.Module) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


def make_baseline(
    arch: str,
    num_classes: int,
    input_shape: tuple[int, int, int],
    seed: int = 0,
    path: str | Path | None = None,
    trust: bool = False,
) -> BaselineModel:
    """Build ``arch`` for the data, then load ``path`` into it (or as a whole module) if given.

    A state_dict that does not fit our layout of ``arch`` is tried on torchvision's standard layout
    (e.g. ResNet18's ImageNet stem for small images, :func:`~netzip_mlflow.models.zoo.standard_variant`).
    """
    built = build_model(arch, num_classes, input_shape, seed=seed)
    if path is None:
        params = {"model.arch": arch, "model.source": "built", "model.format": "random init"}
        return BaselineModel(built, {**params, "model.class": _class_name(built), "model.params": str(_count(built))})
    loaded = open_model_file(
        path, built, trust=trust, alternatives=[lambda: standard_variant(arch, num_classes, input_shape)]
    )
    model = loaded.model
    if loaded.whole_module:
        params = {"model.arch": type(model).__name__, "model.format": "whole module"}
    else:
        layout = "netzip" if loaded.alternative is None else "torchvision standard"
        params = {"model.arch": arch, "model.format": "state_dict", "model.layout": layout}
    params.update({"model.source": str(path), "model.class": _class_name(model), "model.params": str(_count(model))})
    return BaselineModel(model, params)
