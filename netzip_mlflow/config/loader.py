"""Loading a study from YAML (safe loader only) with overrides, validated into a :class:`StudySpec`."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from netzip_mlflow.compression.registry import validate_params
from netzip_mlflow.config.schema import StudySpec, task_recipe_problem
from netzip_mlflow.errors import ConfigError


def _field(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "study"


def dotted_key(key: str) -> str:
    """The bracket form our errors print, ``recipes[1].params.amount``, as ``recipes.1.params.amount``."""
    return re.sub(r"\[(\d+)\]", r".\1", key.strip()).lstrip(".")


def parse_override(text: str) -> tuple[str, Any]:
    """``"data.path=/x"`` -> ``("data.path", "/x")``; the value is parsed as YAML (safely).

    List items can be named either way: ``recipes[1].params.amount=0.5`` (as errors print the
    field) or ``recipes.1.params.amount=0.5``.
    """
    if "=" not in text:
        raise ConfigError("override", f"{text!r} is not KEY=VALUE", "e.g. data.path=/data/images")
    key, value = text.split("=", 1)
    return dotted_key(key), yaml.safe_load(value)


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``raw`` with dotted keys (``evaluation.threads``, ``recipes.0.params.amount``) set."""
    out = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        node: Any = out
        parts = dotted_key(dotted).split(".")
        for part in parts[:-1]:
            if isinstance(node, list):
                node = node[int(part)]
            else:
                node = node.setdefault(part, {})
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return out


def validate_study(raw: Mapping[str, Any], source: str = "study") -> StudySpec:
    """Validate a study mapping; the error names the field, e.g. ``recipes[1].params.amount``."""
    if not isinstance(raw, Mapping):
        raise ConfigError(source, f"a study must be a mapping, got {type(raw).__name__}")
    try:
        spec = StudySpec.model_validate(dict(raw))
    except ValidationError as exc:
        err = exc.errors()[0]
        more = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
        raise ConfigError(f"{source}: {_field(err['loc'])}", err["msg"] + more) from None
    recipes = []
    for i, recipe in enumerate(spec.recipes):
        try:
            params = validate_params(recipe.technique, recipe.params)
        except ConfigError as exc:
            raise ConfigError(f"{source}: recipes[{i}].{exc.field}", exc.problem, exc.fix) from None
        problem = task_recipe_problem(spec.task, recipe.technique, params, spec.evaluation.device)
        if problem is not None:
            raise ConfigError(f"{source}: recipes[{i}].{problem[0]}", problem[1], problem[2])
        recipes.append(recipe.model_copy(update={"params": params}))
    if spec.search is not None:
        from netzip_mlflow.search.space import check_space

        check_space(spec.search, source)
    return spec.model_copy(update={"recipes": recipes})


def load_study(path: str | Path, overrides: Mapping[str, Any] | None = None) -> StudySpec:
    """Read a study YAML file (``yaml.safe_load``), apply overrides and validate it."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError("study", f"{file} does not exist", "pass the path of a study YAML, e.g. recipes/quickstart.yaml")
    try:
        raw = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(str(file), f"is not valid YAML: {exc}") from None
    if raw is None:
        raise ConfigError(str(file), "is empty")
    return validate_study(apply_overrides(raw, overrides or {}), source=file.name)
