"""Technique and parameter specifications: how a technique describes and validates its params.

A :class:`TechniqueSpec` is what the registry stores, what ``netzip techniques`` prints and what the
YAML loader validates recipe parameters against. Each parameter is a :class:`ParamSpec` with a type,
a default and an allowed range or set of choices; :meth:`TechniqueSpec.validate` turns a user's
``params`` mapping into a complete, checked dict or raises
:class:`~netzip_mlflow.errors.ConfigError` naming ``params.<name>`` and the allowed values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from netzip_mlflow.compression.result import CompressionResult
from netzip_mlflow.errors import ConfigError, short_repr

ParamValue = bool | int | float | str

#: ``apply(model, params, data, example_inputs, hooks)`` compresses ``model`` in place or returns a
#: new model; the registry always hands it a private deep copy of the caller's model.
TechniqueFn = Callable[
    [nn.Module, dict[str, ParamValue], Iterable | None, torch.Tensor | None, "TrainingHooks"],
    CompressionResult,
]

_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


@dataclass(frozen=True)
class TrainingHooks:
    """How a technique that trains (QAT, fine-tuning) reports progress.

    Attributes:
        on_epoch_end: called as ``on_epoch_end(epoch, {"loss": ..., "accuracy": ...})`` after each
            training epoch (epoch counts from 0).
        progress: show a tqdm progress bar per epoch.
    """

    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None
    progress: bool = True


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a technique.

    Attributes:
        name: the key in ``params``.
        type: ``bool``, ``int``, ``float`` or ``str``. A ``float`` parameter also accepts integers.
        default: the value used when the parameter is not given.
        help: one line saying what the parameter does (with its unit).
        choices: the allowed values of a ``str`` parameter.
        low, high: bounds of a numeric parameter (``None``: unbounded).
        low_inclusive, high_inclusive: whether the bounds themselves are allowed.
    """

    name: str
    type: type
    default: ParamValue
    help: str
    choices: tuple[str, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True

    def allowed(self) -> str:
        """The allowed values, e.g. ``"a number in (0, 1)"`` or ``"one of: random, l1"``."""
        if self.choices is not None:
            return "one of: " + ", ".join(self.choices)
        if self.low is None and self.high is None:
            return _TYPE_NAMES[self.type]
        return f"{_TYPE_NAMES[self.type]} in {self.interval()}"

    def describe(self) -> str:
        """One line for ``netzip techniques``: name, allowed values, default and help.

        Example: ``"amount: a number in (0, 1), default 0.75 - fraction of the weights to remove"``.
        """
        default = _fmt(self.default) if isinstance(self.default, float) else repr(self.default)
        if isinstance(self.default, bool):
            default = str(self.default).lower()
        return f"{self.name}: {self.allowed()}, default {default} - {self.help}"

    def interval(self) -> str:
        """The allowed numeric range in interval notation, e.g. ``"(0, 1)"`` or ``"[0, inf)"``."""
        left = "[" if self.low_inclusive and self.low is not None else "("
        right = "]" if self.high_inclusive and self.high is not None else ")"
        low = "-inf" if self.low is None else _fmt(self.low)
        high = "inf" if self.high is None else _fmt(self.high)
        return f"{left}{low}, {high}{right}"

    def validate(self, value: Any) -> ParamValue:
        """Return ``value`` checked (and an int widened to float for float parameters).

        Raises:
            ConfigError: field ``params.<name>``; the message states the allowed values.
        """
        field_name = f"params.{self.name}"
        checked = self._check_type(value, field_name)
        if self.choices is not None and checked not in self.choices:
            raise ConfigError(field_name, f"must be {self.allowed()}, got {short_repr(value)}")
        if isinstance(checked, float | int) and not isinstance(checked, bool):
            self._check_range(checked, field_name)
        return checked

    def _check_type(self, value: Any, field_name: str) -> ParamValue:
        wrong = ConfigError(
            field_name, f"must be {self.allowed()}, got {short_repr(value)} ({type(value).__name__})"
        )
        if self.type is bool:
            if not isinstance(value, bool):
                raise wrong
            return value
        if self.type is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise wrong
            return value
        if self.type is float:
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
                raise wrong
            return float(value)
        if not isinstance(value, str):
            raise wrong
        return value

    def _check_range(self, value: float, field_name: str) -> None:
        below = self.low is not None and (
            value < self.low or (value == self.low and not self.low_inclusive)
        )
        above = self.high is not None and (
            value > self.high or (value == self.high and not self.high_inclusive)
        )
        if below or above:
            raise ConfigError(field_name, f"must be in {self.interval()}, got {short_repr(value)}")


@dataclass(frozen=True)
class TechniqueSpec:
    """A registered compression technique.

    Attributes:
        name: the technique's name in recipes and in ``compress`` (e.g. ``"ptq"``).
        description: one line for ``netzip techniques``.
        params: the parameters it accepts.
        needs_data: whether ``data`` is always required (calibration or training). Techniques that
            need data only for some settings (fine-tuning, Taylor importance) say so in
            ``data_usage`` and check it themselves.
        needs_example_inputs: whether an input batch is needed (tracing, dependency graphs); it is
            taken from the first batch of ``data`` when not given.
        data_usage: one line saying what ``data`` is used for.
        apply: the implementation.
        final: the result is no longer a float model (int8, float16) that other techniques can
            take, so in a pipeline this technique must be the last step.
    """

    name: str
    description: str
    params: tuple[ParamSpec, ...]
    needs_data: bool
    needs_example_inputs: bool
    data_usage: str
    apply: TechniqueFn = field(repr=False, compare=False)
    final: bool = False

    def defaults(self) -> dict[str, ParamValue]:
        """Every parameter with its default value."""
        return {p.name: p.default for p in self.params}

    def validate(self, params: Mapping[str, Any] | None) -> dict[str, ParamValue]:
        """Check ``params`` and return them with defaults filled in.

        Raises:
            ConfigError: ``params`` is not a mapping, names an unknown parameter, or has a value of
                the wrong type or out of range; the field is ``params.<name>``.
        """
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise ConfigError(
                "params",
                f"must be a mapping of parameter names to values, got {type(params).__name__}",
            )
        by_name = {p.name: p for p in self.params}
        for key in params:
            if key not in by_name:
                known = ", ".join(by_name) or "none"
                raise ConfigError(
                    f"params.{key}",
                    f"unknown parameter for technique {self.name!r}",
                    f"known parameters: {known}",
                )
        checked = self.defaults()
        checked.update({key: by_name[key].validate(value) for key, value in params.items()})
        return checked


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


# Parameters shared by several techniques (one definition, no drift between techniques).
BACKEND = ParamSpec(
    "backend", str, "x86", "quantized kernel backend (sets torch.backends.quantized.engine)",
    choices=("x86", "fbgemm", "qnnpack"),
)
LR = ParamSpec(
    "lr", float, 1e-3, "learning rate of the training loop", low=0.0, low_inclusive=False
)
OPTIMIZER = ParamSpec(
    "optimizer", str, "sgd", "optimizer of the training loop", choices=("sgd", "adam")
)
SEED = ParamSpec("seed", int, 0, "random seed (makes random importance reproducible)", low=0)
AMOUNT = ParamSpec(
    "amount", float, 0.75, "fraction of the weights to remove (0-1)",
    low=0.0, high=1.0, low_inclusive=False, high_inclusive=False,
)


def epochs_param(name: str, default: int, help_text: str, low: int = 0) -> ParamSpec:
    """An epoch-count parameter of at least ``low``."""
    return ParamSpec(name, int, default, help_text, low=low)
