"""The search's figures: Pareto front with the feasible region, history, importances, layer policy.

Built without pyplot (no global state), like :mod:`netzip_mlflow.analysis.plots`. Input is the trial
frame of :func:`netzip_mlflow.search.artifacts.trial_frame`: one row per trial with ``number``,
``state``, ``feasible`` and the metric columns named by their keys.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from netzip_mlflow.search.objective import Constraint
from netzip_mlflow.tracking import keys

FEASIBLE_COLOUR = "tab:blue"
INFEASIBLE_COLOUR = "tab:red"
REGION_COLOUR = "tab:green"


def _front(points: np.ndarray) -> np.ndarray:
    """Rows of ``points`` (x to minimise, y to maximise) that no other row dominates, sorted by x."""
    keep = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            (x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i
        )
        if not dominated:
            keep.append(i)
    front = points[keep]
    return front[np.argsort(front[:, 0], kind="stable")]


def _bound(bounds: Sequence[Constraint], metric: str, upper: bool) -> float | None:
    values = [b.bound for b in bounds if b.metric == metric and b.upper == upper]
    if not values:
        return None
    return min(values) if upper else max(values)


def pareto_plot(
    frame: pd.DataFrame,
    performance: str,
    bounds: Sequence[Constraint],
    baseline: Mapping[str, float] | None = None,
    x_metrics: Sequence[str] = (keys.CHATS, keys.LATENCY_MS),
) -> Figure:
    """Accuracy against each of ``x_metrics``: trials (feasible filled, infeasible crossed), the
    front of the feasible ones, the baseline (star) and the feasible region of the bounds on the two
    plotted metrics shaded (other constraints can still make a point in it infeasible: its marker says)."""
    fig = Figure(figsize=(6 * len(x_metrics), 4.8), layout="constrained")
    axes = fig.subplots(1, len(x_metrics), squeeze=False)[0]
    for ax, x_key in zip(axes, x_metrics):
        rows = frame.dropna(subset=[c for c in (x_key, performance) if c in frame.columns])
        if x_key not in rows.columns or performance not in rows.columns or rows.empty:
            ax.text(0.5, 0.5, f"no trial measured {x_key}", ha="center", va="center", transform=ax.transAxes)
            continue
        ok = rows["feasible"].fillna(False).astype(bool)
        ax.scatter(rows.loc[ok, x_key], rows.loc[ok, performance], c=FEASIBLE_COLOUR, label="feasible trial", zorder=3)
        ax.scatter(rows.loc[~ok, x_key], rows.loc[~ok, performance], c=INFEASIBLE_COLOUR, marker="x",
                   label="infeasible trial", zorder=3)
        for _, row in rows.iterrows():
            ax.annotate(str(int(row["number"])), (row[x_key], row[performance]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        if ok.any():
            front = _front(rows.loc[ok, [x_key, performance]].to_numpy(dtype=float))
            ax.step(front[:, 0], front[:, 1], where="post", color=FEASIBLE_COLOUR, alpha=0.6, label="feasible front")
        if baseline and x_key in baseline and performance in baseline:
            ax.scatter([baseline[x_key]], [baseline[performance]], marker="*", s=180, c="black", label="baseline", zorder=4)
        _shade_feasible(ax, _bound(bounds, x_key, upper=True), _bound(bounds, performance, upper=False))
        ax.set_xlabel(f"{x_key} ({keys.METRICS[x_key].unit}, lower is better)")
        ax.set_ylabel(f"{performance} ({keys.METRICS[performance].unit})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle("Search trials: accuracy against cost (shaded: the feasible region of the plotted bounds)")
    return fig


def _shade_feasible(ax, x_max: float | None, y_min: float | None) -> None:
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    right = x1 if x_max is None else min(x_max, x1)
    bottom = y0 if y_min is None else max(y_min, y0)
    if x_max is None and y_min is None:
        return  # no bound on these axes: everything plotted is in the region
    if right > x0 and bottom < y1:
        ax.fill_between([x0, right], bottom, y1, color=REGION_COLOUR, alpha=0.12, label="feasible region", zorder=1)
    if x_max is not None:
        ax.axvline(x_max, color=REGION_COLOUR, linestyle="--", linewidth=1)
    if y_min is not None:
        ax.axhline(y_min, color=REGION_COLOUR, linestyle="--", linewidth=1)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)


def history_plot(frame: pd.DataFrame, objectives: Sequence[str], directions: Sequence[str]) -> Figure:
    """Each objective by trial number (feasible filled, infeasible crossed) and the best feasible so far."""
    fig = Figure(figsize=(7, 3.6 * len(objectives)), layout="constrained")
    axes = fig.subplots(len(objectives), 1, squeeze=False)[:, 0]
    rows = frame[frame["state"] == "COMPLETE"].sort_values("number")
    for ax, metric, direction in zip(axes, objectives, directions):
        ok = rows["feasible"].fillna(False).astype(bool)
        ax.scatter(rows.loc[ok, "number"], rows.loc[ok, metric], c=FEASIBLE_COLOUR, label="feasible")
        ax.scatter(rows.loc[~ok, "number"], rows.loc[~ok, metric], c=INFEASIBLE_COLOUR, marker="x", label="infeasible")
        best, xs, ys = None, [], []
        for number, value, feasible in zip(rows["number"], rows[metric], ok):
            if feasible and math.isfinite(value):
                better = best is None or (value > best if direction == "maximize" else value < best)
                best = value if better else best
            if best is not None:
                xs.append(number)
                ys.append(best)
        if xs:
            ax.step(xs, ys, where="post", color="black", label="best feasible so far")
        ax.set_xlabel("trial")
        ax.set_ylabel(f"{metric} ({direction})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Optimisation history")
    return fig


def importance_plot(importances: Mapping[str, Mapping[str, float]]) -> Figure:
    """Optuna's parameter importances, one panel per objective (``{objective: {param: share}}``)."""
    fig = Figure(figsize=(7, 0.5 + 0.35 * max(len(v) for v in importances.values()) * len(importances) + 1),
                 layout="constrained")
    axes = fig.subplots(len(importances), 1, squeeze=False)[:, 0]
    for ax, (objective, values) in zip(axes, importances.items()):
        names = list(values)[::-1]
        ax.barh(names, [values[n] for n in names], color=FEASIBLE_COLOUR)
        ax.set_xlabel(f"importance for {objective} (share, fANOVA)")
    fig.suptitle("Parameter importances")
    return fig


def policy_plot(table: pd.DataFrame, title: str) -> Figure:
    """AMC's figure: the channel pruning ratio of each layer group of the best trial's policy."""
    fig = Figure(figsize=(max(5, 0.9 * len(table) + 2), 3.8), layout="constrained")
    ax = fig.subplots()
    ax.bar(table["group"], table["channel_ratio"], color=FEASIBLE_COLOUR)
    ax.set_ylabel("channels removed (fraction)")
    ax.set_xlabel("layer group")
    ax.set_ylim(0, 1)
    for x, y in zip(table["group"], table["channel_ratio"]):
        ax.annotate(f"{y:.2f}", (x, y), ha="center", xytext=(0, 3), textcoords="offset points", fontsize=8)
    ax.set_title(title)
    return fig
