"""Validation shared by every settings model: pydantic errors as one :class:`ConfigError` naming the field.

The study YAML, ``nz.EvaluationConfig(...)``, the MLflow plugin's ``evaluator_config`` and the CLI
flags validate through the same pydantic models (docs/architecture.md, "Settings"); this module turns
the first problem pydantic found into one error line naming the field in the caller's vocabulary
(``evaluation.latency.budget_s``, ``evaluator_config.latency_budget_s``, ``--threads``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from netzip_mlflow.errors import ConfigError

VALUE_ERROR_PREFIX = "Value error, "
"""pydantic's prefix for a ``ValueError`` raised by a validator; the message alone is clearer."""


def field_path(loc: tuple[Any, ...] | list[Any], prefix: str = "") -> str:
    """``("recipes", 1, "params", "amount")`` -> ``recipes[1].params.amount`` (after ``prefix``)."""
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def first_problem(exc: ValidationError) -> tuple[tuple[Any, ...], str]:
    """The location of pydantic's first error and its message (with how many more there are)."""
    errors = exc.errors()
    first = errors[0]
    message = str(first["msg"]).removeprefix(VALUE_ERROR_PREFIX)
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problems)"
    return tuple(first["loc"]), message


def config_error(exc: ValidationError, name: Callable[[tuple[Any, ...]], str]) -> ConfigError:
    """One :class:`ConfigError` for ``exc``; ``name`` turns the error's location into the field."""
    loc, message = first_problem(exc)
    return ConfigError(name(loc), message)


class _ConfigErrorOnCall(type(BaseModel)):  # type: ignore[misc]
    """Direct construction (``LatencySettings(budget_s=-1)``) raises :class:`ConfigError`.

    Only a call of the class goes through here: when pydantic validates the model as a field of a
    parent (``StudySpec``), the parent's ``ValidationError`` keeps the full location instead.
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except ValidationError as exc:
            section = getattr(cls, "section", "")
            raise config_error(exc, lambda loc: field_path(loc, section) or section) from None


class SettingsModel(BaseModel, metaclass=_ConfigErrorOnCall):
    """A frozen pydantic settings model (unknown fields refused) whose construction raises
    :class:`ConfigError`.

    ``section`` is the model's path in a study YAML (``evaluation.latency``): ``LatencySettings(
    budget_s=-1)`` fails with ``evaluation.latency.budget_s: ...`` as the YAML does.
    ``model_validate`` raises pydantic's ``ValidationError`` (as does a parent model validating it);
    :func:`config_error` turns that into the caller's field names.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    section: ClassVar[str] = ""

    @classmethod
    def field_info(cls, path: str) -> Any:
        """The pydantic ``FieldInfo`` of a dotted field path (``latency.budget_s``)."""
        head, _, rest = path.partition(".")
        info = cls.model_fields[head]
        if rest:
            nested = info.annotation
            if not (isinstance(nested, type) and issubclass(nested, SettingsModel)):
                raise KeyError(path)
            return nested.field_info(rest)
        return info

    @classmethod
    def field_default(cls, path: str) -> Any:
        """The default value of a dotted field path."""
        return cls.field_info(path).get_default(call_default_factory=True)


def nested(dotted: Mapping[str, Any], into: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A copy of ``into`` with dotted keys set as nested mappings: ``{"latency.budget_s": 2}`` ->
    ``{"latency": {"budget_s": 2}}``.

    Raises:
        KeyError: the dotted key that is set already, or whose parent is given as something else than
            a mapping.
    """
    out = {key: dict(value) if isinstance(value, Mapping) else value for key, value in (into or {}).items()}
    for path, value in dotted.items():
        node = out
        *parents, last = path.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise KeyError(path)
            node[part] = child = dict(child)
            node = child
        if last in node:
            raise KeyError(path)
        node[last] = value
    return out
