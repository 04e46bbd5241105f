"""Class-level impact (seed 002 pipeline, Hooker et al. NRD and Welch test) on hand-made data."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics import accuracy_score, precision_recall_fscore_support, recall_score

from netzip_mlflow.analysis.class_impact import (
    DEGRADED,
    EXEMPLAR_COLUMNS,
    IMPROVED,
    METHOD_POPULATION,
    METHOD_SINGLE,
    class_impact,
    class_impact_population,
    modal_prediction,
)
from netzip_mlflow.errors import ConfigError, DataError
from netzip_mlflow.tracking import keys

NAMES = ["A", "B", "C", "D"]
LABELS = np.repeat(np.arange(4), 10)  # four classes of ten samples each


def predictions(correct: list[int], labels: np.ndarray = LABELS) -> np.ndarray:
    """Get the first ``correct[c]`` samples of class ``c`` right, send the rest to class c+1."""
    num_classes = len(correct)
    out = labels.copy()
    for cls, count in enumerate(correct):
        wrong = np.flatnonzero(labels == cls)[count:]
        out[wrong] = (cls + 1) % num_classes
    return out


# Baseline: class accuracies 1.0, 0.8, 0.8, 0.6; model accuracy 0.8; deviations +0.2, 0, 0, -0.2;
# boundary s = sqrt((0.04 + 0 + 0 + 0.04) / 4) = sqrt(0.02) = 0.1414; x = {A, D}.
BASELINE = predictions([10, 8, 8, 6])


def by_name(impact, column: str) -> dict[str, object]:
    return dict(zip(impact.per_class["class_name"], impact.per_class[column]))


# --------------------------------------------------------------------------------------------------
# Single-model pipeline (seed 002 steps 1-7)
# --------------------------------------------------------------------------------------------------


def test_pipeline_class_leaving_from_above_degrades_and_entering_from_above_improves() -> None:
    # Compressed: 0.9, 1.0, 0.7, 0.5; accuracy 31/40 = 0.775; deviations 0.125, 0.225, -0.075,
    # -0.275 -> y = {B, D}. A left x (degraded), B entered y (improved); C changed by -0.1 but stays
    # within the boundary; D stays outside.
    impact = class_impact(LABELS, BASELINE, predictions([9, 10, 7, 5]), NAMES)

    assert impact.method == METHOD_SINGLE
    assert impact.baseline_accuracy == pytest.approx(0.8)
    assert impact.compressed_accuracy == pytest.approx(0.775)
    assert impact.baseline_boundary == pytest.approx(math.sqrt(0.02))
    assert impact.compressed_boundary == impact.baseline_boundary
    assert by_name(impact, "baseline_outside") == {"A": True, "B": False, "C": False, "D": True}
    assert by_name(impact, "compressed_outside") == {"A": False, "B": True, "C": False, "D": True}
    assert impact.impacted_names == ["A", "B"]
    assert impact.degraded == ["A"]
    assert impact.improved == ["B"]
    assert by_name(impact, "direction")["B"] == IMPROVED
    assert by_name(impact, "direction")["C"] == DEGRADED  # moved, but not impacted
    assert impact.impacted_classes == 2
    # Step 7: sum |change of deviation| x 10 = (0.075 + 0.225 + 0.075 + 0.075) x 10.
    assert impact.impacted_images == pytest.approx(4.5)


def test_pipeline_class_entering_from_below_degrades_and_leaving_from_below_improves() -> None:
    # Compressed: 1.0, 0.8, 0.5, 0.8; accuracy 0.775; deviations 0.225, 0.025, -0.275, 0.025
    # -> y = {A, C}. C fell below -s (degraded), D rose into the boundary (improved).
    impact = class_impact(LABELS, BASELINE, predictions([10, 8, 5, 8]), NAMES)

    assert impact.impacted_names == ["C", "D"]
    assert impact.degraded == ["C"]
    assert impact.improved == ["D"]
    assert not by_name(impact, "impacted")["B"]  # 0 -> +0.025: within the boundary
    assert impact.impacted_images == pytest.approx((0.025 + 0.025 + 0.275 + 0.225) * 10)


def test_signed_deviation_swing_counts_both_sides_in_impacted_images() -> None:
    # Class D swings from -0.2 to +0.05: |0.05 - (-0.2)| = 0.25 of its 10 images.
    compressed = predictions([8, 7, 7, 8])  # accuracy 0.75; deviations 0.05, -0.05, -0.05, 0.05
    impact = class_impact(LABELS, BASELINE, compressed, NAMES)
    expected = np.array([0.05 - 0.2, -0.05, -0.05, 0.05 + 0.2])
    np.testing.assert_allclose(impact.per_class["normalized_recall_diff"], expected, atol=1e-12)
    assert impact.impacted_images == pytest.approx(np.abs(expected).sum() * 10)


def test_boundary_per_model_recomputes_the_standard_deviation_after_compression() -> None:
    # Compressed: 1.0, 0.9, 0.6, 0.3; accuracy 0.7; deviations 0.3, 0.2, -0.1, -0.4;
    # own boundary sqrt(0.075) = 0.274. With the baseline boundary 0.141, B (0.2) is outside.
    compressed = predictions([10, 9, 6, 3])
    fixed = class_impact(LABELS, BASELINE, compressed, NAMES)
    per_model = class_impact(LABELS, BASELINE, compressed, NAMES, boundary="per_model")

    assert fixed.impacted_names == ["B"]
    assert per_model.compressed_boundary == pytest.approx(math.sqrt(0.075))
    assert per_model.impacted_names == []
    assert per_model.impacted_classes == 0
    assert per_model.impacted_images == pytest.approx(fixed.impacted_images)


def test_identical_models_impact_nothing() -> None:
    impact = class_impact(LABELS, BASELINE, BASELINE, NAMES)
    assert impact.impacted_classes == 0
    assert impact.impacted_images == 0.0
    assert impact.exemplars.empty
    assert list(impact.exemplars.columns) == list(EXEMPLAR_COLUMNS)
    assert set(impact.per_class["direction"]) == {"unchanged"}


# --------------------------------------------------------------------------------------------------
# Normalised recall difference (Hooker et al.)
# --------------------------------------------------------------------------------------------------


def test_normalized_recall_difference_hand_computed() -> None:
    # Class recall change minus model accuracy change (0.775 - 0.8 = -0.025):
    # A: -0.1 + 0.025, B: 0.2 + 0.025, C: -0.1 + 0.025, D: -0.1 + 0.025.
    compressed = predictions([9, 10, 7, 5])
    impact = class_impact(LABELS, BASELINE, compressed, NAMES, nrd_threshold=0.1)
    np.testing.assert_allclose(
        impact.per_class["normalized_recall_diff"], [-0.075, 0.225, -0.075, -0.075], atol=1e-12
    )
    assert by_name(impact, "impacted_nrd") == {"A": False, "B": True, "C": False, "D": False}
    default = class_impact(LABELS, BASELINE, compressed, NAMES)
    assert default.per_class["impacted_nrd"].all()  # every |NRD| > 0.05


# --------------------------------------------------------------------------------------------------
# Exemplars, per-class scores, metrics
# --------------------------------------------------------------------------------------------------


def test_exemplars_are_exactly_the_disagreement_set() -> None:
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 5, 300)
    baseline = np.where(rng.random(300) < 0.8, labels, rng.integers(0, 5, 300))
    compressed = np.where(rng.random(300) < 0.85, baseline, rng.integers(0, 5, 300))
    names = ["cat", "dog", "emu", "fox", "gnu"]
    ex = class_impact(labels, baseline, compressed, names).exemplars

    expected = np.flatnonzero(baseline != compressed)
    assert len(expected) > 10
    np.testing.assert_array_equal(ex["index"], expected)
    np.testing.assert_array_equal(ex["label"], labels[expected])
    np.testing.assert_array_equal(ex["baseline_pred"], baseline[expected])
    np.testing.assert_array_equal(ex["compressed_pred"], compressed[expected])
    assert ex["compressed_name"].tolist() == [names[i] for i in compressed[expected]]
    assert ex["label_name"].tolist() == [names[i] for i in labels[expected]]


def test_per_class_scores_match_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 6, 200)  # class 6 has no samples
    baseline = rng.integers(0, 7, 200)
    compressed = np.where(rng.random(200) < 0.5, labels, 5)  # class 6 never predicted
    impact = class_impact(labels, baseline, compressed, num_classes=7)
    table = impact.per_class

    for role, pred in (("baseline", baseline), ("compressed", compressed)):
        p, r, f, s = precision_recall_fscore_support(
            labels, pred, labels=list(range(7)), zero_division=0
        )
        np.testing.assert_allclose(table[f"{role}_precision"], p)
        np.testing.assert_allclose(table[f"{role}_recall"], r)
        np.testing.assert_allclose(table[f"{role}_f1"], f)
        np.testing.assert_array_equal(table["support"], s)
        np.testing.assert_allclose(table[f"{role}_accuracy"], r)
    np.testing.assert_allclose(table["f1_diff"], table["compressed_f1"] - table["baseline_f1"])
    assert impact.baseline_accuracy == pytest.approx(accuracy_score(labels, baseline))
    assert math.isnan(table["baseline_deviation"].iloc[6])  # no samples: outside the pipeline
    assert not table["impacted"].iloc[6]
    assert table["class_name"].tolist() == [str(i) for i in range(7)]


def test_as_metrics_uses_the_schema_keys() -> None:
    impact = class_impact(LABELS, BASELINE, predictions([9, 10, 7, 5]), NAMES)
    assert impact.as_metrics() == {keys.CIE_CLASSES: 2.0, keys.CIE_IMAGES: pytest.approx(4.5)}


def test_torch_tensors_give_the_same_result_as_numpy() -> None:
    compressed = predictions([9, 10, 7, 5])
    from_torch = class_impact(
        torch.from_numpy(LABELS), torch.from_numpy(BASELINE), torch.from_numpy(compressed), NAMES
    )
    from_numpy = class_impact(LABELS, BASELINE, compressed, NAMES)
    assert from_torch.per_class.equals(from_numpy.per_class)
    assert from_torch.impacted_images == from_numpy.impacted_images


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "baseline", "compressed", "kwargs", "message"),
    [
        ([0, 1, 2], [0, 1], [0, 1, 2], {}, "baseline_pred has 2 predictions but labels has 3"),
        ([], [], [], {}, "labels is empty"),
        (np.zeros((3, 2), int), [0, 1, 0], [0, 1, 0], {}, r"1-D array .*argmax"),
        ([0, 1, 1], [0.0, 1.0, 1.0], [0, 1, 1], {}, "integer class indices"),
        ([0, 1, 3], [0, 1, 1], [0, 1, 1], {"num_classes": 3}, r"labels holds .*\[0, 3\]"),
        ([0, 1, 1], [0, -1, 1], [0, 1, 1], {}, "baseline_pred holds class indices in"),
        ([0, 1, 1], [0, 1, 1], [0, 1, 2], {"class_names": ["a", "b"]}, "compressed_pred holds"),
        ([0, 1], [0, 1], [0, 1], {"class_names": ["a", "b"], "num_classes": 3}, "one name"),
    ],
)
def test_invalid_inputs_raise_data_errors(labels, baseline, compressed, kwargs, message) -> None:
    with pytest.raises(DataError, match=message):
        class_impact(labels, baseline, compressed, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"boundary": "median"}, "boundary"),
        ({"nrd_threshold": -0.1}, "nrd_threshold"),
        ({"num_classes": 0}, "num_classes"),
    ],
)
def test_invalid_settings_raise_config_errors(kwargs, field) -> None:
    with pytest.raises(ConfigError) as info:
        class_impact([0, 1], [0, 1], [1, 1], **kwargs)
    assert info.value.field == field


# --------------------------------------------------------------------------------------------------
# Population method (Welch t-test)
# --------------------------------------------------------------------------------------------------

POP_LABELS = np.repeat(np.arange(3), 20)
POP_BASELINES = [predictions([18 + s % 2, 15 + s % 3, 16 - s % 2], POP_LABELS) for s in range(5)]
# Compressed seeds lose class 0 badly and keep the others.
POP_COMPRESSED = [predictions([8 + s % 3, 15 + s % 2, 16 - s % 3], POP_LABELS) for s in range(4)]


def per_seed_recall(preds: list[np.ndarray]) -> np.ndarray:
    return np.stack([recall_score(POP_LABELS, p, average=None, labels=[0, 1, 2]) for p in preds])


def mean_accuracy(preds: list[np.ndarray]) -> float:
    return float(np.mean([accuracy_score(POP_LABELS, p) for p in preds]))


def test_welch_p_values_equal_scipy_on_normalized_class_accuracies() -> None:
    impact = class_impact_population(POP_LABELS, POP_BASELINES, POP_COMPRESSED, alpha=0.01)
    base = per_seed_recall(POP_BASELINES) - mean_accuracy(POP_BASELINES)
    comp = per_seed_recall(POP_COMPRESSED) - mean_accuracy(POP_COMPRESSED)
    for cls in range(3):
        expected = stats.ttest_ind(base[:, cls], comp[:, cls], equal_var=False)
        assert impact.per_class["t_statistic"].iloc[cls] == pytest.approx(expected.statistic)
        assert impact.per_class["p_value"].iloc[cls] == pytest.approx(expected.pvalue)
    np.testing.assert_array_equal(impact.per_class["impacted"], impact.per_class["p_value"] < 0.01)
    assert impact.method == METHOD_POPULATION
    assert impact.alpha == 0.01
    assert impact.per_class["impacted"].iloc[0]
    assert impact.degraded[0] == "0"
    assert impact.impacted_classes == int(impact.per_class["impacted"].sum())


def test_welch_without_normalization_tests_raw_class_accuracy() -> None:
    impact = class_impact_population(POP_LABELS, POP_BASELINES, POP_COMPRESSED, normalize=False)
    base, comp = per_seed_recall(POP_BASELINES), per_seed_recall(POP_COMPRESSED)
    expected = stats.ttest_ind(base, comp, axis=0, equal_var=False)
    np.testing.assert_allclose(impact.per_class["p_value"], expected.pvalue)
    np.testing.assert_allclose(impact.per_class["baseline_recall"], base.mean(axis=0))


def test_welch_matches_the_manual_formula_for_one_class() -> None:
    impact = class_impact_population(POP_LABELS, POP_BASELINES, POP_COMPRESSED)
    # Class 1 accuracies per seed: baseline 15, 16, 17, 15, 16 of 20; compressed 15, 16, 15, 16.
    a = np.array([15, 16, 17, 15, 16]) / 20 - mean_accuracy(POP_BASELINES)
    b = np.array([15, 16, 15, 16]) / 20 - mean_accuracy(POP_COMPRESSED)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    p = 2 * stats.t.sf(abs(t), dof)
    assert impact.per_class["t_statistic"].iloc[1] == pytest.approx(t)
    assert impact.per_class["p_value"].iloc[1] == pytest.approx(p)


def test_modal_prediction_breaks_ties_towards_the_largest_class() -> None:
    seeds = np.array([[0, 2, 0], [0, 2, 1], [1, 2, 2], [1, 0, 2]])
    np.testing.assert_array_equal(modal_prediction(seeds, 3), [1, 2, 2])


def test_population_exemplars_are_modal_disagreements() -> None:
    impact = class_impact_population(POP_LABELS, POP_BASELINES, POP_COMPRESSED)
    base_mode = modal_prediction(np.stack(POP_BASELINES), 3)
    comp_mode = modal_prediction(np.stack(POP_COMPRESSED), 3)
    expected = np.flatnonzero(base_mode != comp_mode)
    np.testing.assert_array_equal(impact.exemplars["index"], expected)
    assert impact.impacted_images == len(expected)
    assert impact.as_metrics()[keys.CIE_IMAGES] == float(len(expected))


def test_population_accepts_a_stacked_tensor_per_role() -> None:
    stacked = class_impact_population(
        POP_LABELS, torch.from_numpy(np.stack(POP_BASELINES)), np.stack(POP_COMPRESSED)
    )
    listed = class_impact_population(POP_LABELS, POP_BASELINES, POP_COMPRESSED)
    assert stacked.per_class.equals(listed.per_class)


@pytest.mark.parametrize(
    ("baselines", "compressed", "kwargs", "error", "message"),
    [
        (POP_BASELINES[:1], POP_COMPRESSED, {}, DataError, "at least 2 prediction arrays"),
        (POP_BASELINES, POP_COMPRESSED[0], {}, DataError, "at least 2 prediction arrays"),
        (
            [POP_BASELINES[0], POP_BASELINES[1][:10]],
            POP_COMPRESSED,
            {},
            DataError,
            r"baseline_preds\[1\] has 10 predictions",
        ),
        (POP_BASELINES, POP_COMPRESSED, {"alpha": 1.5}, ConfigError, "alpha"),
    ],
)
def test_population_invalid_inputs(baselines, compressed, kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        class_impact_population(POP_LABELS, baselines, compressed, **kwargs)


def test_a_class_without_variance_in_either_group_is_not_testable() -> None:
    # Class 0 (samples 0-3) is always right in every model; class 1 varies; the mean accuracies differ.
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    base = [np.array([0, 0, 0, 0, 1, 1, 1, 1]), np.array([0, 0, 0, 0, 1, 1, 1, 0])]
    comp = [np.array([0, 0, 0, 0, 1, 0, 0, 0]), np.array([0, 0, 0, 0, 1, 1, 0, 0])]
    # What scipy says on the normalised class-0 accuracies (1 - 0.9375 twice vs 1 - 0.6875 twice):
    # p = 0, which would flag the class although nothing about it varies.
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        raw = stats.ttest_ind([0.0625, 0.0625], [0.3125, 0.3125], equal_var=False)
    assert raw.pvalue == 0.0
    impact = class_impact_population(labels, base, comp, alpha=0.05)
    row0, row1 = impact.per_class.iloc[0], impact.per_class.iloc[1]
    assert not row0["welch_testable"] and math.isnan(row0["p_value"]) and not row0["impacted"]
    assert row1["welch_testable"] and not math.isnan(row1["p_value"])
    assert impact.impacted_classes == int(row1["impacted"])
