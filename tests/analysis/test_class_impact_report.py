"""Artifacts of the class-level impact analysis: CSV tables and PNG figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from netzip_mlflow.analysis.class_impact import EXEMPLAR_COLUMNS, class_impact
from netzip_mlflow.analysis.class_impact_report import (
    display_image,
    normalized_confusion,
    plot_confusion_matrices,
    plot_exemplar_grid,
    plot_impact_vs_sparsity,
    write_exemplars_csv,
    write_per_class_csv,
)
from netzip_mlflow.errors import ConfigError, DataError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 1000


def synthetic(num_classes: int, samples: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, samples)
    baseline = np.where(rng.random(samples) < 0.85, labels, rng.integers(0, num_classes, samples))
    noise = rng.integers(0, num_classes, samples)
    compressed = np.where(rng.random(samples) < 0.9, baseline, noise)
    return labels, baseline, compressed


@pytest.fixture(scope="module")
def data():
    return synthetic(10, 120)


@pytest.fixture(scope="module")
def impact(data):
    return class_impact(*data, CIFAR10)


# --------------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------------


def test_per_class_csv_has_one_row_per_class(impact, tmp_path) -> None:
    path = write_per_class_csv(impact, tmp_path / "nested" / "per_class.csv")
    table = pd.read_csv(path)
    assert path == tmp_path / "nested" / "per_class.csv"
    assert list(table.columns) == list(impact.per_class.columns)
    assert table["class_name"].tolist() == CIFAR10
    np.testing.assert_allclose(table["recall_diff"], impact.per_class["recall_diff"])
    assert table["impacted"].tolist() == impact.per_class["impacted"].tolist()


def test_exemplars_csv_lists_every_disagreement(data, impact, tmp_path) -> None:
    labels, baseline, compressed = data
    table = pd.read_csv(write_exemplars_csv(impact, tmp_path / "exemplars.csv"))
    assert list(table.columns) == list(EXEMPLAR_COLUMNS)
    np.testing.assert_array_equal(table["index"], np.flatnonzero(baseline != compressed))
    assert table["compressed_name"].tolist() == [CIFAR10[i] for i in table["compressed_pred"]]


# --------------------------------------------------------------------------------------------------
# Confusion matrices
# --------------------------------------------------------------------------------------------------


def test_normalized_confusion_rows_sum_to_one_like_scikit_learn() -> None:
    labels, baseline, _ = synthetic(4, 50)
    labels[labels == 3] = 0  # class 3 never occurs: its row stays 0
    counts = sk_confusion_matrix(labels, baseline, labels=[0, 1, 2, 3])
    ours = normalized_confusion(counts)
    with np.errstate(invalid="ignore"):
        expected = np.nan_to_num(counts / counts.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(ours, expected)
    np.testing.assert_allclose(ours.sum(axis=1), [1, 1, 1, 0])


def test_confusion_matrices_for_ten_classes(data, tmp_path) -> None:
    path = plot_confusion_matrices(*data, CIFAR10, tmp_path / "cm.png")
    assert_png(path)


def test_confusion_matrices_for_many_classes_without_cell_text(tmp_path) -> None:
    labels, baseline, compressed = synthetic(25, 250)
    path = plot_confusion_matrices(labels, baseline, compressed, None, tmp_path / "cm25.png")
    assert_png(path)


def test_confusion_matrices_reject_mismatched_inputs(tmp_path) -> None:
    with pytest.raises(DataError, match="compressed_pred has 2 predictions"):
        plot_confusion_matrices([0, 1, 1], [0, 1, 1], [0, 1], None, tmp_path / "x.png")


# --------------------------------------------------------------------------------------------------
# Exemplar grid
# --------------------------------------------------------------------------------------------------


def test_display_image_scales_each_image_to_unit_range() -> None:
    rgb = np.arange(2 * 3 * 4 * 5, dtype=float).reshape(2, 3, 4, 5)[1] - 50.0
    shown = display_image(rgb)
    assert shown.shape == (4, 5, 3)
    assert shown.min() == 0.0 and shown.max() == 1.0
    gray = display_image(np.full((1, 4, 5), 7.0))
    assert gray.shape == (4, 5)
    assert not gray.any()


def test_exemplar_grid_for_rgb_tensor_and_grayscale_array(data, impact, tmp_path) -> None:
    images = torch.randn(len(data[0]), 3, 8, 8) * 5 + 2  # any float range
    assert_png(plot_exemplar_grid(images, impact, None, tmp_path / "rgb.png", max_items=5))
    gray = np.random.default_rng(0).random((len(data[0]), 1, 8, 8))
    assert_png(plot_exemplar_grid(gray, impact, CIFAR10, tmp_path / "gray.png", max_items=3))


def test_exemplar_grid_without_exemplars_still_writes_a_figure(data, tmp_path) -> None:
    labels, baseline, _ = data
    agree = class_impact(labels, baseline, baseline, CIFAR10)
    images = np.zeros((len(labels), 1, 8, 8))
    assert_png(plot_exemplar_grid(images, agree, None, tmp_path / "none.png"))


@pytest.mark.parametrize(
    ("images", "max_items", "error", "message"),
    [
        (np.zeros((120, 8, 8, 3)), 4, DataError, "N x C x H x W"),
        (np.zeros((5, 3, 8, 8)), 100, DataError, "beyond the 5 images"),
        (np.zeros((120, 3, 8, 8)), 0, ConfigError, "max_items"),
    ],
)
def test_exemplar_grid_rejects_bad_input(
    impact, tmp_path, images, max_items, error, message
) -> None:
    with pytest.raises(error, match=message):
        plot_exemplar_grid(images, impact, None, tmp_path / "x.png", max_items=max_items)


# --------------------------------------------------------------------------------------------------
# Impact against sparsity
# --------------------------------------------------------------------------------------------------


def test_impact_vs_sparsity_one_and_several_techniques(tmp_path) -> None:
    single = plot_impact_vs_sparsity(
        [0.3, 0.5, 0.7, 0.9], [2, 2, 3, 3], [277, 301, 262, 409], tmp_path / "one.png"
    )
    assert_png(single)
    several = plot_impact_vs_sparsity(
        [0.9, 0.3, 0.5],  # shared and unsorted: drawn in order of sparsity
        [[3, 2, 2], [26, 26, 17]],
        [[409.0, 277.0, 301.0], [1286.0, 917.0, 1051.0]],
        tmp_path / "two.png",
        technique_names=["l1", "random"],
    )
    assert_png(several)


@pytest.mark.parametrize(
    ("sparsities", "classes", "images", "names", "message"),
    [
        ([0.3, 0.5], [1, 2, 3], [1, 2, 3], None, "technique 0: 2 sparsities"),
        ([0.3], [[1], [2]], [[1]], None, "1 impacted-image series"),
        ([0.3], [1], [1], ["a", "b"], "2 names for 1 techniques"),
        ([], [], [], None, "non-empty"),
    ],
)
def test_impact_vs_sparsity_rejects_mismatches(
    tmp_path, sparsities, classes, images, names, message
) -> None:
    with pytest.raises(DataError, match=message):
        plot_impact_vs_sparsity(sparsities, classes, images, tmp_path / "x.png", names)
