"""Class-level impact of compression: the classes and images a compressed model treats differently.

Two detectors, both comparing a baseline model with its compressed version on the same labelled
data:

* :func:`class_impact` -- the **single-model pipeline** of seed paper 002 (Hooker S., "Rethinking
  Compression within Deep Neural Networks", 2020, section IX.vii, steps 1-7). One baseline and one
  compressed model; a class is impacted when it crosses the standard-deviation boundary of per-class
  accuracy around the model accuracy, in either direction.
* :func:`class_impact_population` -- the **population** method of Hooker et al. ("What Do Compressed
  Deep Neural Networks Forget?", arXiv:1911.05248): several independently trained baselines and
  compressed models (seeds); a class is impacted when a two-tailed Welch t-test on its accuracy,
  normalised by the model accuracy, gives ``p < alpha`` (reference code: google-research
  ``pruning_identified_exemplars/per_class_accuracy/gen_tstatistic.py``).

Both also report Hooker et al.'s *normalised recall difference* per class,
``(recall_c' - acc') - (recall_c - acc)``: the change of a class's recall relative to the change of
the model's top-1 accuracy (primes mark the compressed model). It is exactly the change of the
class's deviation from the model accuracy used in seed 002's step 7.

All accuracies, recalls, precisions, F1 scores, deviations and boundaries are fractions in [0, 1]
(not percent); supports and image counts are numbers of samples.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from netzip_mlflow.errors import ConfigError, DataError
from netzip_mlflow.tracking import keys

METHOD_SINGLE = "single-model pipeline"
METHOD_POPULATION = "population (Welch t-test)"

DEFAULT_NRD_THRESHOLD = 0.05
"""Default ``|normalised recall difference|`` above which a class counts as impacted by that rule.

Neither seed 002 nor Hooker et al. give a threshold for the single-model normalised recall
difference (Hooker et al. decide significance with the Welch t-test across populations), so this is
a setting of ours: 0.05 means the class moved 5 percentage points more than the model accuracy did.
"""

DEFAULT_ALPHA = 0.05
"""Significance level of the per-class Welch t-test (Hooker et al. use p < 0.05)."""

Boundary = Literal["baseline", "per_model"]

IMPROVED = "improved"
DEGRADED = "degraded"
UNCHANGED = "unchanged"

EXEMPLAR_COLUMNS: tuple[str, ...] = (
    "index",
    "label",
    "label_name",
    "baseline_pred",
    "baseline_name",
    "compressed_pred",
    "compressed_name",
)

_SCORES = ("precision", "recall", "f1")
_TOLERANCE = 1e-12  # changes smaller than this are floating-point noise, not a direction


# --------------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # eq=False: DataFrame fields have no single truth value
class ClassImpact:
    """Class-level comparison of a compressed model with its baseline.

    Attributes:
        method: :data:`METHOD_SINGLE` or :data:`METHOD_POPULATION`.
        per_class: one row per class. Columns: ``class_index``, ``class_name``, ``support``
            (samples), ``baseline_/compressed_`` ``precision``, ``recall``, ``f1`` and their
            ``*_diff`` (compressed - baseline); ``baseline_accuracy``/``compressed_accuracy``
            (per-class accuracy = recall); ``baseline_deviation``/``compressed_deviation`` (class
            accuracy minus model accuracy; NaN for a class without samples);
            ``normalized_recall_diff`` (compressed deviation - baseline deviation);
            ``impacted_nrd`` (``|normalized_recall_diff| > nrd_threshold``); ``direction``;
            ``deviation_images`` (``|normalized_recall_diff| x support``, seed 002 step 7 per
            class). The single-model
            pipeline adds ``baseline_outside``/``compressed_outside`` (the sets x and y of steps 3
            and 5) and ``impacted_std`` (step 6); the population method adds ``t_statistic``,
            ``p_value``, ``welch_testable`` (False where neither group varies across seeds: no test)
            and ``impacted_welch``. ``impacted`` is the decision of ``method``.
        exemplars: compression-identified exemplars, one row per sample whose top-1 prediction
            differs between the baseline and the compressed model (for the population method: whose
            modal prediction across seeds differs). Columns :data:`EXEMPLAR_COLUMNS`; ``index`` is
            the position of the sample in the evaluated data.
        impacted_classes: number of classes with ``impacted`` true (``cie/impacted_classes``).
        impacted_images: ``cie/impacted_images``. Single-model pipeline: seed 002 step 7, the sum
            over all classes of ``|change of deviation| x support`` (a real number of images).
            Population: the number of exemplars (Hooker et al.'s count of PIEs).
        baseline_accuracy, compressed_accuracy: top-1 accuracy (fraction; mean over seeds for the
            population method).
        baseline_boundary: standard deviation of per-class accuracy around the baseline accuracy
            (step 2); ``None`` for the population method.
        compressed_boundary: the boundary applied to the compressed model in step 5; equals
            ``baseline_boundary`` unless ``boundary="per_model"``; ``None`` for the population
            method.
        nrd_threshold: threshold of the normalised recall difference rule.
        alpha: significance level of the Welch t-test; ``None`` for the single-model pipeline.

    ``direction`` says which way a class moved *relative to the model*: ``"improved"`` when its
    normalised recall difference is positive (its accuracy rose more, or fell less, than the model
    accuracy), ``"degraded"`` when negative, ``"unchanged"`` when zero. An impacted class that
    leaves the boundary from above, or enters it from below, therefore reads ``"degraded"`` /
    ``"improved"`` as one would expect; :attr:`degraded` and :attr:`improved` list the impacted
    ones.
    """

    method: str
    per_class: pd.DataFrame
    exemplars: pd.DataFrame
    impacted_classes: int
    impacted_images: float
    baseline_accuracy: float
    compressed_accuracy: float
    baseline_boundary: float | None
    compressed_boundary: float | None
    nrd_threshold: float
    alpha: float | None = None

    @property
    def impacted_names(self) -> list[str]:
        """Names of the impacted classes, in class order."""
        return self.per_class.loc[self.per_class["impacted"], "class_name"].tolist()

    @property
    def degraded(self) -> list[str]:
        """Names of the impacted classes that moved down relative to the model accuracy."""
        return self._impacted_in(DEGRADED)

    @property
    def improved(self) -> list[str]:
        """Names of the impacted classes that moved up relative to the model accuracy."""
        return self._impacted_in(IMPROVED)

    def _impacted_in(self, direction: str) -> list[str]:
        rows = self.per_class["impacted"] & (self.per_class["direction"] == direction)
        return self.per_class.loc[rows, "class_name"].tolist()

    def as_metrics(self) -> dict[str, float]:
        """``{cie/impacted_classes: count, cie/impacted_images: images}`` for MLflow."""
        return {
            keys.CIE_CLASSES: float(self.impacted_classes),
            keys.CIE_IMAGES: float(self.impacted_images),
        }


# --------------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------------


def as_label_array(values: Any, name: str) -> np.ndarray:
    """Class indices as a 1-D ``int64`` numpy array; accepts numpy arrays, torch tensors and lists.

    Raises :class:`DataError` for anything that is not a non-empty 1-D array of integers.
    """
    if hasattr(values, "detach"):  # a torch tensor, without importing torch
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        hint = " (pass class indices, e.g. logits.argmax(1), not scores)" if array.ndim == 2 else ""
        raise DataError(
            f"{name} must be a 1-D array of class indices, got shape {array.shape}{hint}"
        )
    if array.size == 0:
        raise DataError(f"{name} is empty: evaluate at least one sample")
    if not np.issubdtype(array.dtype, np.integer):
        raise DataError(
            f"{name} must hold integer class indices, got dtype {array.dtype} "
            "(convert with .long() for a tensor or .astype(int) for an array)"
        )
    return array.astype(np.int64, copy=False)


def _resolve_classes(
    arrays: dict[str, np.ndarray], class_names: Sequence[str] | None, num_classes: int | None
) -> list[str]:
    """The class names, checking every array's values lie in ``[0, num_classes)``."""
    if num_classes is not None and (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, (int, np.integer))
        or num_classes < 1
    ):
        raise ConfigError("num_classes", f"must be a positive integer, got {num_classes!r}")
    if class_names is not None:
        class_names = [str(n) for n in class_names]
        if num_classes is not None and len(class_names) != num_classes:
            raise DataError(
                f"class_names has {len(class_names)} names but num_classes is {num_classes}; "
                "give one name per class"
            )
        num_classes = len(class_names)
    if num_classes is None:
        num_classes = int(max(a.max() for a in arrays.values())) + 1
    for name, array in arrays.items():
        low, high = int(array.min()), int(array.max())
        if low < 0 or high >= num_classes:
            raise DataError(
                f"{name} holds class indices in [{low}, {high}] but there are {num_classes} "
                f"classes (valid indices 0..{num_classes - 1}); check num_classes / class_names"
            )
    return class_names if class_names is not None else [str(i) for i in range(num_classes)]


def validate_predictions(
    labels: Any,
    predictions: dict[str, Any],
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    """Check labels and named prediction arrays; return them as int64 arrays with the class names.

    ``predictions`` maps a name used in error messages (e.g. ``"baseline_pred"``) to an array of the
    same length as ``labels``. Raises :class:`DataError` on empty, non-1-D, non-integer, mismatched
    or out-of-range inputs.
    """
    label_array = as_label_array(labels, "labels")
    arrays = {"labels": label_array}
    for name, values in predictions.items():
        array = as_label_array(values, name)
        if array.shape != label_array.shape:
            raise DataError(
                f"{name} has {array.size} predictions but labels has {label_array.size}; "
                "both must come from the same samples in the same order"
            )
        arrays[name] = array
    names = _resolve_classes(arrays, class_names, num_classes)
    del arrays["labels"]
    return label_array, arrays, names


def _check_threshold(field: str, value: float, upper: float | None = None) -> None:
    if not (math.isfinite(value) and value > 0 and (upper is None or value < upper)):
        bound = f"in (0, {upper})" if upper is not None else "positive"
        raise ConfigError(field, f"must be a finite number {bound}, got {value!r}")


# --------------------------------------------------------------------------------------------------
# Per-class scores
# --------------------------------------------------------------------------------------------------


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``cm[true, predicted]`` as an int64 ``num_classes x num_classes`` array."""
    flat = labels * num_classes + predictions
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise ratio, 0 where the denominator is 0 (scikit-learn's ``zero_division=0``)."""
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    out = np.zeros_like(numerator)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def scores_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall and F1 (fractions; 0 where undefined) from a confusion matrix."""
    true_positive = np.diag(cm).astype(float)
    precision = _divide(true_positive, cm.sum(axis=0))
    recall = _divide(true_positive, cm.sum(axis=1))
    f1 = _divide(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1}


def _accuracy(cm: np.ndarray) -> float:
    return float(np.trace(cm) / cm.sum())


# --------------------------------------------------------------------------------------------------
# Shared table
# --------------------------------------------------------------------------------------------------


def _direction(change: np.ndarray) -> np.ndarray:
    """``improved`` / ``degraded`` / ``unchanged`` from the sign of a change (NaN -> unchanged)."""
    change = np.nan_to_num(change, nan=0.0)
    return np.where(
        change > _TOLERANCE, IMPROVED, np.where(change < -_TOLERANCE, DEGRADED, UNCHANGED)
    )


def _deviation(recall: np.ndarray, accuracy: float, support: np.ndarray) -> np.ndarray:
    """Class accuracy minus model accuracy (step 3); NaN for classes without samples."""
    return np.where(support > 0, recall - accuracy, np.nan)


def _comparison_table(
    names: list[str],
    support: np.ndarray,
    baseline: dict[str, np.ndarray],
    compressed: dict[str, np.ndarray],
    accuracies: tuple[float, float],
    nrd_threshold: float,
) -> pd.DataFrame:
    """Columns common to both methods: scores, their differences, deviations and the NRD rule."""
    table = pd.DataFrame(
        {"class_index": np.arange(len(names)), "class_name": names, "support": support}
    )
    for role, scores in (("baseline", baseline), ("compressed", compressed)):
        for score in _SCORES:
            table[f"{role}_{score}"] = scores[score]
    for score in _SCORES:
        table[f"{score}_diff"] = compressed[score] - baseline[score]
    # Per-class accuracy of a classifier is the recall of that class.
    table["baseline_accuracy"] = baseline["recall"]
    table["compressed_accuracy"] = compressed["recall"]
    base_dev = _deviation(baseline["recall"], accuracies[0], support)
    comp_dev = _deviation(compressed["recall"], accuracies[1], support)
    nrd = comp_dev - base_dev
    table["baseline_deviation"] = base_dev
    table["compressed_deviation"] = comp_dev
    # Hooker et al.: class recall change normalised by (here: net of) the overall accuracy change.
    table["normalized_recall_diff"] = nrd
    table["impacted_nrd"] = np.abs(np.nan_to_num(nrd)) > nrd_threshold
    table["direction"] = _direction(nrd)
    # Seed 002 step 7, per class: |change of deviation| x images in the class.
    table["deviation_images"] = np.abs(np.nan_to_num(nrd)) * support
    return table


# --------------------------------------------------------------------------------------------------
# Single-model pipeline (seed 002)
# --------------------------------------------------------------------------------------------------


def std_boundary(deviation: np.ndarray) -> float:
    """Seed 002 step 2: standard deviation of per-class accuracy around the model accuracy.

    ``sqrt(mean_c (acc_c - acc)^2)`` over the classes that have samples (NaN deviations skipped);
    with balanced classes it is the population standard deviation (ddof 0) of the class accuracies.
    """
    return float(np.sqrt(np.nanmean(np.square(deviation))))


def outside_boundary(deviation: np.ndarray, boundary: float) -> np.ndarray:
    """Seed 002 step 3: classes whose ``|deviation| > boundary`` (strictly); NaN -> False."""
    return np.abs(np.nan_to_num(deviation, nan=0.0)) > boundary


def class_impact(
    labels: Any,
    baseline_pred: Any,
    compressed_pred: Any,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    *,
    boundary: Boundary = "baseline",
    nrd_threshold: float = DEFAULT_NRD_THRESHOLD,
) -> ClassImpact:
    """Class-level impact of compression by seed 002's single-model pipeline.

    Args:
        labels: true class index of each sample, 1-D integers (numpy, torch or list).
        baseline_pred: top-1 predicted class of the baseline model for each sample.
        compressed_pred: top-1 predicted class of the compressed model for each sample.
        class_names: one name per class (defaults to ``"0"``, ``"1"``, ...).
        num_classes: number of classes; defaults to ``len(class_names)`` or the largest index + 1.
        boundary: ``"baseline"`` (default) applies the uncompressed model's standard deviation as
            the boundary before and after compression, as steps 2 and 4 word it ("the standard
            deviation for the uncompressed model ... used as a significant class boundary"; the
            classes "should remain above the standard deviation boundary before and after
            compression").
            ``"per_model"`` reads step 5's "the same process is applied again" as recomputing the
            standard deviation for the compressed model and using that after compression.
        nrd_threshold: ``|normalised recall difference|`` above which the NRD rule flags a class
            (fraction; see :data:`DEFAULT_NRD_THRESHOLD`).

    The pipeline (seed 002, section IX.vii):

    1. model accuracy ``acc`` and per-class accuracy ``acc_c`` of the baseline;
    2. the boundary ``s`` = standard deviation of ``acc_c`` around ``acc`` (:func:`std_boundary`);
    3. ``x`` = classes with ``|acc_c - acc| > s``;
    4. those classes are expected to stay outside the boundary after compression;
    5. the same for the compressed model (its own ``acc'``, ``acc_c'``): ``y`` = classes with
       ``|acc_c' - acc'|`` above the boundary;
    6. impacted classes = ``x - y`` (left the boundary) plus ``y - x`` (crossed it);
    7. impacted images = sum over *all* classes of ``|(acc_c' - acc') - (acc_c - acc)| x n_c``
       (seed 002: "class A deviates 3% before compression and then 1% after compression. Therefore
       the number of impacted images constitutes as 2% of the total images contained within that
       class"). Deviations are signed, so a class that swings from +3% to -1% counts 4%.

    Which way each impacted class moved is in ``per_class["direction"]`` and in
    :attr:`ClassImpact.degraded` / :attr:`ClassImpact.improved` (see :class:`ClassImpact`).
    The exemplars are the samples whose top-1 prediction differs between the two models.
    """
    if boundary not in ("baseline", "per_model"):
        raise ConfigError(
            "boundary", f"unknown value {boundary!r}", "use 'baseline' or 'per_model'"
        )
    _check_threshold("nrd_threshold", nrd_threshold)
    labels_arr, preds, names = validate_predictions(
        labels,
        {"baseline_pred": baseline_pred, "compressed_pred": compressed_pred},
        class_names,
        num_classes,
    )
    base, comp = preds["baseline_pred"], preds["compressed_pred"]
    n = len(names)
    cm_base, cm_comp = confusion_matrix(labels_arr, base, n), confusion_matrix(labels_arr, comp, n)
    accuracies = (_accuracy(cm_base), _accuracy(cm_comp))  # step 1 (and step 5 for compressed)
    table = _comparison_table(
        names,
        cm_base.sum(axis=1),
        scores_from_confusion(cm_base),
        scores_from_confusion(cm_comp),
        accuracies,
        nrd_threshold,
    )
    base_boundary = std_boundary(table["baseline_deviation"].to_numpy())  # step 2
    comp_boundary = (
        base_boundary
        if boundary == "baseline"
        else std_boundary(table["compressed_deviation"].to_numpy())
    )
    set_x = outside_boundary(table["baseline_deviation"].to_numpy(), base_boundary)  # step 3
    set_y = outside_boundary(table["compressed_deviation"].to_numpy(), comp_boundary)  # step 5
    table["baseline_outside"] = set_x
    table["compressed_outside"] = set_y
    table["impacted_std"] = set_x != set_y  # step 6: in x but not y, or in y but not x
    table["impacted"] = table["impacted_std"]
    return ClassImpact(
        method=METHOD_SINGLE,
        per_class=table,
        exemplars=_exemplars(labels_arr, base, comp, names),
        impacted_classes=int(table["impacted"].sum()),
        impacted_images=float(table["deviation_images"].sum()),  # step 7
        baseline_accuracy=accuracies[0],
        compressed_accuracy=accuracies[1],
        baseline_boundary=base_boundary,
        compressed_boundary=comp_boundary,
        nrd_threshold=nrd_threshold,
    )


def _exemplars(
    labels: np.ndarray, baseline: np.ndarray, compressed: np.ndarray, names: list[str]
) -> pd.DataFrame:
    """Samples whose (top-1 or modal) prediction differs between baseline and compressed."""
    index = np.flatnonzero(baseline != compressed)
    name_array = np.asarray(names, dtype=object)
    columns = {
        "index": index,
        "label": labels[index],
        "label_name": name_array[labels[index]],
        "baseline_pred": baseline[index],
        "baseline_name": name_array[baseline[index]],
        "compressed_pred": compressed[index],
        "compressed_name": name_array[compressed[index]],
    }
    return pd.DataFrame(columns, columns=list(EXEMPLAR_COLUMNS))


# --------------------------------------------------------------------------------------------------
# Population method (Hooker et al.)
# --------------------------------------------------------------------------------------------------


def modal_prediction(predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Most frequent prediction per sample across seeds (rows); ties go to the largest class index.

    ``predictions`` has shape ``(seeds, samples)``. The tie rule follows Hooker et al.'s reference
    code (``pandas.Series.mode().max()`` in ``pie_dataset_gen/aggregate_predictions.py``).
    """
    seeds, samples = predictions.shape
    dtype = np.uint8 if seeds < 256 else np.uint32
    counts = np.zeros((samples, num_classes), dtype=dtype)
    rows = np.arange(samples)
    for seed_pred in predictions:
        counts[rows, seed_pred] += 1
    return (num_classes - 1 - np.argmax(counts[:, ::-1], axis=1)).astype(np.int64)


def _seed_scores(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-seed scores stacked as ``(seeds, classes)`` arrays, and the per-seed accuracies."""
    matrices = [confusion_matrix(labels, pred, num_classes) for pred in predictions]
    per_seed = [scores_from_confusion(cm) for cm in matrices]
    stacked = {s: np.stack([scores[s] for scores in per_seed]) for s in _SCORES}
    return stacked, np.array([_accuracy(cm) for cm in matrices])


def welch_testable(baseline: np.ndarray, compressed: np.ndarray) -> np.ndarray:
    """Per column of two ``(seeds, classes)`` arrays: whether either group varies across seeds.

    With no variance in both, Welch's standard error is 0 and the test is undefined (scipy returns
    an infinite ``t`` with ``p = 0`` whenever the means differ, which is no evidence of anything).
    """
    return (np.var(baseline, axis=0, ddof=1) > 0) | (np.var(compressed, axis=0, ddof=1) > 0)


def welch_test(baseline: np.ndarray, compressed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-tailed Welch t-test per column of two ``(seeds, classes)`` arrays: ``(t, p)``.

    ``t`` is positive when the baseline mean is larger. Columns with no variance in either group
    give NaN (equal means) or an infinite ``t`` with ``p = 0``, as :func:`scipy.stats.ttest_ind`.
    """
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(baseline, compressed, axis=0, equal_var=False)
    return np.asarray(result.statistic, dtype=float), np.asarray(result.pvalue, dtype=float)


def _stack_runs(
    labels: Any,
    runs: dict[str, Sequence[Any]],
    class_names: Sequence[str] | None,
    num_classes: int | None,
) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    """Validate several runs per role: ``(labels, {role: (seeds, samples) array}, names)``."""
    flat: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for role, preds in runs.items():
        if getattr(preds, "ndim", None) == 2:  # a (seeds, samples) array or tensor
            preds = list(preds)
        if isinstance(preds, (str, bytes)) or not isinstance(preds, Sequence) or len(preds) < 2:
            got = f"{len(preds)} array(s)" if isinstance(preds, Sequence) else type(preds).__name__
            raise DataError(
                f"{role} must be a list of at least 2 prediction arrays (one per seed) for a "
                f"t-test, got {got}; with a single model use class_impact()"
            )
        counts[role] = len(preds)
        for i, pred in enumerate(preds):
            flat[f"{role}[{i}]"] = pred
    labels_arr, arrays, names = validate_predictions(labels, flat, class_names, num_classes)
    stacked = {
        role: np.stack([arrays[f"{role}[{i}]"] for i in range(count)])
        for role, count in counts.items()
    }
    return labels_arr, stacked, names


def class_impact_population(
    labels: Any,
    baseline_preds: Sequence[Any],
    compressed_preds: Sequence[Any],
    alpha: float = DEFAULT_ALPHA,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    *,
    normalize: bool = True,
    nrd_threshold: float = DEFAULT_NRD_THRESHOLD,
) -> ClassImpact:
    """Class-level impact across populations of models (Hooker et al.'s Welch t-test).

    Args:
        labels: true class of each sample (1-D integers), shared by every run.
        baseline_preds: top-1 predictions of each baseline model (one array per seed, at least 2).
        compressed_preds: top-1 predictions of each compressed model (at least 2).
        alpha: significance level; a class is impacted when the two-tailed p-value is below it.
        class_names, num_classes: as in :func:`class_impact`.
        normalize: test the per-class accuracy minus the population's mean top-1 accuracy
            (Hooker et al.: the null hypothesis is that the gap between class and model accuracy
            does not change; their reference code subtracts the mean accuracy of each population).
            ``False`` tests the raw per-class accuracy.
        nrd_threshold: as in :func:`class_impact`, applied to the mean accuracies.

    The per-class scores in ``per_class`` are means over seeds; ``t_statistic`` / ``p_value`` come
    from :func:`scipy.stats.ttest_ind` with ``equal_var=False`` on the per-seed (normalised) class
    accuracies, baseline first. A class whose accuracy does not vary across seeds in either group
    (e.g. recall 1.0 in every model) has no defined Welch statistic: ``welch_testable`` is False,
    ``t_statistic`` / ``p_value`` are NaN and it is never counted as impacted. The exemplars are the samples whose modal prediction across the
    baseline seeds differs from the modal prediction across the compressed seeds (Hooker et al.'s
    pruning/compression identified exemplars), and ``impacted_images`` is their number.
    """
    _check_threshold("alpha", alpha, upper=1.0)
    _check_threshold("nrd_threshold", nrd_threshold)
    labels_arr, runs, names = _stack_runs(
        labels,
        {"baseline_preds": baseline_preds, "compressed_preds": compressed_preds},
        class_names,
        num_classes,
    )
    n = len(names)
    base_scores, base_acc = _seed_scores(labels_arr, runs["baseline_preds"], n)
    comp_scores, comp_acc = _seed_scores(labels_arr, runs["compressed_preds"], n)
    accuracies = (float(base_acc.mean()), float(comp_acc.mean()))
    support = np.bincount(labels_arr, minlength=n)
    table = _comparison_table(
        names,
        support,
        {s: v.mean(axis=0) for s, v in base_scores.items()},
        {s: v.mean(axis=0) for s, v in comp_scores.items()},
        accuracies,
        nrd_threshold,
    )
    shift = accuracies if normalize else (0.0, 0.0)
    t_stat, p_value = welch_test(
        base_scores["recall"] - shift[0], comp_scores["recall"] - shift[1]
    )
    testable = (support > 0) & welch_testable(base_scores["recall"], comp_scores["recall"])
    table["welch_testable"] = testable
    table["t_statistic"] = np.where(testable, t_stat, np.nan)
    table["p_value"] = np.where(testable, p_value, np.nan)
    table["impacted_welch"] = np.nan_to_num(table["p_value"].to_numpy(), nan=1.0) < alpha
    table["impacted"] = table["impacted_welch"]
    exemplars = _exemplars(
        labels_arr,
        modal_prediction(runs["baseline_preds"], n),
        modal_prediction(runs["compressed_preds"], n),
        names,
    )
    return ClassImpact(
        method=METHOD_POPULATION,
        per_class=table,
        exemplars=exemplars,
        impacted_classes=int(table["impacted"].sum()),
        impacted_images=float(len(exemplars)),
        baseline_accuracy=accuracies[0],
        compressed_accuracy=accuracies[1],
        baseline_boundary=None,
        compressed_boundary=None,
        nrd_threshold=nrd_threshold,
        alpha=alpha,
    )
