"""The parameter space of a search: checking the templates, and sampling one recipe per trial.

A template is a recipe (one technique, or ``steps``) whose parameter values may be:

* a fixed value (as in any recipe);
* a range ``{low, high}`` (optional ``log: true``, ``step``): a float or an integer, following the
  parameter's own type;
* a choice ``{choices: [...]}``;
* for ``prune_structured``'s ``layer_policy``: ``{groups: auto | [module, ...], low, high}``, one
  weight in ``[low, high]`` per layer group (AMC-style per-layer sparsity policy; the groups of
  ``auto`` come from :func:`netzip_mlflow.compression.structured.policy_groups`).

Optuna parameter names: ``<param>`` for a one-technique template, ``step<k>.<param>`` for step ``k``
(from 1) of a pipeline, ``step<k>.policy.<group>`` for a policy weight; prefixed by ``<template>.``
and joined by a categorical ``recipe`` parameter when there are several templates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from netzip_mlflow.compression.pipeline import PIPELINE
from netzip_mlflow.compression.registry import get_technique, validate_params
from netzip_mlflow.compression.spec import ParamSpec
from netzip_mlflow.config.schema import RecipeSpec, SearchSpec
from netzip_mlflow.errors import ConfigError

POLICY_PARAM = "layer_policy"
POLICY_TECHNIQUE = "prune_structured"
_RANGE_KEYS = {"low", "high", "log", "step"}
_POLICY_KEYS = {"groups", "low", "high"}


@dataclass(frozen=True)
class Step:
    """One step of a template: technique, params (fixed values and distributions) and its field."""

    technique: str
    params: Mapping[str, Any]
    field: str  # e.g. "steps[1].params" or "params"
    prefix: str  # Optuna name prefix, e.g. "step2." or ""


def template_steps(template: RecipeSpec) -> list[Step]:
    """The template as a list of steps (a one-technique template is one step)."""
    if template.technique != PIPELINE:
        return [Step(template.technique, template.params, "params", "")]
    steps = template.params.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ConfigError("steps", "must be a non-empty list of {technique, params}")
    out = []
    for i, step in enumerate(steps):
        if not isinstance(step, Mapping) or not isinstance(step.get("technique"), str):
            raise ConfigError(f"steps[{i}]", "must be a mapping with 'technique' (a name) and 'params'")
        params = step.get("params") or {}
        if not isinstance(params, Mapping):
            raise ConfigError(f"steps[{i}].params", "must be a mapping of parameter names to values")
        out.append(Step(step["technique"], params, f"steps[{i}].params", f"step{i + 1}."))
    return out


def _check_range(spec: ParamSpec, value: Mapping[str, Any], field: str) -> None:
    unknown = set(value) - _RANGE_KEYS
    if unknown:
        raise ConfigError(f"{field}.{sorted(unknown)[0]}", "unknown key of a range",
                          "a range has low, high and optionally log, step; a choice has choices")
    if spec.type not in (int, float):
        raise ConfigError(field, f"a range needs a numeric parameter; {spec.name!r} is {spec.allowed()}",
                          "use {choices: [...]} instead")
    for end in ("low", "high"):
        if end not in value:
            raise ConfigError(f"{field}.{end}", "is missing", "a range is {low: ..., high: ...}")
        try:
            spec.validate(value[end])
        except ConfigError as exc:
            raise ConfigError(f"{field}.{end}", exc.problem) from None
    if not value["low"] < value["high"]:
        raise ConfigError(field, f"low ({value['low']}) must be below high ({value['high']})")
    if value.get("log") and value["low"] <= 0:
        raise ConfigError(f"{field}.log", "a log range needs low > 0")
    step = value.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int | float) or step <= 0):
        raise ConfigError(f"{field}.step", f"must be a number > 0, got {step!r}")
    if step is not None and value.get("log"):
        raise ConfigError(f"{field}.step", "cannot be combined with log: true")


def _check_choices(spec: ParamSpec, value: Mapping[str, Any], field: str) -> None:
    if set(value) != {"choices"}:
        raise ConfigError(field, "a choice has only the key 'choices'", "e.g. {choices: [l1, l2]}")
    choices = value["choices"]
    if not isinstance(choices, list) or not choices:
        raise ConfigError(f"{field}.choices", f"must be a non-empty list, got {choices!r}")
    for i, choice in enumerate(choices):
        try:
            spec.validate(choice)
        except ConfigError as exc:
            raise ConfigError(f"{field}.choices[{i}]", exc.problem) from None


def _check_policy(value: Mapping[str, Any], field: str) -> None:
    unknown = set(value) - _POLICY_KEYS
    if unknown:
        raise ConfigError(f"{field}.{sorted(unknown)[0]}", "unknown key of a layer policy",
                          "a policy is {groups: auto | [module, ...], low: 0-1, high: 0-1}")
    groups = value.get("groups", "auto")
    if groups != "auto" and (
        not isinstance(groups, list) or not groups or not all(isinstance(g, str) and g for g in groups)
    ):
        raise ConfigError(f"{field}.groups", f"must be 'auto' or a list of module names, got {groups!r}")
    if isinstance(groups, list) and len(set(groups)) != len(groups):
        raise ConfigError(f"{field}.groups", "names a module twice")
    low, high = value.get("low", 0.0), value.get("high", 1.0)
    for end, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
            raise ConfigError(f"{field}.{end}", f"must be a number in [0, 1], got {v!r}")
    if not low < high:
        raise ConfigError(field, f"low ({low}) must be below high ({high})")


def _representative(technique: str, name: str, value: Any) -> Any:
    """A fixed value standing in for a distribution when the template is validated."""
    if not isinstance(value, Mapping):
        return value
    if technique == POLICY_TECHNIQUE and name == POLICY_PARAM:
        return ""
    if "choices" in value:
        return value["choices"][0]
    return value["low"]


def check_template(template: RecipeSpec) -> None:
    """Check every distribution against its parameter, then the template with stand-in values.

    Raises:
        ConfigError: the field is relative to the template (``steps[0].params.amount.low``).
    """
    steps = template_steps(template)
    for step in steps:
        technique = get_technique(step.technique) if step.technique != PIPELINE else None
        by_name = {p.name: p for p in technique.params} if technique else {}
        for name, value in step.params.items():
            if not isinstance(value, Mapping):
                continue
            field = f"{step.field}.{name}"
            if name not in by_name:
                raise ConfigError(field, f"unknown parameter for technique {step.technique!r}",
                                  f"known parameters: {', '.join(by_name) or 'none'}")
            if step.technique == POLICY_TECHNIQUE and name == POLICY_PARAM:
                _check_policy(value, field)
            elif "choices" in value:
                _check_choices(by_name[name], value, field)
            else:
                _check_range(by_name[name], value, field)
    fixed = [
        {"technique": s.technique, "params": {k: _representative(s.technique, k, v) for k, v in s.params.items()}}
        for s in steps
    ]
    if template.technique == PIPELINE:
        validate_params(PIPELINE, {"steps": fixed})
    else:
        validate_params(template.technique, fixed[0]["params"])


def check_space(search: SearchSpec, source: str) -> None:
    """Check every template of ``search``; the error names ``search.recipes[i]....``."""
    for i, template in enumerate(search.recipes):
        try:
            check_template(template)
        except ConfigError as exc:
            raise ConfigError(f"{source}: search.recipes[{i}].{exc.field}", exc.problem, exc.fix) from None


def policy_group_names(search: SearchSpec) -> dict[tuple[int, int], list[str] | None]:
    """``{(template index, step index): explicit groups or None for auto}`` of every searched policy."""
    out: dict[tuple[int, int], list[str] | None] = {}
    for i, template in enumerate(search.recipes):
        for k, step in enumerate(template_steps(template)):
            value = step.params.get(POLICY_PARAM)
            if step.technique == POLICY_TECHNIQUE and isinstance(value, Mapping):
                groups = value.get("groups", "auto")
                out[(i, k)] = None if groups == "auto" else list(groups)
    return out


def _suggest(trial: Any, name: str, spec: ParamSpec, value: Mapping[str, Any]) -> Any:
    if "choices" in value:
        return trial.suggest_categorical(name, list(value["choices"]))
    log = bool(value.get("log", False))
    if spec.type is int:
        return trial.suggest_int(name, int(value["low"]), int(value["high"]), step=int(value.get("step") or 1), log=log)
    return trial.suggest_float(name, float(value["low"]), float(value["high"]), step=value.get("step"), log=log)


def sample_recipe(
    trial: Any, search: SearchSpec, name: str, groups: Mapping[tuple[int, int], Sequence[str]]
) -> RecipeSpec:
    """Sample one concrete, validated recipe named ``name`` from the templates (Optuna define-by-run).

    Args:
        trial: an ``optuna.Trial``.
        groups: the layer groups of each searched policy, ``(template, step) -> names``.
    """
    index = 0
    if len(search.recipes) > 1:
        names = [t.name for t in search.recipes]
        index = names.index(trial.suggest_categorical("recipe", names))
    template = search.recipes[index]
    outer = f"{template.name}." if len(search.recipes) > 1 else ""
    concrete = []
    for k, step in enumerate(template_steps(template)):
        by_name = {p.name: p for p in get_technique(step.technique).params}
        params: dict[str, Any] = {}
        for pname, value in step.params.items():
            label = f"{outer}{step.prefix}{pname}"
            if not isinstance(value, Mapping):
                params[pname] = value
            elif step.technique == POLICY_TECHNIQUE and pname == POLICY_PARAM:
                low, high = float(value.get("low", 0.0)), float(value.get("high", 1.0))
                weights = {
                    g: trial.suggest_float(f"{outer}{step.prefix}policy.{g}", low, high) for g in groups[(index, k)]
                }
                params[pname] = ",".join(f"{g}={w:.4f}" for g, w in weights.items())
            else:
                params[pname] = _suggest(trial, label, by_name[pname], value)
        concrete.append({"technique": step.technique, "params": params})
    if template.technique == PIPELINE:
        checked = validate_params(PIPELINE, {"steps": concrete})
    else:
        checked = validate_params(template.technique, concrete[0]["params"])
    return RecipeSpec(name=name, technique=template.technique, params=checked, resources=template.resources)
