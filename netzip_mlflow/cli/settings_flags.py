"""Command-line flags that fill a settings model (docs/architecture.md, "Settings").

A flag names a field path of the model (``--latency-budget-s`` -> ``latency.budget_s``); its type,
help text and the default it shows come from the model's field, so every default lives in the model
alone. A flag the user does not give leaves the field at the model's default, and a bad value fails
with the model's own message, naming the flag: ``--threads: Input should be greater than or equal to 1``.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from netzip_mlflow.errors import ConfigError
from netzip_mlflow.validation import SettingsModel, config_error, field_path, nested

Model = TypeVar("Model", bound=SettingsModel)


@dataclass(frozen=True)
class SettingFlag:
    """One flag: ``flag`` sets the field at ``path``; a boolean flag sets it True, or False when
    ``negate`` (``--no-isolate``)."""

    flag: str
    path: str
    negate: bool = False

    @property
    def dest(self) -> str:
        """The argparse attribute (``--no-isolate`` -> ``no_isolate``)."""
        return self.flag.lstrip("-").replace("-", "_")


def _value_type(annotation: Any) -> type:
    """``int``, ``float``, ``str`` or ``bool`` of a field annotation (``float | None`` -> ``float``)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(options) == 1:
            return _value_type(options[0])
    if annotation in (int, float, str, bool):
        return annotation
    raise TypeError(f"no command-line type for a field of type {annotation!r}")


def _shown(value: Any) -> str:
    """`` (default X)`` for a help text; nothing for ``None`` (the description says what happens)."""
    if value is None:
        return ""
    return f" (default {'on' if value else 'off'})" if isinstance(value, bool) else f" (default {value})"


def add_setting_flags(
    parser: argparse._ActionsContainer, model: type[SettingsModel], flags: Sequence[SettingFlag]
) -> None:
    """Add ``flags`` to ``parser`` (or an argument group) with the type, help and default of ``model``'s fields."""
    for spec in flags:
        info = model.field_info(spec.path)
        kind = _value_type(info.annotation)
        default = model.field_default(spec.path)
        text = (info.description or spec.path).replace("%", "%%")  # argparse %-formats help texts
        if kind is bool:
            if spec.negate:
                help_text = f"{spec.path} off (default on): {text}"
            else:
                help_text = f"{text}{_shown(default)}"
            parser.add_argument(spec.flag, dest=spec.dest, action="store_true", help=help_text)
        else:
            parser.add_argument(
                spec.flag, dest=spec.dest, type=kind, default=None, metavar=spec.path.rpartition(".")[2].upper(),
                help=f"{text}{_shown(default)}",
            )


def given_values(args: argparse.Namespace, flags: Sequence[SettingFlag]) -> dict[str, Any]:
    """Field path -> value for each flag the user gave (an absent flag is left to the model's default)."""
    values: dict[str, Any] = {}
    for spec in flags:
        value = getattr(args, spec.dest, None)
        if value is None or value is False:
            continue
        values[spec.path] = (not spec.negate) if value is True else value
    return values


def build_settings(
    model: type[Model],
    values: Mapping[str, Any],
    flags: Sequence[SettingFlag] | Mapping[str, str],
    **fixed: Any,
) -> Model:
    """Validate ``values`` (field path -> value) and ``fixed`` fields into ``model``.

    ``flags`` (or a mapping field path -> flag) names the flag in an error about its field; an
    error elsewhere names the model's field path.
    """
    flag_of = dict(flags) if isinstance(flags, Mapping) else {spec.path: spec.flag for spec in flags}
    try:
        raw = nested(values, fixed)
    except KeyError as exc:
        raise ConfigError(flag_of.get(exc.args[0], exc.args[0]), "is given twice", "give it once") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, lambda loc: _flag(loc, flag_of) or field_path(loc, model.section)) from None


def _flag(loc: tuple[Any, ...], flag_of: Mapping[str, str]) -> str | None:
    """The flag of the field at ``loc`` or of the nearest field above it (``weights[3]`` -> ``--weights``)."""
    for end in range(len(loc), 0, -1):
        flag = flag_of.get(field_path(loc[:end]))
        if flag:
            return flag
    return None
