"""Output formats of the leaderboard: a rich terminal table, csv, markdown, json and html.

``csv`` and ``json`` carry every column with full precision (for tools); ``table``, ``markdown``
and ``html`` show a readable subset, formatted for people: ratios with 2 decimals, OCS with 3,
latency in ms with 2, Pareto membership as symbols. Works on any DataFrame; columns it does not
know are shown as they are. MultiIndex columns (such as ``pivot_by_hardware``'s) are flattened to
``"a | b"``.
"""

from __future__ import annotations

import io
import json
from html import escape
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from netzip_mlflow.errors import ConfigError
from netzip_mlflow.tracking import keys

Format = Literal["table", "csv", "markdown", "json", "html"]
FORMATS: tuple[str, ...] = ("table", "csv", "markdown", "json", "html")

PARETO_LATENCY_SYMBOL = "◆"
PARETO_SIZE_SYMBOL = "●"
PARETO_LEGEND = (
    f"{PARETO_LATENCY_SYMBOL} Pareto front accuracy vs latency, "
    f"{PARETO_SIZE_SYMBOL} Pareto front accuracy vs disk size"
)
LEVEL_SEPARATOR = " | "
PAIRED_MARK = "*"
NO_CHANGE = "no measurable change"
PAIRED_LEGEND = (
    f"{PAIRED_MARK} paired: timed side by side with the baseline (interleaved), not minutes apart; "
    f"'{NO_CHANGE}': its 95 % CI does not clear 1.0 by the margin evaluation.ratios.min_change_rel "
    "(default 5 %; CI bounds in the csv/json ratio/*_ci95_* columns)"
)


@dataclass(frozen=True)
class ColumnStyle:
    """How one column is shown to people: header, value formatter, alignment."""

    header: str
    fmt: Callable[[object], str]
    numeric: bool = True


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _number(decimals: int) -> Callable[[object], str]:
    def fmt(value: object) -> str:
        if _missing(value):
            return "—"
        if isinstance(value, (int, float)):
            return f"{value:.{decimals}f}"
        return str(value)

    return fmt


def _general(value: object) -> str:
    if _missing(value):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _count(value: Any) -> str:
    return "—" if _missing(value) else f"{float(value):,.0f}"


def _scientific(value: Any) -> str:
    return "—" if _missing(value) else f"{float(value):.3g}"


def _text(header: str) -> ColumnStyle:
    return ColumnStyle(header, _general, numeric=False)


STYLES: dict[str, ColumnStyle] = {
    "rank": ColumnStyle("#", _general),
    "recipe": _text("recipe"),
    "technique": _text("technique"),
    "hardware": _text("hw"),
    "study": _text("study"),
    keys.RATIO_PERFORMANCE: ColumnStyle("P", _number(2)),
    keys.RATIO_SPEEDUP: ColumnStyle("S", _number(2)),
    keys.RATIO_COMPRESSION: ColumnStyle("C", _number(2)),
    keys.RATIO_EFFICIENCY: ColumnStyle("E", _number(2)),
    keys.OCS: ColumnStyle("OCS", _number(3)),
    keys.TOP1: ColumnStyle("top1", _number(4)),
    keys.MAP50: ColumnStyle("mAP50", _number(4)),
    keys.LATENCY_MS: ColumnStyle("lat ms", _number(2)),
    keys.CHATS: ColumnStyle("CHATS", _scientific),
    keys.DISK_MB: ColumnStyle("MB", _number(2)),
    keys.PARAMS: ColumnStyle("params", _count),
    keys.ENERGY_PER_SAMPLE: ColumnStyle("J/sample", _scientific),
    keys.CIE_CLASSES: ColumnStyle("CIE", _count),
    "pareto": _text("Pareto"),
    "seed": _text("seed"),
    "trust": _text("trust"),
    "status": _text("status"),
    "note": _text("note"),
    "error": _text("error"),
}

DISPLAY_COLUMNS: tuple[str, ...] = (
    "rank", "study", "seed", "recipe", "technique", "hardware",
    keys.RATIO_PERFORMANCE, keys.RATIO_SPEEDUP, keys.RATIO_COMPRESSION, keys.RATIO_EFFICIENCY,
    keys.OCS, keys.TOP1, keys.MAP50, keys.LATENCY_MS, keys.DISK_MB, keys.CIE_CLASSES,
    "pareto", "trust", "note", "error",
)
"""The readable subset shown to people, in order (those present in the frame)."""

VARYING_ONLY: tuple[str, ...] = ("study", "seed")
"""Readable columns shown only when the rows hold more than one value (several studies or seeds)."""

TEXT_NOTES: tuple[str, ...] = ("trust", "note", "error")
"""Free-text columns: dropped when empty, cut at 40 characters in the terminal."""

PRIORITY: tuple[str, ...] = (
    "rank", "recipe", keys.OCS, "study", "seed", keys.RATIO_PERFORMANCE, keys.RATIO_SPEEDUP,
    keys.RATIO_COMPRESSION, keys.RATIO_EFFICIENCY, keys.TOP1, keys.MAP50, keys.LATENCY_MS,
    keys.DISK_MB, "pareto", "trust", "note", "hardware", "technique", keys.CIE_CLASSES, "error",
)
"""Which readable columns stay first when the terminal is too narrow for all of them (the sort
column, ``df.attrs["sort"]``, always stays)."""


def flatten_columns(df: pd.DataFrame) -> pd.DataFrame:
    """MultiIndex columns (and a named index) flattened into plain string columns."""
    out = df.copy()
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = [
            LEVEL_SEPARATOR.join(str(level) for level in col if str(level)) for col in out.columns
        ]
    if out.index.name is not None or isinstance(out.index, pd.MultiIndex):
        out = out.reset_index()
    return out


def _with_pareto(df: pd.DataFrame) -> pd.DataFrame:
    """Replace the two boolean Pareto flags by one ``pareto`` column of symbols."""
    if "pareto_latency" not in df.columns and "pareto_size" not in df.columns:
        return df
    latency = df.get("pareto_latency", pd.Series(False, index=df.index)).fillna(False).astype(bool)
    size = df.get("pareto_size", pd.Series(False, index=df.index)).fillna(False).astype(bool)
    symbols = latency.map({True: PARETO_LATENCY_SYMBOL, False: ""}) + size.map(
        {True: PARETO_SIZE_SYMBOL, False: ""}
    )
    return df.assign(pareto=symbols)


def _with_paired_calls(df: pd.DataFrame) -> pd.DataFrame:
    """Paired ratios shown as ``1.83*``, or as "no measurable change" where the leaderboard's
    ``ratio/*_changed`` column (written beside the CI columns) says False."""
    out = df
    for name in keys.PAIRED_RATIOS:
        column = keys.RATIO_KEYS[name]
        low_col, high_col = keys.ratio_ci_columns(name)
        if column not in df.columns or low_col not in df.columns or high_col not in df.columns:
            continue
        low, high = df[low_col].astype(float), df[high_col].astype(float)
        paired = low.notna() & high.notna()
        if not paired.any():
            continue
        cells = df[column].astype(object)
        no_change = paired & df[keys.ratio_change_column(name)].eq(False)
        cells[paired] = [f"{float(v):.2f}{PAIRED_MARK}" for v in df.loc[paired, column]]
        cells[no_change] = NO_CHANGE
        out = out.assign(**{column: cells})
    return out


def _has_paired(df: pd.DataFrame) -> bool:
    return any(
        col in df.columns and df[col].notna().any()
        for name in keys.PAIRED_RATIOS for col in keys.ratio_ci_columns(name)
    )


def _style(column: str, values: pd.Series) -> ColumnStyle:
    """The style of a column; a flattened ``"hw | metric"`` column is styled by its metric."""
    if column in STYLES:
        return STYLES[column]
    last = column.split(LEVEL_SEPARATOR)[-1]
    if last in STYLES:
        base = STYLES[last]
        return ColumnStyle(column[: -len(last)] + base.header, base.fmt, base.numeric)
    return ColumnStyle(column, _general, pd.api.types.is_numeric_dtype(values))


def _shown_columns(flat: pd.DataFrame, columns: Sequence[str] | None) -> list[str]:
    """The requested columns, or the readable subset present (empty note/error columns dropped)."""
    if columns is not None:
        missing = [c for c in columns if c not in flat.columns]
        if missing:
            raise ConfigError(
                "columns", f"not in the frame: {missing}", f"pick from {list(flat.columns)}"
            )
        return list(columns)
    known = [c for c in DISPLAY_COLUMNS if c in flat.columns] + [
        c for c in flat.columns if LEVEL_SEPARATOR in c and c.split(LEVEL_SEPARATOR)[-1] in STYLES
    ]
    if not known:
        return list(flat.columns)
    return [
        c for c in known
        if (c not in TEXT_NOTES or flat[c].fillna("").astype(bool).any())
        and (c not in VARYING_ONLY or flat[c].dropna().nunique() > 1)
    ]


def _prepared(df: pd.DataFrame, columns: Sequence[str] | None) -> tuple[pd.DataFrame, list[str]]:
    flat = _with_paired_calls(_with_pareto(flatten_columns(df)))
    shown = _shown_columns(flat, columns)
    sort = df.attrs.get("sort")
    if columns is None and sort in flat.columns and sort not in shown:  # the column ranked by is shown
        at = shown.index("recipe") + 1 if "recipe" in shown else len(shown)
        shown.insert(at, sort)
    return flat, shown


def display_frame(df: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The people-facing frame: readable columns as formatted strings under short headers."""
    flat, shown = _prepared(df, columns)
    styles = [_style(c, flat[c]) for c in shown]
    return pd.DataFrame(
        {s.header: [s.fmt(v) for v in flat[c].tolist()] for c, s in zip(shown, styles)},
        index=flat.index,
    )


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of a frame of strings (no ``tabulate`` needed)."""
    header = [_markdown_cell(str(c)) for c in df.columns]
    rows = [[_markdown_cell(str(v)) for v in row] for row in df.itertuples(index=False)]
    widths = [max([len(h), 3, *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), separator, *(line(r) for r in rows)]) + "\n"


def _width(column: str, style: ColumnStyle, texts: list[str]) -> int:
    """Characters a column needs: numbers in full, text folded at 20 (note/error cut at 40)."""
    longest = max([len(style.header), *(len(t) for t in texts)])
    if style.numeric:
        return longest
    return min(longest, 40 if column in TEXT_NOTES else 20)


def _fit(shown: list[str], widths: dict[str, int], width: int, keep: str | None = None) -> list[str]:
    """The columns that fit in ``width`` characters, taken in :data:`PRIORITY` order (``keep``,
    the sort column, right after the rank and recipe)."""
    order = [c for c in PRIORITY if c != keep]
    if keep in shown:
        order.insert(2, keep)
    rank = {c: i for i, c in enumerate(order)}
    kept: set[str] = set()
    used = 0
    for column in sorted(shown, key=lambda c: rank.get(c, len(order))):
        need = widths[column] + 3  # one space of padding each side and the column divider
        if kept and used + need > width:
            continue
        kept.add(column)
        used += need
    return [c for c in shown if c in kept]


def build_table(
    df: pd.DataFrame,
    title: str | None = "NetZIP leaderboard",
    columns: Sequence[str] | None = None,
    width: int | None = None,
) -> Table:
    """A rich Table of the readable columns; negative OCS in red, Pareto symbols explained.

    With ``width`` (the console's, in characters) and no explicit ``columns``, the least important
    columns are left out until the table fits, and the caption names them.
    """
    flat, shown = _prepared(df, columns)
    styles = {c: _style(c, flat[c]) for c in shown}
    cells = {c: [styles[c].fmt(v) for v in flat[c].tolist()] for c in shown}
    fitted = shown
    if width is not None and columns is None:
        widths = {c: _width(c, styles[c], cells[c]) for c in shown}
        fitted = _fit(shown, widths, width, keep=df.attrs.get("sort"))
    notes = [PARETO_LEGEND] if "pareto" in fitted else []
    if _has_paired(flat) and any(keys.RATIO_KEYS[n] in fitted for n in keys.PAIRED_RATIOS):
        notes.append(PAIRED_LEGEND)
    hidden = [styles[c].header for c in shown if c not in fitted]
    if hidden:
        notes.append(f"hidden to fit the terminal: {', '.join(hidden)} (use csv/json for all)")
    caption = Text("\n".join(notes)) if notes else None  # Text: no markup in hardware names
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD,
                  pad_edge=False)
    for column in fitted:
        header = Text(styles[column].header)  # a Text, so "[pc01]" is not read as markup
        if styles[column].numeric:
            table.add_column(header, justify="right", no_wrap=True)
        else:
            wide = column in TEXT_NOTES
            table.add_column(header, overflow="ellipsis" if wide else "fold",
                             max_width=40 if wide else None)
    is_ocs = [c.split(LEVEL_SEPARATOR)[-1] == keys.OCS for c in fitted]
    raw = [flat[c].tolist() for c in fitted]
    for i in range(len(flat)):
        table.add_row(*(
            Text(cells[c][i], style="bold red" if ocs and _is_negative(values[i]) else "")
            for c, values, ocs in zip(fitted, raw, is_ocs)
        ))
    return table


def _is_negative(value: object) -> bool:
    return isinstance(value, (int, float)) and not _missing(value) and value < 0


def print_table(
    df: pd.DataFrame,
    console: Console | None = None,
    title: str | None = "NetZIP leaderboard",
    columns: Sequence[str] | None = None,
) -> None:
    """Print the leaderboard to the terminal with rich (a new Console when none is given)."""
    console = console or Console()
    console.print(build_table(df, title, columns, width=console.width))


def _json_value(value: object) -> object:
    if _missing(value) or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


def _json_records(data: pd.DataFrame) -> str:
    """A JSON list of records with every float at full (round-trip) precision; NaN/inf as null."""
    records = [
        {str(k): _json_value(v) for k, v in record.items()}
        for record in data.to_dict(orient="records")
    ]
    return json.dumps(records, ensure_ascii=False, default=str)


def render(df: pd.DataFrame, fmt: Format = "table", columns: Sequence[str] | None = None) -> str:
    """The frame as text in one of :data:`FORMATS`.

    ``csv`` and ``json`` (a list of records; NaN as ``null``) carry every column unless ``columns``
    is given; ``table`` (plain text, no colours), ``markdown`` and ``html`` show the readable
    subset.
    """
    if fmt not in FORMATS:
        raise ConfigError("fmt", f"unknown format {fmt!r}", f"use one of: {', '.join(FORMATS)}")
    if fmt in ("csv", "json"):
        flat = flatten_columns(df)
        data = flat if columns is None else flat[list(columns)]
        if fmt == "csv":
            return data.to_csv(index=False)
        return _json_records(data)
    if fmt == "table":
        buffer = io.StringIO()
        console = Console(file=buffer, width=200, color_system=None, force_terminal=False)
        console.print(build_table(df, title=None, columns=columns))
        return buffer.getvalue()
    shown = display_frame(df, columns)
    legend = PAIRED_LEGEND if _has_paired(flatten_columns(df)) else ""
    if fmt == "markdown":
        return to_markdown(shown) + (f"\n{legend}\n" if legend else "")
    legends = [PARETO_LEGEND] if "Pareto" in shown.columns else []
    return html_document(shown, legend=" ".join(legends + ([legend] if legend else [])))


HTML_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
    "table{border-collapse:collapse;font-size:14px}"
    "th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}"
    "th{background:#f4f4f4}td:nth-child(-n+3){text-align:left}"
    "p.legend{color:#555;font-size:13px}"
)


def html_document(shown: pd.DataFrame, title: str = "NetZIP leaderboard", legend: str = "") -> str:
    """A complete UTF-8 HTML5 document (doctype, ``<meta charset="utf-8">``, title) holding ``shown``.

    Without the charset a browser or the MLflow artifact viewer may read the UTF-8 bytes of the
    Pareto symbols as Latin-1 ("â—†" instead of "◆").
    """
    from html import escape as html_escape

    table = shown.to_html(index=False, escape=True, border=0)
    legend_html = f'<p class="legend">{html_escape(legend)}</p>' if legend else ""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html_escape(title)}</title>\n<style>{HTML_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{html_escape(title)}</h1>\n{table}\n{legend_html}\n</body>\n</html>\n"
    )
