"""Conditions on logged metrics, parsed safely (a small tokenizer, never ``eval``).

Grammar::

    where      := condition ( "and" condition )*
    condition  := METRIC OP NUMBER | NUMBER OP METRIC
    OP         := ">=" | "<=" | ">" | "<" | "==" | "!="

``METRIC`` is a metric key of :data:`netzip_mlflow.tracking.keys.METRICS` (``accuracy/top1``,
``speed/chats``, ``ocs``...); ``NUMBER`` a decimal or scientific literal (``0.95``, ``2e9``).
Example: ``"accuracy/top1 >= 0.95 and speed/chats <= 2e9"``.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from netzip_mlflow.errors import ConfigError
from netzip_mlflow.tracking import keys

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq, "!=": operator.ne,
}
_FLIP = {">=": "<=", "<=": ">=", ">": "<", "<": ">", "==": "==", "!=": "!="}
_TOKEN = re.compile(
    r"\s*(?:(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![A-Za-z_/])"
    r"|(?P<op>>=|<=|==|!=|>|<)|(?P<word>[A-Za-z_][A-Za-z0-9_./]*))"
)


@dataclass(frozen=True)
class Condition:
    """``metric op value``; a run that did not log ``metric`` never meets it."""

    metric: str
    op: str
    value: float

    def holds(self, metrics: Mapping[str, float]) -> bool:
        measured = metrics.get(self.metric)
        if measured is None or not math.isfinite(float(measured)):
            return False
        return _OPS[self.op](float(measured), self.value)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


def _tokens(text: str, field: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise ConfigError(field, f"cannot read {text[pos:].strip()[:30]!r} in {text!r}",
                              "write conditions like 'accuracy/top1 >= 0.95 and speed/chats <= 2e9'")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def parse_where(text: str, field: str = "--where") -> list[Condition]:
    """The conditions of ``text`` (all must hold).

    Raises:
        ConfigError: naming ``field``: an unknown metric key, a missing operator or number, or
            anything that is not ``METRIC OP NUMBER`` joined by ``and``.
    """
    tokens = _tokens(text, field)
    if not tokens:
        raise ConfigError(field, "is empty", "e.g. 'accuracy/top1 >= 0.95'")
    conditions: list[Condition] = []
    i = 0
    while True:
        part = tokens[i:i + 3]
        kinds = [k for k, _ in part]
        if kinds == ["word", "op", "number"]:
            metric, op, value = part[0][1], part[1][1], part[2][1]
        elif kinds == ["number", "op", "word"]:
            metric, op, value = part[2][1], _FLIP[part[1][1]], part[0][1]
        else:
            shown = " ".join(v for _, v in part) or "the end"
            raise ConfigError(field, f"expected METRIC OP NUMBER at {shown!r} in {text!r}",
                              "operators: >=, <=, >, <, ==, !=; conditions joined by 'and'")
        if metric not in keys.METRICS:
            raise ConfigError(field, f"unknown metric key {metric!r}", f"use one of {', '.join(sorted(keys.METRICS))}")
        conditions.append(Condition(metric, op, float(value)))
        i += 3
        if i == len(tokens):
            return conditions
        if tokens[i] != ("word", "and"):
            raise ConfigError(field, f"expected 'and' after {conditions[-1]}, got {tokens[i][1]!r}",
                              "only 'and' joins conditions")
        i += 1
        if i == len(tokens):
            raise ConfigError(field, "ends with 'and'", "add a condition after it")


def matches(conditions: list[Condition], metrics: Mapping[str, float]) -> bool:
    """Whether every condition holds for ``metrics``."""
    return all(c.holds(metrics) for c in conditions)
