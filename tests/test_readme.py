"""The README's metric table and ``keys.METRICS`` name the same keys."""

from __future__ import annotations

import re
from pathlib import Path

from netzip_mlflow.tracking import keys

README = Path(__file__).resolve().parents[1] / "README.md"


def row_keys(cell: str) -> set[str]:
    """The metric keys of one table cell: `a/b`, `c` (same prefix), `_suffix` (added to the row's
    first key, or replacing ``_macro`` in the row's macro keys)."""
    found: list[str] = []
    prefix = ""
    for token in re.findall(r"`([^`]+)`", cell):
        if token.startswith("_"):
            macro = [k for k in found if k.endswith("_macro")]
            if macro:
                found += [k[: -len("_macro")] + token for k in macro]
            else:
                found.append(found[0] + token)
        elif "/" in token:
            prefix = token.split("/")[0]
            found.append(token)
        else:
            found.append(f"{prefix}/{token}" if prefix else token)
    return set(found)


def readme_metric_keys(text: str) -> set[str]:
    section = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| `")]
    return set().union(*(row_keys(line.split("|")[1]) for line in table))


def test_row_parser():
    assert row_keys("`accuracy/precision_macro`, `recall_macro` (and `_micro`)") == {
        "accuracy/precision_macro", "accuracy/recall_macro", "accuracy/precision_micro", "accuracy/recall_micro",
    }
    assert row_keys("`speed/latency_ms` (`_mean`, `_p90`)") == {"speed/latency_ms", "speed/latency_ms_mean", "speed/latency_ms_p90"}
    assert row_keys("`ocs`") == {"ocs"}


def test_readme_metric_table_matches_the_contract():
    documented = readme_metric_keys(README.read_text(encoding="utf-8"))
    assert documented - set(keys.METRICS) == set(), "README names keys that keys.METRICS lacks"
    assert set(keys.METRICS) - documented == set(), "keys.METRICS has keys the README table lacks"
