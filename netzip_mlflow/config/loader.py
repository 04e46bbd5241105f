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
from netzip_mlflow.errors import ConfigError, short_repr
from netzip_mlflow.validation import config_error, field_path


MAX_VALUES = 100_000
"""A study (after YAML aliases are expanded) may hold at most this many values."""


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One bounded line about a YAML error (a python/* tag is named as such)."""
    text = " ".join(str(exc).split())
    if "python/" in text or "could not determine a constructor" in text:
        tag = getattr(exc, "problem", "") or text
        return f"is not valid YAML for a study: a tag that is not allowed ({' '.join(str(tag).split())[:120]}); only plain YAML values are read"
    return f"is not valid YAML: {short_repr(text, 200)}"


def dotted_key(key: str) -> str:
    """The bracket form our errors print, ``recipes[1].params.amount``, as ``recipes.1.params.amount``."""
    return re.sub(r"\[(\d+)\]", r".\1", key.strip()).lstrip(".")


def parse_override(text: str) -> tuple[str, Any]:
    """``"data.path=/x"`` -> ``("data.path", "/x")``; the value is parsed as YAML (safely).

    List items can be named either way: ``recipes[1].params.amount=0.5`` (as errors print the
    field) or ``recipes.1.params.amount=0.5``.

    Raises:
        ConfigError: field ``--set KEY``: not KEY=VALUE, an empty key, or a value YAML cannot read.
    """
    if "=" not in text:
        raise ConfigError("--set", f"{short_repr(text)} is not KEY=VALUE", "e.g. --set data.path=/data/images")
    raw_key, value = text.split("=", 1)
    key = dotted_key(raw_key)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError("--set", f"{short_repr(text)} has an empty key part", "e.g. --set recipes.0.params.amount=0.5")
    try:
        return key, yaml.safe_load(value.strip())
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}", _yaml_problem(exc), "quote the value or write plain YAML") from None


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``raw`` with dotted keys (``evaluation.threads``, ``recipes.0.params.amount``) set.

    Raises:
        ConfigError: field ``--set KEY``: a list index that is not a number or out of range, or a
            key below a value that is not a mapping or list.
    """
    out = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        node: Any = out
        parts = dotted_key(dotted).split(".")
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = ".".join(parts[:depth]) or "the study"
            if isinstance(node, list):
                if not part.lstrip("-").isdigit():
                    raise ConfigError(f"--set {dotted}", f"{where} is a list; {short_repr(part)} is not an index", f"use a number from 0 to {len(node) - 1}")
                index = int(part)
                if not 0 <= index < len(node):
                    raise ConfigError(f"--set {dotted}", f"{where} has {len(node)} items; index {index} is out of range", f"use 0 to {len(node) - 1}" if node else "add the item to the study file")
                if last:
                    node[index] = value
                else:
                    node = node[index]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise ConfigError(
                    f"--set {dotted}",
                    f"{where} is a single value ({type(node).__name__}), it has no field {short_repr(part)}",
                    f"set {where} itself",
                )
    return out


def _check_size(raw: Any, source: str) -> None:
    """Refuse a study that expands (through YAML aliases) to more than :data:`MAX_VALUES` values."""
    seen, stack = 0, [raw]
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise ConfigError(
                source,
                f"expands to more than {MAX_VALUES:,} values (YAML aliases repeating a list or mapping?)",
                "write the study without '*alias' chains",
            )
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)


def validate_study(raw: Mapping[str, Any], source: str = "study") -> StudySpec:
    """Validate a study mapping; the error names the field, e.g. ``recipes[1].params.amount``."""
    if not isinstance(raw, Mapping):
        raise ConfigError(source, f"a study must be a mapping, got {type(raw).__name__}")
    _check_size(raw, source)
    try:
        spec = StudySpec.model_validate(dict(raw))
    except ValidationError as exc:
        raise config_error(exc, lambda loc: f"{source}: {field_path(loc) or 'study'}") from None
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
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            str(file), f"is not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})", "save the study as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(str(file), f"cannot be read ({exc.strerror or exc})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(file), _yaml_problem(exc)) from None
    except RecursionError:
        raise ConfigError(str(file), "nests too deeply to read") from None
    if raw is None:
        raise ConfigError(str(file), "is empty")
    if not isinstance(raw, dict):
        raise ConfigError(str(file), f"a study must be a mapping, got {type(raw).__name__}")
    return validate_study(apply_overrides(raw, overrides or {}), source=file.name)
