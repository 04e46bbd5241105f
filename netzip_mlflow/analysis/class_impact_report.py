"""Artifacts of the class-level impact analysis: CSV tables and PNG figures (seed paper 002).

Every function writes one file, creates missing parent folders and returns the
:class:`~pathlib.Path` it wrote. Figures are built on :class:`matplotlib.figure.Figure` objects, not
through ``pyplot``, so they work under the Agg backend (no display), leave no global figure state
behind and need no closing; they are saved with ``bbox_inches="tight"``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from netzip_mlflow.analysis.class_impact import (
    ClassImpact,
    confusion_matrix,
    validate_predictions,
)
from netzip_mlflow.errors import ConfigError, DataError

PathLike = str | os.PathLike[str]

DPI = 150
ANNOTATE_MAX_CLASSES = 20  # above this, confusion-matrix cells carry no numbers
_TITLE_NAME_CHARS = 18  # class names are shortened to this many characters in grid titles


def _target(path: PathLike) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _save(fig: Figure, path: PathLike) -> Path:
    target = _target(path)
    fig.savefig(target, dpi=DPI, bbox_inches="tight", format="png")
    return target


# --------------------------------------------------------------------------------------------------
# CSV tables
# --------------------------------------------------------------------------------------------------


def write_per_class_csv(impact: ClassImpact, path: PathLike) -> Path:
    """Write ``impact.per_class`` (one row per class, columns as in :class:`ClassImpact`) as CSV."""
    target = _target(path)
    impact.per_class.to_csv(target, index=False)
    return target


def write_exemplars_csv(impact: ClassImpact, path: PathLike) -> Path:
    """Write the compression-identified exemplars (one row per sample) as CSV."""
    target = _target(path)
    impact.exemplars.to_csv(target, index=False)
    return target


# --------------------------------------------------------------------------------------------------
# Confusion matrices (seed 002 Figs. 18 and 23)
# --------------------------------------------------------------------------------------------------


def normalized_confusion(cm: np.ndarray) -> np.ndarray:
    """Row-normalised confusion matrix: each true class's row sums to 1 (all 0 if never seen)."""
    totals = cm.sum(axis=1, keepdims=True).astype(float)
    out = np.zeros(cm.shape, dtype=float)
    np.divide(cm, totals, out=out, where=totals != 0)
    return out


def _matrix_layout(num_classes: int) -> tuple[float, float]:
    """Panel size in inches and tick-label font size in points for ``num_classes`` classes.

    Annotated matrices get 0.45 in per cell (at most 9 in); larger ones 0.13 in per cell within
    7-14 in, with tick labels shrinking to about 60% of a cell (4-9 pt).
    """
    if num_classes <= ANNOTATE_MAX_CLASSES:
        panel = max(0.45 * num_classes, 4.5)
    else:
        panel = min(max(0.13 * num_classes, 7.0), 14.0)
    cell_pt = 72.0 * panel / num_classes
    return panel, min(max(0.6 * cell_pt, 4.0), 9.0)


def _draw_matrix(ax: Any, matrix: np.ndarray, names: list[str], title: str, font: float) -> Any:
    image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="Blues", interpolation="nearest")
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, labels=names, rotation=90, fontsize=font)
    ax.set_yticks(ticks, labels=names, fontsize=font)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    ax.set_title(title)
    if len(names) <= ANNOTATE_MAX_CLASSES:
        for (row, col), value in np.ndenumerate(matrix):
            ax.text(
                col,
                row,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=min(font, 8.0),
                color="white" if value > 0.5 else "black",
            )
    return image


def plot_confusion_matrices(
    labels: Any,
    baseline_pred: Any,
    compressed_pred: Any,
    class_names: Sequence[str] | None,
    path: PathLike,
) -> Path:
    """Row-normalised confusion matrices of the baseline and the compressed model, side by side.

    Rows are true classes and sum to 1, so the diagonal is each class's recall (seed 002 Figs. 18,
    23). Up to :data:`ANNOTATE_MAX_CLASSES` classes every cell shows its value; beyond that (e.g.
    100 classes) cells are colour only and tick labels shrink to stay legible.
    """
    labels_arr, preds, names = validate_predictions(
        labels, {"baseline_pred": baseline_pred, "compressed_pred": compressed_pred}, class_names
    )
    num_classes = len(names)
    panel, font = _matrix_layout(num_classes)
    fig = Figure(figsize=(2 * panel + 1.2, panel + 0.8), layout="constrained")
    axes = fig.subplots(1, 2)
    image = None
    for ax, role in zip(axes, ("baseline", "compressed")):
        pred = preds[f"{role}_pred"]
        accuracy = float(np.mean(pred == labels_arr))
        matrix = normalized_confusion(confusion_matrix(labels_arr, pred, num_classes))
        title = f"{role.capitalize()} (top-1 {accuracy:.1%})"
        image = _draw_matrix(ax, matrix, names, title, font)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="Fraction of the true class")
    fig.suptitle("Normalised confusion matrices (each row sums to 1)")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------
# Exemplar grid (seed 002 Fig. 4)
# --------------------------------------------------------------------------------------------------


def _as_image_array(images: Any) -> np.ndarray:
    if hasattr(images, "detach"):
        images = images.detach().cpu().numpy()
    array = np.asarray(images, dtype=float)
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise DataError(
            f"images must be an N x C x H x W array with C = 1 or 3, got shape {array.shape} "
            "(for N x H x W x C data use images.permute(0, 3, 1, 2) or np.moveaxis(images, -1, 1))"
        )
    return array


def display_image(image: np.ndarray) -> np.ndarray:
    """One C x H x W image scaled to [0, 1] by its own min and max, as H x W (C=1) or H x W x 3."""
    low, high = float(np.min(image)), float(np.max(image))
    scaled = (image - low) / (high - low) if high > low else np.zeros_like(image)
    return scaled[0] if scaled.shape[0] == 1 else np.transpose(scaled, (1, 2, 0))


def _short(name: str) -> str:
    return name if len(name) <= _TITLE_NAME_CHARS else name[: _TITLE_NAME_CHARS - 1] + "…"


def _exemplar_title(row: Any, names: list[str] | None) -> str:
    def name(column: str, fallback: str) -> str:
        return _short(names[int(row[column])] if names is not None else str(row[fallback]))

    label = int(row["label"])
    mark = {True: "✓", False: "✗"}
    return "\n".join(
        (
            f"#{int(row['index'])} label: {name('label', 'label_name')}",
            f"baseline: {name('baseline_pred', 'baseline_name')} "
            f"{mark[int(row['baseline_pred']) == label]}",
            f"compressed: {name('compressed_pred', 'compressed_name')} "
            f"{mark[int(row['compressed_pred']) == label]}{_confidence(row)}",
        )
    )


def _confidence(row: Any) -> str:
    value = row.get("compressed_confidence") if hasattr(row, "get") else None
    return "" if value is None or value != value else f" ({float(value):.0%})"


def plot_exemplar_grid(
    images: Any,
    impact: ClassImpact,
    class_names: Sequence[str] | None,
    path: PathLike,
    max_items: int = 16,
) -> Path:
    """Grid of the first ``max_items`` compression-identified exemplars (seed 002 Fig. 4).

    The evaluator orders the exemplars most confident flip first (its ``compressed_confidence``
    column, shown in the titles), so the grid shows the most informative ones.

    ``images`` holds every evaluated sample (N x C x H x W, C = 1 or 3, any float range), in the
    order the predictions were made, so that ``impact.exemplars["index"]`` selects them; or, for
    large datasets, a mapping from sample index to that one C x H x W image. Each image
    is min-max scaled for display; its title gives the sample index, the true label, and the
    baseline and compressed predictions with a check or cross for right or wrong. ``class_names``
    overrides the names stored in ``impact``.
    """
    if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1:
        raise ConfigError("max_items", f"must be a positive integer, got {max_items!r}")
    chosen = impact.exemplars.head(max_items)
    if isinstance(images, Mapping):
        array = {int(i): _as_image_array(np.asarray(img)[None])[0] for i, img in images.items()}
        absent = [int(i) for i in chosen["index"] if int(i) not in array]
        if absent:
            raise DataError(f"no image given for exemplar indices {absent[:5]}; pass them in the mapping")
    else:
        array = _as_image_array(images)
        if len(chosen) and int(chosen["index"].max()) >= len(array):
            raise DataError(
                f"exemplar index {int(chosen['index'].max())} is beyond the {len(array)} images given; "
                "pass all evaluated images in the order they were predicted"
            )
    names = [str(n) for n in class_names] if class_names is not None else None
    if len(chosen) == 0:
        fig = Figure(figsize=(4.0, 1.5))
        message = "No compression-identified exemplars:\nthe models agree on every sample"
        fig.text(0.5, 0.5, message, ha="center", va="center")
        return _save(fig, path)
    cols = min(4, len(chosen))
    rows = math.ceil(len(chosen) / cols)
    fig = Figure(figsize=(2.3 * cols, 2.9 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, (_, row) in zip(axes, chosen.iterrows()):
        shown = display_image(array[int(row["index"])])
        ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0.0, vmax=1.0)
        ax.set_title(_exemplar_title(row, names), fontsize=8, loc="left")
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(f"Compression-identified exemplars ({len(chosen)} of {len(impact.exemplars)})")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------
# Impact against sparsity (seed 002 Figs. 7, 8, 25)
# --------------------------------------------------------------------------------------------------


def _as_series(values: Any, name: str) -> list[np.ndarray]:
    """One 1-D float array per technique from a flat sequence (one technique) or nested ones."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    if isinstance(values, np.ndarray) and values.ndim <= 2:
        rows = [values] if values.ndim == 1 else list(values)
    elif isinstance(values, Sequence) and values and not np.isscalar(values[0]):
        rows = list(values)
    else:
        rows = [values]
    series = [np.asarray(row, dtype=float) for row in rows]
    if any(s.ndim != 1 or s.size == 0 for s in series):
        raise DataError(
            f"{name} must be a non-empty list of numbers, or one such list per technique"
        )
    return series


def plot_impact_vs_sparsity(
    sparsities: Any,
    impacted_classes: Any,
    impacted_images: Any,
    path: PathLike,
    technique_names: Sequence[str] | None = None,
    x_label: str = "Sparsity (fraction of weights that are zero)",
) -> Path:
    """Impacted classes and impacted images against sparsity, one line per technique.

    Seed 002 Figs. 7, 8 and 25. Each argument is a list of numbers (one technique) or a list of such
    lists (one per technique); one shared list of sparsities (fractions 0-1 of zero weights) may
    serve all techniques. Points are drawn in order of sparsity.
    """
    classes = _as_series(impacted_classes, "impacted_classes")
    images = _as_series(impacted_images, "impacted_images")
    xs = _as_series(sparsities, "sparsities")
    if len(xs) == 1:
        xs = xs * len(classes)
    if not len(xs) == len(classes) == len(images):
        raise DataError(
            f"got {len(xs)} sparsity series, {len(classes)} impacted-class series and "
            f"{len(images)} impacted-image series; give one of each per technique"
        )
    names = list(technique_names) if technique_names is not None else None
    if names is not None and len(names) != len(classes):
        raise DataError(f"technique_names has {len(names)} names for {len(classes)} techniques")
    for i, (x, c, m) in enumerate(zip(xs, classes, images)):
        if not len(x) == len(c) == len(m):
            raise DataError(
                f"technique {i}: {len(x)} sparsities, {len(c)} impacted-class counts and "
                f"{len(m)} impacted-image counts; they must match one to one"
            )
    fig = Figure(figsize=(10.0, 4.0), layout="constrained")
    ax_classes, ax_images = fig.subplots(1, 2)
    for i, (x, c, m) in enumerate(zip(xs, classes, images)):
        order = np.argsort(x, kind="stable")
        label = names[i] if names is not None else None
        ax_classes.plot(x[order], c[order], marker="o", label=label)
        ax_images.plot(x[order], m[order], marker="o", label=label)
    for ax, what in ((ax_classes, "Impacted classes"), (ax_images, "Impacted images")):
        ax.set_xlabel(x_label)
        ax.set_ylabel(what)
        ax.set_title(f"{what} against sparsity")
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if names is not None:
            ax.legend(fontsize=8)
    return _save(fig, path)
