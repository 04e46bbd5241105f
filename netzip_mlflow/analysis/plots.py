"""The paper's plots from a leaderboard frame: radar (Fig. 7), OCS bars (Fig. 8a), bubbles (Fig. 6).

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (no global state, no
display needed), so a caller can ``mlflow.log_figure(fig, "plots/radar.png")`` or :func:`save` it.
Input is the frame of :func:`netzip_mlflow.analysis.leaderboard.leaderboard`: metric columns named
by their keys (``ocs``, ``ratio/*``, ``accuracy/top1``, ``speed/latency_ms`` in ms, ``size/disk_mb``
in MB) plus ``recipe``, ``technique`` and ``hardware``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from netzip_mlflow.analysis.leaderboard import accuracy_metric
from netzip_mlflow.errors import DataError
from netzip_mlflow.tracking import keys

RADAR_AXES: tuple[tuple[str, str], ...] = (
    (keys.RATIO_PERFORMANCE, "Performance"),
    (keys.RATIO_SPEEDUP, "Speedup"),
    (keys.RATIO_COMPRESSION, "Compression"),
    (keys.RATIO_EFFICIENCY, "Efficiency"),
    (keys.OCS, "OCS"),
)
POSITIVE_COLOUR = "tab:blue"
NEGATIVE_COLOUR = "tab:red"
ANNOTATE_LIMIT = 40
"""Bubble plots label each point with its recipe up to this many points."""


def _require(df: pd.DataFrame, columns: Sequence[str], plot: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(
            f"{plot} needs the columns {missing}, which the frame lacks; "
            "pass the frame returned by netzip_mlflow.analysis.leaderboard.leaderboard()"
        )


def _ranked(df: pd.DataFrame, plot: str) -> pd.DataFrame:
    """Rows with a finite OCS, best first; raises when there is none."""
    _require(df, [keys.OCS], plot)
    rows = df[np.isfinite(df[keys.OCS].astype(float))]
    if rows.empty:
        raise DataError(f"{plot}: no run has a finite OCS to plot (check the leaderboard's 'note')")
    return rows.sort_values(keys.OCS, ascending=False, kind="stable")


def run_labels(df: pd.DataFrame) -> list[str]:
    """One label per row: the recipe, with the hardware when a recipe appears more than once."""
    recipe = df.get("recipe", pd.Series(index=df.index, dtype=object))
    run_id = df.get("run_id", pd.Series("run", index=df.index)).astype(str).str[:8]
    names = recipe.where(recipe.notna(), run_id).astype(str)
    repeated = names.duplicated(keep=False)
    if "hardware" in df.columns:
        hw = df["hardware"].fillna("?").astype(str)
        names = names.where(~repeated, names + " @ " + hw)
    return list(names)


# --------------------------------------------------------------------------------------------------
# Radar (paper Fig. 7), each axis on its own scale around the baseline ring
# --------------------------------------------------------------------------------------------------

RADAR_BASELINE: dict[str, float] = {col: 1.0 for col, _ in RADAR_AXES[:-1]} | {keys.OCS: 0.0}
"""The baseline's own value on each axis: ratio 1.0 (no change), OCS 0 (the baseline's OCS)."""
RING = 0.5
"""Radius of the baseline ring; a run's point inside it is worse than the baseline on that axis."""
REACH = 0.42
"""Radius from the ring to the largest deviation on an axis (points lie in ``RING ± REACH``)."""
MIN_SPAN = 0.05
"""Smallest half-range of an axis (a ratio of 0.95-1.05 still fills the plot visibly)."""
BASELINE_RING_STYLE = {"color": "tab:green", "linestyle": "--", "linewidth": 1.6}


def radar_scales(values: np.ndarray, centres: Sequence[float]) -> np.ndarray:
    """Half-range of each axis: the largest ``|value - centre|`` on it (at least :data:`MIN_SPAN`).

    ``values`` is runs x axes; an axis without finite values gets :data:`MIN_SPAN`.
    """
    spans = []
    for j, centre in enumerate(centres):
        column = values[:, j]
        finite = column[np.isfinite(column)]
        spans.append(max(MIN_SPAN, float(np.abs(finite - centre).max())) if finite.size else MIN_SPAN)
    return np.asarray(spans)


def radar_radii(values: np.ndarray, centres: Sequence[float], spans: np.ndarray) -> np.ndarray:
    """Radius of each value on its own axis: ``RING + REACH * (value - centre) / span``."""
    return RING + REACH * (values - np.asarray(centres)) / spans


def _axis_ticks(ax: Axes, angles: np.ndarray, centres: Sequence[float], spans: np.ndarray) -> None:
    """Value labels along each axis at the ring and at both ends of its range (a ratio axis's inner
    end is labelled only where it is a possible ratio, >= 0)."""
    for angle, centre, span in zip(angles, centres, spans):
        for fraction in (-1.0, 0.0, 1.0):
            value = centre + fraction * span
            if centre == 1.0 and value < 0:
                continue
            ax.text(angle, RING + REACH * fraction, f"{value:.3g}", fontsize=7, color="dimgray",
                    ha="center", va="center", zorder=4,
                    bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 0.5})


def _axis_names(ax: Axes, angles: np.ndarray, names: list[str], outer: float) -> None:
    """Axis names just outside the outer circle, aligned away from it so none overlaps it."""
    ax.set_xticks(angles, [""] * len(angles))
    for angle, name in zip(angles, names):
        x, y = math.sin(angle), math.cos(angle)  # clockwise from the top
        ax.text(angle, outer * 1.08, name, fontsize=11, clip_on=False,
                ha="left" if x > 0.1 else "right" if x < -0.1 else "center",
                va="bottom" if y > 0.1 else "top" if y < -0.1 else "center")


def _ring(ax: Axes, radius: float, style: Mapping[str, object], label: str) -> None:
    """A full circle at ``radius``, drawn above the fills and below the run outlines."""
    theta = np.linspace(0, 2 * math.pi, 361)
    ax.plot(theta, np.full_like(theta, radius), label=label, zorder=2.5, **style)


def radar_plot(df: pd.DataFrame, top_k: int = 5, title: str | None = None) -> Figure:
    """Radar of the ``top_k`` runs by OCS on the axes P, S, C, E and OCS (paper Fig. 7).

    Each axis has its own scale (:func:`radar_scales`), centred on the baseline: the dashed green
    ring is ratio 1.0 on the four ratio axes and OCS 0 on the OCS axis (the baseline itself), a
    point inside it is worse than the baseline on that axis, outside better; each axis is labelled
    with its values at the ring and at both ends. So a performance ratio of 0.68 sits well inside
    the ring even when another run's speedup is 16. A missing ratio leaves a gap in its run's
    outline. Legend: recipe and OCS.
    """
    _require(df, [col for col, _ in RADAR_AXES], "radar_plot")
    top = _ranked(df, "radar_plot").head(top_k)
    columns = [col for col, _ in RADAR_AXES]
    values = top[columns].to_numpy(dtype=float)
    centres = [RADAR_BASELINE[c] for c in columns]
    spans = radar_scales(values, centres)
    radii = radar_radii(values, centres, spans)
    angles = np.linspace(0, 2 * math.pi, len(RADAR_AXES), endpoint=False)
    closed = np.r_[angles, angles[:1]]

    fig = Figure(figsize=(10, 6.5))
    ax = fig.add_axes((0.07, 0.08, 0.5, 0.76), projection="polar")  # room around for axis names
    ax.set_theta_offset(math.pi / 2)
    ax.set_theta_direction(-1)
    ax.set_ylim(0, 1.0)
    ax.set_yticks([RING - REACH, RING, RING + REACH], ["", "", ""])  # grid circles; values per axis
    _axis_names(ax, angles, [name for _, name in RADAR_AXES], 1.0)
    _axis_ticks(ax, angles, centres, spans)
    _ring(ax, RING, BASELINE_RING_STYLE, "baseline (ratio 1.0, OCS 0)")

    colours = [f"C{i % 10}" for i in range(len(top))]
    for row, radius, label, colour in zip(values, radii, run_labels(top), colours):
        closed_radii = np.r_[radius, radius[:1]]
        ax.plot(closed, closed_radii, color=colour, linewidth=2, marker="o", markersize=4,
                label=f"{label} (OCS {row[-1]:.3g})", zorder=3)
        finite = np.isfinite(closed_radii)
        ax.fill(closed[finite], closed_radii[finite], color=colour, alpha=0.08, zorder=2)
    fig.legend(loc="upper left", bbox_to_anchor=(0.66, 0.86), fontsize=9, frameon=False)
    fig.text(0.66, 0.12, "each axis on its own scale;\ninside the green ring: worse than the baseline",
             fontsize=8, color="dimgray")
    fig.suptitle(title or f"Top {len(top)} runs by OCS", x=0.32, y=0.97)
    return fig


# --------------------------------------------------------------------------------------------------
# OCS bars (paper Fig. 8a)
# --------------------------------------------------------------------------------------------------


def ocs_bar_plot(df: pd.DataFrame, top_k: int | None = None, title: str | None = None) -> Figure:
    """Horizontal bars of every run's OCS, best at the top; negative OCS in red (paper Fig. 8a).

    Rows without a finite OCS are left out; ``top_k`` keeps only the best runs.
    """
    rows = _ranked(df, "ocs_bar_plot")
    if top_k is not None:
        rows = rows.head(top_k)
    scores = rows[keys.OCS].to_numpy(dtype=float)
    labels = run_labels(rows)
    colours = [NEGATIVE_COLOUR if s < 0 else POSITIVE_COLOUR for s in scores]

    fig = Figure(figsize=(8, max(2.5, 0.32 * len(rows) + 1.4)), layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(len(rows))
    bars = ax.barh(positions, scores, color=colours)
    ax.set_yticks(positions, labels, fontsize=9)
    ax.invert_yaxis()
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.bar_label(bars, labels=[f"{s:.3g}" for s in scores], padding=3, fontsize=8)
    span = max(scores.max(), 0.0) - min(scores.min(), 0.0) or 1.0
    ax.set_xlim(min(scores.min(), 0.0) - 0.15 * span, max(scores.max(), 0.0) + 0.15 * span)
    ax.set_xlabel("Overall Compression Success (OCS)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title or "OCS of the compressed runs")
    return fig


# --------------------------------------------------------------------------------------------------
# Accuracy vs latency bubbles (paper Fig. 6)
# --------------------------------------------------------------------------------------------------


def _bubble_area(disk_mb: np.ndarray, reference: float, largest: float) -> np.ndarray:
    """Marker area in points^2, proportional to disk size; ``reference`` MB gets ``largest``."""
    return np.where(np.isfinite(disk_mb), largest * disk_mb / reference, 30.0)


def _largest_area(points: int) -> float:
    """Area of the largest bubble: 1200 pt^2, shrinking once there are many points to overlap."""
    return 1200.0 * min(1.0, math.sqrt(ANNOTATE_LIMIT / max(points, 1)))


def _baseline_value(baseline: Mapping[str, Any] | pd.Series, key: str) -> float:
    value = baseline.get(key)
    return math.nan if value is None else float(value)


BASELINE_MARKER_AREA = 260.0
"""Area of the baseline's star in the bubble plot, points^2."""
LABEL_FONT = 8.0
"""Point size of the recipe labels of the bubble plot."""


def _overlaps(box: tuple[float, float, float, float], others: list[tuple[float, float, float, float]]) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in others)


def _label_points(
    fig: Figure, ax: Axes, rows: pd.DataFrame, accuracy: str, areas: np.ndarray,
    extra: Sequence[tuple[float, float, float]] = (),
) -> None:
    """Recipe names beside each bubble, placed where they overlap no other label or bubble.

    After the layout is computed, each label (top to bottom) tries offsets right of its bubble, then
    left, stepping up and down by a line; the first free spot inside the axes wins, joined to its
    bubble by a thin line when moved off the bubble's centre line. Text sizes are estimated from the
    font size (0.6 em per character). Everything is in points, so it holds at any saving dpi.
    ``extra`` are other markers to keep clear of, as ``(x, y, radius in points)`` in data units.
    """
    fig.draw_without_rendering()  # final axes position and limits
    to_points = 72.0 / fig.dpi
    labels = run_labels(rows)
    x, y = rows[keys.LATENCY_MS].to_numpy(dtype=float), rows[accuracy].to_numpy(dtype=float)
    centres = ax.transData.transform(np.column_stack([x, y])) * to_points
    radii = np.sqrt(areas) / 2.0  # scatter area is the marker's square size in points^2
    frame = ax.get_window_extent().extents * to_points
    bubbles = [(cx - r, cy - r, cx + r, cy + r) for (cx, cy), r in zip(centres, radii)]
    for ex, ey, er in extra:
        if math.isfinite(ex) and math.isfinite(ey):
            px, py = ax.transData.transform((ex, ey)) * to_points
            bubbles.append((px - er, py - er, px + er, py + er))
    height = LABEL_FONT * 1.35
    placed: list[tuple[float, float, float, float]] = []
    for i in np.argsort(-centres[:, 1], kind="stable"):
        (cx, cy), r = centres[i], radii[i]
        width = 0.6 * LABEL_FONT * len(labels[i])
        obstacles = placed + [b for j, b in enumerate(bubbles) if j != i]  # extras have j >= n
        choice = None
        for step in range(12):
            dy = height * ((step + 1) // 2) * (1 if step % 2 else -1) if step else 0.0
            for side in (1, -1):
                dx = side * (r + 3.0)
                left = cx + dx if side > 0 else cx + dx - width
                box = (left, cy + dy - height / 2, left + width, cy + dy + height / 2)
                inside = frame[0] <= box[0] and box[2] <= frame[2] and frame[1] <= box[1] and box[3] <= frame[3]
                if inside and not _overlaps(box, obstacles):
                    choice = (dx, dy, side, box)
                    break
            if choice:
                break
        if choice is None:  # crowded: right of the bubble, where it may overlap
            dx, dy, side = r + 3.0, 0.0, 1
            box = (cx + dx, cy - height / 2, cx + dx + width, cy + height / 2)
        else:
            dx, dy, side, box = choice
        placed.append(box)
        ax.annotate(
            labels[i], (x[i], y[i]), xytext=(dx, dy), textcoords="offset points",
            fontsize=LABEL_FONT, va="center", ha="left" if side > 0 else "right", zorder=5,
            bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 0.5},
            arrowprops=(
                {"arrowstyle": "-", "color": "gray", "linewidth": 0.6, "shrinkA": 0, "shrinkB": r}
                if dy else None
            ),
        )


def bubble_plot(
    df: pd.DataFrame,
    baseline: Mapping[str, Any] | pd.Series | None = None,
    title: str | None = None,
) -> Figure:
    """Accuracy vs median latency (ms); bubble area ∝ disk size (MB); colour by technique.

    Points are labelled with their recipe (up to :data:`ANNOTATE_LIMIT` points). ``baseline`` (a
    mapping or row with the same metric keys, e.g. a row of ``leaderboard.baselines()``) is drawn
    as a black star.
    """
    accuracy = accuracy_metric(df)
    _require(df, [accuracy, keys.LATENCY_MS, keys.DISK_MB], "bubble_plot")
    rows = df[np.isfinite(df[[accuracy, keys.LATENCY_MS]].astype(float)).all(axis=1)]
    if rows.empty and baseline is None:
        raise DataError("bubble_plot: no run has both accuracy and latency to plot")
    disk = rows[keys.DISK_MB].to_numpy(dtype=float)
    base_disk = _baseline_value(baseline, keys.DISK_MB) if baseline is not None else math.nan
    reference = float(np.nanmax(np.r_[disk, base_disk, 1e-9]))
    largest = _largest_area(len(rows))
    areas = _bubble_area(disk, reference, largest)

    fig = Figure(figsize=(9, 6), layout="constrained")
    ax = fig.add_subplot()
    techniques = rows.get("technique", pd.Series("?", index=rows.index)).fillna("?").astype(str)
    handles = []
    for i, technique in enumerate(sorted(techniques.unique())):
        part = (techniques == technique).to_numpy()
        colour = f"C{i % 10}"
        ax.scatter(rows.loc[part, keys.LATENCY_MS], rows.loc[part, accuracy], s=areas[part],
                   color=colour, alpha=0.55, edgecolors="black", linewidths=0.6, zorder=3)
        handles.append(_legend_marker(colour, "o", technique))
    extra: list[tuple[float, float, float]] = []
    if baseline is not None:
        base_x, base_y = _baseline_value(baseline, keys.LATENCY_MS), _baseline_value(baseline, accuracy)
        ax.scatter([base_x], [base_y], s=BASELINE_MARKER_AREA, marker="*", color="black", zorder=4)
        handles.append(_legend_marker("black", "*", "baseline"))
        extra.append((base_x, base_y, math.sqrt(BASELINE_MARKER_AREA) / 2))
    fig.legend(handles=handles, title="technique", loc="outside right upper", frameon=False)
    _size_legend(fig, reference, largest)
    ax.margins(0.12)
    ax.set_xlabel("median latency per batch (ms)")
    ax.set_ylabel(keys.METRICS[accuracy].description)
    ax.grid(alpha=0.3)
    ax.set_title(title or "Accuracy vs latency (bubble area ∝ disk size)")
    if len(rows) <= ANNOTATE_LIMIT:
        _label_points(fig, ax, rows, accuracy, areas, extra)
    return fig


def _legend_marker(colour: str, marker: str, label: str) -> Line2D:
    return Line2D([], [], linestyle="", marker=marker, markersize=10, color=colour, label=label,
                  markeredgecolor="black", markeredgewidth=0.6)


def _size_legend(fig: Figure, reference: float, largest: float) -> None:
    """A second legend: reference bubbles for a few disk sizes (MB)."""
    sizes = [s for s in MaxNLocator(nbins=3).tick_values(0, reference) if 0 < s <= reference]
    handles = [
        Line2D([], [], linestyle="", marker="o", markerfacecolor="lightgray",
               markeredgecolor="black",
               markersize=math.sqrt(float(_bubble_area(np.array([s]), reference, largest)[0])))
        for s in sizes
    ]
    fig.legend(handles, [f"{s:g} MB" for s in sizes], title="disk size", loc="outside right lower",
               frameon=False, labelspacing=1.8, borderpad=1.2)


def save(fig: Figure, path: str | Path, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix, e.g. .png or .svg); returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=dpi, bbox_inches="tight")
    return target

