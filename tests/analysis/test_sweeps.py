"""Sweep series: parameter reduction against the baseline, grouping by technique."""

import pandas as pd
import pytest

from netzip_mlflow.analysis.sweeps import plot_sweep, sweep_series
from netzip_mlflow.tracking import keys


def board():
    return pd.DataFrame(
        {
            "technique": ["prune_unstructured", "prune_unstructured", "prune_unstructured", "ptq"],
            "baseline_run_id": ["b", "b", "b", "b"],
            keys.PARAMS_NONZERO: [300.0, 700.0, 100.0, 1000.0],
            keys.CIE_CLASSES: [3.0, 1.0, 6.0, 0.0],
            keys.CIE_IMAGES: [30.0, 5.0, 80.0, 1.0],
        }
    )


def test_series_sorted_by_reduction_and_single_points_dropped():
    series = sweep_series(board(), {"b": 1000.0})
    assert [s.technique for s in series] == ["prune_unstructured"]
    s = series[0]
    assert s.reduction == pytest.approx([0.3, 0.7, 0.9])
    assert s.impacted_classes == [1.0, 3.0, 6.0]
    assert s.impacted_images == [5.0, 30.0, 80.0]


def test_missing_columns_or_baseline_give_no_series():
    assert sweep_series(board().drop(columns=[keys.CIE_IMAGES]), {"b": 1000.0}) == []
    assert sweep_series(board(), {"other": 1.0}) == []


def test_plot_written(tmp_path):
    path = plot_sweep(sweep_series(board(), {"b": 1000.0}), tmp_path / "sweep.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
