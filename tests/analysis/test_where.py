"""--where conditions: parsed by a tokenizer (never eval), unknown keys and bad syntax named."""

from __future__ import annotations

import pytest

from netzip_mlflow.analysis.where import Condition, matches, parse_where
from netzip_mlflow.errors import ConfigError


def test_conditions_and_scientific_numbers() -> None:
    got = parse_where("accuracy/top1 >= 0.95 and speed/chats <= 2e9 and ocs>1")
    assert got == [Condition("accuracy/top1", ">=", 0.95), Condition("speed/chats", "<=", 2e9), Condition("ocs", ">", 1.0)]


def test_number_first_is_flipped() -> None:
    assert parse_where("0.9 < accuracy/top1") == [Condition("accuracy/top1", ">", 0.9)]


@pytest.mark.parametrize(("metrics", "expected"), [
    ({"accuracy/top1": 0.96, "speed/chats": 1e9}, True),
    ({"accuracy/top1": 0.95, "speed/chats": 2e9}, True),  # bounds inclusive
    ({"accuracy/top1": 0.94, "speed/chats": 1e9}, False),
    ({"accuracy/top1": 0.96}, False),  # not logged: never meets
    ({"accuracy/top1": float("nan"), "speed/chats": 1e9}, False),
])
def test_matches(metrics, expected) -> None:
    assert matches(parse_where("accuracy/top1 >= 0.95 and speed/chats <= 2e9"), metrics) is expected


def test_equality_operators() -> None:
    assert matches(parse_where("size/params == 10"), {"size/params": 10.0})
    assert not matches(parse_where("size/params != 10"), {"size/params": 10.0})


@pytest.mark.parametrize(("text", "words"), [
    ("accuracy/top2 >= 0.9", "unknown metric key 'accuracy/top2'"),
    ("accuracy/top1 => 0.9", "cannot read"),
    ("accuracy/top1 >= 0.9 or ocs > 1", "only 'and'"),
    ("accuracy/top1 >= 0.9 and", "ends with 'and'"),
    ("accuracy/top1 0.9", "expected METRIC OP NUMBER"),
    ("__import__('os').system('true')", "cannot read"),
    ("accuracy/top1 >= 0.9; import os", "cannot read"),
    ("", "is empty"),
])
def test_bad_conditions_are_one_line_errors_naming_the_flag(text, words) -> None:
    with pytest.raises(ConfigError) as err:
        parse_where(text)
    assert err.value.field == "--where" and words in str(err.value)
    assert "\n" not in str(err.value)
