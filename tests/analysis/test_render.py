"""Output formats of the leaderboard: every format parses back, the terminal table is formatted."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from netzip_mlflow.analysis.leaderboard import pivot_by_hardware
from netzip_mlflow.analysis.render import (
    PARETO_LATENCY_SYMBOL,
    PARETO_SIZE_SYMBOL,
    build_table,
    display_frame,
    print_table,
    render,
    to_markdown,
)
from netzip_mlflow.errors import ConfigError
from netzip_mlflow.tracking import keys


def board() -> pd.DataFrame:
    """A leaderboard-shaped frame: three ranked runs (one negative OCS) and a failed one."""
    return pd.DataFrame({
        "rank": pd.array([1, 2, 3, pd.NA], dtype="Int64"),
        "run_id": ["a" * 32, "b" * 32, "c" * 32, "d" * 32],
        "status": ["FINISHED", "FINISHED", "FINISHED", "FAILED"],
        "study": ["s1"] * 4,
        "recipe": ["ptq_int8", "fp16", "prune_l1_50", "qat_int8"],
        "technique": ["ptq", "fp16", "prune_unstructured", "qat"],
        "hardware": ["pc01", "pc01", "pi04", "pc01"],
        "cpu": ["Intel i7", "Intel i7", "Cortex-A72", "Intel i7"],
        keys.RATIO_PERFORMANCE: [1.0, 1.0, 0.9, np.nan],
        keys.RATIO_SPEEDUP: [4.0, 2.0, 1.0, np.nan],
        keys.RATIO_COMPRESSION: [4.0, 2.0, 1.0, np.nan],
        keys.RATIO_EFFICIENCY: [2.0, 1.25, 1.0, np.nan],
        keys.OCS: [7.0, 2.25, -0.081, np.nan],
        keys.TOP1: [0.8, 0.8, 0.72, np.nan],
        keys.LATENCY_MS: [5.0, 8.123, 10.0, np.nan],
        keys.DISK_MB: [10.0, 20.0, 40.0, np.nan],
        "baseline_run_id": ["e" * 32] * 4,
        "pareto_latency": [True, False, True, False],
        "pareto_size": [True, False, False, False],
        "note": ["", "", "", "run failed"],
        "error": [None, None, None, "CompressionError: boom"],
    })


def test_csv_carries_every_column_and_parses_back() -> None:
    df = board()
    back = pd.read_csv(io.StringIO(render(df, "csv")))
    assert list(back.columns) == list(df.columns)
    np.testing.assert_allclose(back[keys.OCS], df[keys.OCS])
    np.testing.assert_allclose(back[keys.LATENCY_MS], df[keys.LATENCY_MS])  # full precision
    assert back["recipe"].tolist() == df["recipe"].tolist()


def test_json_is_a_list_of_records_with_null_for_nan() -> None:
    records = json.loads(render(board(), "json"))
    assert len(records) == 4 and set(records[0]) == set(board().columns)
    assert records[2][keys.OCS] == pytest.approx(-0.081)
    assert records[3][keys.OCS] is None and records[3]["rank"] is None
    assert records[0]["pareto_latency"] is True


def test_json_keeps_full_float_precision() -> None:
    df = pd.DataFrame({keys.OCS: [1 / 9, float("inf")], "rank": pd.array([1, None], dtype="Int64")})
    records = json.loads(render(df, "json"))
    assert records[0][keys.OCS] == 1 / 9 and records[0]["rank"] == 1
    assert records[1][keys.OCS] is None and records[1]["rank"] is None


def test_markdown_has_header_separator_and_one_line_per_row() -> None:
    lines = render(board(), "markdown").strip().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:5] == ["#", "recipe", "technique", "hw", "P"]
    assert "OCS" in header and "error" in header
    assert set(lines[1]) <= {"|", "-"}
    assert len(lines) == 2 + 4
    row = [c.strip() for c in lines[1 + 3].strip("|").split("|")]  # prune_l1_50
    assert row[header.index("OCS")] == "-0.081"
    assert row[header.index("S")] == "1.00"


def test_markdown_escapes_pipes() -> None:
    text = to_markdown(pd.DataFrame({"a|b": ["x|y"]}))
    assert text.splitlines()[0] == "| a\\|b |"
    assert text.splitlines()[2] == "| x\\|y |"


def test_display_formats_ratios_ocs_latency_and_pareto() -> None:
    shown = display_frame(board())
    assert shown["P"].tolist()[:3] == ["1.00", "1.00", "0.90"]
    assert shown["OCS"].tolist()[:3] == ["7.000", "2.250", "-0.081"]
    assert shown["lat ms"].tolist()[:3] == ["5.00", "8.12", "10.00"]
    assert shown["Pareto"].tolist() == [
        PARETO_LATENCY_SYMBOL + PARETO_SIZE_SYMBOL, "", PARETO_LATENCY_SYMBOL, ""]
    assert "run_id" not in shown.columns and "baseline_run_id" not in shown.columns


def test_table_and_html_show_the_readable_subset() -> None:
    table = render(board(), "table")
    assert "ptq_int8" in table and "7.000" in table and "run_id" not in table
    assert "\x1b[" not in table  # plain text
    html = render(board(), "html")
    assert html.count("<tr") == 1 + 4 and "<th>OCS</th>" in html
    assert "aaaa" not in html


def test_negative_ocs_printed_in_red() -> None:
    console = Console(file=io.StringIO(), width=250, color_system="standard", force_terminal=True)
    print_table(board(), console=console, title="t")
    red_cells = [
        line for line in console.file.getvalue().splitlines() if "\x1b[1;31m-0.081" in line
    ]
    assert len(red_cells) == 1 and "prune_l1_50" in red_cells[0]
    assert "\x1b[1;31m7.000" not in console.file.getvalue()


def test_build_table_columns_and_legend() -> None:
    table = build_table(board().iloc[:3])
    headers = [c.header for c in table.columns]
    assert "error" not in headers and "note" not in headers  # empty on these rows
    assert table.row_count == 3 and table.caption and PARETO_SIZE_SYMBOL in str(table.caption)


def test_pivot_renders_with_flattened_headers() -> None:
    pivot = pivot_by_hardware(board())
    records = json.loads(render(pivot, "json"))
    first = records[0]
    assert first["recipe"] == "ptq_int8" and first["Intel i7 [pc01] | ocs"] == 7.0
    assert math.isnan(pivot.loc["ptq_int8", ("Cortex-A72 [pi04]", keys.OCS)])
    header = render(pivot, "markdown").splitlines()[0]
    assert "Intel i7 [pc01] | OCS" in header.replace("\\|", "|")


def test_explicit_columns_and_bad_arguments() -> None:
    assert render(board(), "csv", columns=["recipe", keys.OCS]).splitlines()[0] == "recipe,ocs"
    with pytest.raises(ConfigError, match="fmt"):
        render(board(), "xlsx")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="columns"):
        render(board(), "markdown", columns=["nope"])


def _headers(table) -> list[str]:
    return [str(c.header) for c in table.columns]


def test_the_sort_column_stays_visible_in_80_columns() -> None:
    df = board().assign(trust=["latency CI target missed; energy estimated", "", "", ""])
    df.attrs["sort"] = keys.OCS
    assert "OCS" in _headers(build_table(df, width=80))
    df.attrs["sort"] = keys.DISK_MB
    narrow = _headers(build_table(df, width=40))
    assert "MB" in narrow  # the sort column comes right after rank and recipe
    df.attrs.pop("sort")
    assert "MB" not in _headers(build_table(df, width=40))
    df.attrs["sort"] = keys.CHATS  # not a display column: added for the ranking it explains
    assert "CHATS" in display_frame(df.assign(**{keys.CHATS: [1.0, 2.0, 3.0, np.nan]})).columns


def test_study_and_seed_columns_only_when_the_rows_span_several() -> None:
    df = board().assign(seed=["0", "0", "0", "0"])
    assert "study" not in display_frame(df).columns and "seed" not in display_frame(df).columns
    several = df.assign(study=["s1", "s2", "s1", "s2"], seed=["0", "1", "0", "1"])
    shown = display_frame(several)
    assert list(shown["study"]) == ["s1", "s2", "s1", "s2"] and list(shown["seed"]) == ["0", "1", "0", "1"]


def test_trust_notes_are_shown_and_written_to_csv() -> None:
    df = board().assign(trust=["latency CI target missed", "", "", ""])
    assert display_frame(df)["trust"].iloc[0] == "latency CI target missed"
    back = pd.read_csv(io.StringIO(render(df, "csv")))
    assert back["trust"].iloc[0] == "latency CI target missed"
    assert "trust" not in display_frame(board().assign(trust="")).columns  # empty: not shown


def test_html_is_a_complete_utf8_document() -> None:
    html = render(board(), "html")
    assert html.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in html
    assert html.rstrip().endswith("</html>") and "<title>NetZIP leaderboard</title>" in html
    assert PARETO_LATENCY_SYMBOL in html and "Pareto front accuracy vs latency" in html
