"""Is a classifier better than guessing? Ratios and OCS of models at chance are withheld.

Chance is the top-1 accuracy of always answering the most common class of the evaluation labels
(``1/k`` for ``k`` balanced classes). A model is *at chance* when its top-1 is not above that by a
one-sided exact binomial test at ``alpha`` (default 0.01) over the ``n`` evaluation samples: an
untrained network at 0.167 on 6 classes, or 0.35 on 3 balanced classes from 100 samples, is at
chance. Ratios against (or of) such a model compare noise, so the evaluator logs none, tags
``netzip.ocs.withheld`` with the reason and warns once; ``evaluation.ratios.score_at_chance: true``
(``--score-at-chance``) computes them anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

ALPHA = 0.01
"""Significance level of the test against chance."""


@dataclass(frozen=True)
class ChanceCheck:
    """Top-1 of a model against chance on ``n`` samples."""

    top1: float
    chance: float
    n: int
    p_value: float

    @property
    def at_chance(self) -> bool:
        """True when top-1 is not significantly above chance (p >= :data:`ALPHA`)."""
        return not self.p_value < ALPHA

    def describe(self, who: str) -> str:
        """One line, e.g. ``baseline top-1 0.167 is at chance (0.167 on 6 classes' majority, n=60, p=0.57)``."""
        return (
            f"{who} top-1 {self.top1:.3f} is not above chance {self.chance:.3f} "
            f"(most common class share, n={self.n}, one-sided binomial p={self.p_value:.2g})"
        )


def chance_level(labels: np.ndarray) -> float:
    """Top-1 of always predicting the most common label (fraction)."""
    labels = np.asarray(labels).ravel()
    if labels.size == 0:
        return float("nan")
    return float(np.bincount(labels.astype(np.int64)).max() / labels.size)


def check_chance(top1: float, labels: np.ndarray) -> ChanceCheck:
    """Test ``top1`` (fraction over ``labels``' samples) against :func:`chance_level`."""
    n = int(np.asarray(labels).size)
    chance = chance_level(labels)
    correct = int(round(top1 * n))
    p = binomtest(correct, n, chance, alternative="greater").pvalue if 0 < chance < 1 else 1.0
    return ChanceCheck(float(top1), chance, n, float(p))
