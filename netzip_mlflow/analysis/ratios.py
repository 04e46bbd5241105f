"""Improvement ratios and the Overall Compression Success (NetZIP paper eq. 7-11).

A ratio compares one metric of a compressed model with the same metric of its baseline so that a value
above 1 is always an improvement: ``compressed / original`` for a higher-is-better metric,
``original / compressed`` for a lower-is-better one (docs/architecture.md, "Metric contract").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from netzip_mlflow.errors import ConfigError
from netzip_mlflow.tracking import keys

RATIO_NAMES: tuple[str, ...] = ("performance", "speedup", "compression", "efficiency")


@dataclass(frozen=True)
class RatioConfig:
    """Which metric feeds each ratio, the OCS weights (lambda 1-4) and the speedup constant zeta."""

    performance: str = keys.TOP1
    speedup: str = keys.CHATS
    compression: str = keys.DISK_MB
    efficiency: str = keys.ENERGY_PER_SAMPLE
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    zeta: float = 1.0
    score_at_chance: bool = False
    """Compute ratios and OCS even for models at chance (see :mod:`netzip_mlflow.analysis.chance`)."""

    def __post_init__(self) -> None:
        for name in RATIO_NAMES:
            metric = getattr(self, name)
            if metric not in keys.METRICS:
                raise ConfigError(
                    f"{name}_metric",
                    f"unknown metric key {metric!r}",
                    f"use one of: {', '.join(sorted(keys.METRICS))}",
                )
        if len(self.weights) != 4 or not all(math.isfinite(w) for w in self.weights):
            raise ConfigError("weights", f"need four finite numbers, got {self.weights!r}")
        if not all(w > 0 for w in self.weights):
            raise ConfigError(
                "weights", f"every OCS weight must be positive, got {self.weights!r}",
                "a zero or negative weight rewards a worse ratio or hides it; use e.g. 1,1,1,1",
            )
        if not (math.isfinite(self.zeta) and self.zeta > 0):
            raise ConfigError("zeta", f"must be a positive number, got {self.zeta!r}")

    def metric_for(self, ratio: str) -> str:
        """The metric key that feeds ``ratio``."""
        return getattr(self, ratio)

    @classmethod
    def for_task(cls, task: str, **overrides: object) -> RatioConfig:
        """Defaults for a task: detection measures performance with mAP@0.5."""
        if task == "detection" and "performance" not in overrides:
            overrides["performance"] = keys.MAP50
        return cls(**overrides)  # type: ignore[arg-type]


@dataclass(frozen=True)
class RatioResult:
    """The four ratios (``None`` where not measurable), the OCS and what fed them."""

    ratios: dict[str, float | None]
    ocs: float
    metrics_used: dict[str, str]
    missing: tuple[str, ...] = field(default_factory=tuple)


def ratio(original: float, compressed: float, higher_is_better: bool, zeta: float = 1.0) -> float:
    """One improvement ratio; > 1 means the compressed model is better on this metric."""
    if higher_is_better:
        return zeta * compressed / original
    return zeta * original / compressed


def ocs(
    performance: float | None,
    speedup: float | None,
    compression: float | None,
    efficiency: float | None,
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
) -> float:
    """Overall Compression Success, paper eq. 11.

    ``OCS = P^2 * (l1 (P-1) + l2 (S-1) + l3 (C-1) + l4 (E-1))``. A ratio given as ``None`` (not
    measurable) contributes 0 to the sum; the performance ratio is required because it also scales
    the whole score.
    """
    if performance is None:
        raise ConfigError(
            "performance", "the performance ratio is required for OCS", "measure an accuracy metric"
        )
    terms = (performance, speedup, compression, efficiency)
    total = sum(w * (r - 1.0) for w, r in zip(weights, terms) if r is not None)
    return performance**2 * total


def _usable(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def compute_ratios(
    baseline: Mapping[str, float], compressed: Mapping[str, float], config: RatioConfig = RatioConfig()
) -> RatioResult:
    """Ratios and OCS of a compressed model's metrics against its baseline's.

    A ratio whose metric is missing (or zero) on either side is ``None``, is listed in ``missing`` and
    contributes 0 to the OCS; it is never guessed. If the performance ratio cannot be computed the OCS
    is NaN.
    """
    ratios: dict[str, float | None] = {}
    used: dict[str, str] = {}
    missing: list[str] = []
    for name in RATIO_NAMES:
        metric = config.metric_for(name)
        used[name] = metric
        orig, comp = baseline.get(metric), compressed.get(metric)
        if not (_usable(orig) and _usable(comp)):
            ratios[name] = None
            missing.append(name)
            continue
        zeta = config.zeta if name == "speedup" else 1.0
        ratios[name] = ratio(orig, comp, keys.higher_is_better(metric), zeta)  # type: ignore[arg-type]
    if ratios["performance"] is None:
        score = math.nan
    else:
        score = ocs(
            ratios["performance"],
            ratios["speedup"],
            ratios["compression"],
            ratios["efficiency"],
            config.weights,
        )
    return RatioResult(ratios, score, used, tuple(missing))
