"""Sweeps: class-level impact against the share of parameters removed (seed 002 Figs. 7, 8, 25).

A study that runs one technique at several strengths (``recipes/sparsity_sweep.yaml``) gets one
figure on its study run: impacted classes and impacted images against the parameter reduction, one
line per technique. The reduction is ``1 - params_nonzero / baseline params_nonzero``, so zeroed
weights (unstructured pruning) and removed channels (structured pruning) are on one axis.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from netzip_mlflow.analysis.class_impact_report import plot_impact_vs_sparsity
from netzip_mlflow.tracking import keys


@dataclass(frozen=True)
class SweepSeries:
    """One technique's points, in order of parameter reduction."""

    technique: str
    reduction: list[float]
    impacted_classes: list[float]
    impacted_images: list[float]


def sweep_series(board: pd.DataFrame, baseline_nonzero: Mapping[str, float], min_points: int = 2) -> list[SweepSeries]:
    """Per technique with at least ``min_points`` evaluated strengths, its impact series.

    Args:
        board: leaderboard rows (``technique``, ``baseline_run_id``, ``size/params_nonzero``,
            ``cie/impacted_classes``, ``cie/impacted_images``).
        baseline_nonzero: baseline run id -> its ``size/params_nonzero``.
    """
    needed = {"technique", "baseline_run_id", keys.PARAMS_NONZERO, keys.CIE_CLASSES, keys.CIE_IMAGES}
    if board.empty or not needed <= set(board.columns):
        return []
    rows = board.dropna(subset=[keys.PARAMS_NONZERO, keys.CIE_CLASSES, keys.CIE_IMAGES])
    base = rows["baseline_run_id"].map(baseline_nonzero)
    rows = rows.assign(reduction=1.0 - rows[keys.PARAMS_NONZERO] / base).dropna(subset=["reduction"])
    series = []
    for technique, group in rows.sort_values("reduction").groupby("technique", sort=True):
        if len(group) >= min_points:
            series.append(
                SweepSeries(
                    str(technique),
                    group["reduction"].tolist(),
                    group[keys.CIE_CLASSES].tolist(),
                    group[keys.CIE_IMAGES].tolist(),
                )
            )
    return series


def plot_sweep(series: list[SweepSeries], path: str | Path) -> Path:
    """Draw :func:`sweep_series`' output with seed 002's impact-vs-sparsity figure."""
    return plot_impact_vs_sparsity(
        [s.reduction for s in series],
        [s.impacted_classes for s in series],
        [s.impacted_images for s in series],
        path,
        technique_names=[s.technique for s in series],
        x_label="Parameter reduction vs baseline\n(non-zero weights zeroed or removed)",
    )
