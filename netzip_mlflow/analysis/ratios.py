"""Improvement ratios and the Overall Compression Success (NetZIP paper eq. 7-11).

A ratio compares one metric of a compressed model with the same metric of its baseline so that a value
above 1 is always an improvement: ``compressed / original`` for a higher-is-better metric,
``original / compressed`` for a lower-is-better one (docs/architecture.md, "Metric contract").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from pydantic import Field, field_validator

from netzip_mlflow.errors import ConfigError, short_repr
from netzip_mlflow.tracking import keys
from netzip_mlflow.validation import SettingsModel

RATIO_NAMES: tuple[str, ...] = ("performance", "speedup", "compression", "efficiency")


class RatioConfig(SettingsModel):
    """Which metric feeds each ratio, the OCS weights (lambda 1-4) and the speedup constant zeta
    (the study YAML's ``evaluation.ratios``)."""

    section: ClassVar[str] = "evaluation.ratios"

    performance: str = Field(keys.TOP1, description="metric key of the performance ratio (detection: accuracy/map50)")
    speedup: str = Field(keys.CHATS, description="metric key of the speedup ratio")
    compression: str = Field(keys.DISK_MB, description="metric key of the compression ratio")
    efficiency: str = Field(keys.ENERGY_PER_SAMPLE, description="metric key of the efficiency ratio")
    weights: tuple[float, float, float, float] = Field(
        (1.0, 1.0, 1.0, 1.0), description="the four OCS weights (lambda 1-4), each a positive number"
    )
    zeta: float = Field(1.0, gt=0, allow_inf_nan=False, description="hardware constant of the speedup ratio")
    min_change_rel: float = Field(
        0.05, ge=0, lt=1, allow_inf_nan=False,
        description="a paired ratio counts as a change only when its whole 95% CI lies beyond "
        "1 +/- this fraction (fraction; 0: whenever the CI excludes 1.0); the default 0.05 covers the "
        "few percent a ratio moves between fresh processes (bench/README.md)",
    )
    score_at_chance: bool = Field(
        False,
        description="compute ratios and OCS even when the baseline or the compressed model is not "
        "above chance (they compare noise then; see netzip_mlflow.analysis.chance)",
    )

    @field_validator("performance", "speedup", "compression", "efficiency")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in keys.METRICS:
            raise ValueError(f"unknown metric key {short_repr(value)}; use one of {', '.join(sorted(keys.METRICS))}")
        return value

    @field_validator("weights", mode="before")
    @classmethod
    def _four_weights(cls, value: object) -> object:
        if isinstance(value, list | tuple) and len(value) != 4:
            raise ValueError(f"needs four numbers (lambda 1-4), got {len(value)}")
        return value

    @field_validator("weights")
    @classmethod
    def _positive_weights(cls, value: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        if not all(math.isfinite(w) and w > 0 for w in value):
            raise ValueError(
                f"every OCS weight must be a positive number, got {short_repr(list(value))} (a zero or "
                "negative weight rewards a worse ratio or hides it; use e.g. 1,1,1,1)"
            )
        return value

    def metric_for(self, ratio: str) -> str:
        """The metric key that feeds ``ratio``."""
        return getattr(self, ratio)

    @classmethod
    def for_task(cls, task: str, **overrides: object) -> RatioConfig:
        """Defaults for a task: detection measures performance with mAP@0.5."""
        return cls(**overrides).with_task_defaults(task)  # type: ignore[arg-type]

    def with_task_defaults(self, task: str) -> RatioConfig:
        """These settings for ``task``: detection's performance ratio is mAP@0.5 unless another metric
        than the classification default (top-1) was chosen."""
        if task == "detection" and self.performance == keys.TOP1:
            return self.model_copy(update={"performance": keys.MAP50})
        return self


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


PAIRED_SUFFIX = " (paired)"
"""Appended to the ``netzip.ratio.<name>_metric`` tag when the paired measurement fed the ratio."""


def paired_ratios(metrics: Mapping[str, float]) -> dict[str, float]:
    """Ratio name -> the paired ratio a run logged (``ratio/speedup_paired``, ``ratio/efficiency_paired``)."""
    out = {}
    for name, (key, _, _) in keys.PAIRED_RATIOS.items():
        if _usable(metrics.get(key)):
            out[name] = float(metrics[key])
    return out


def uses_paired(name: str, config: RatioConfig) -> bool:
    """Whether a paired measurement, when there is one, replaces ratio ``name`` under ``config``:
    the speedup fed by latency or throughput, the efficiency fed by energy per sample."""
    return config.metric_for(name) in keys.PAIRED_SOURCES.get(name, ())


def compute_ratios(
    baseline: Mapping[str, float],
    compressed: Mapping[str, float],
    config: RatioConfig = RatioConfig(),
    paired: Mapping[str, float] | None = None,
) -> RatioResult:
    """Ratios and OCS of a compressed model's metrics against its baseline's.

    A ratio whose metric is missing (or zero) on either side is ``None``, is listed in ``missing`` and
    contributes 0 to the OCS; it is never guessed. If the performance ratio cannot be computed the OCS
    is NaN. ``paired`` (from :func:`paired_ratios`) replaces the speedup when it is fed by latency or
    throughput (times zeta) and the efficiency when it is fed by energy per sample: the two models
    measured side by side instead of minutes apart; ``metrics_used`` then says ``(paired)``.
    """
    ratios: dict[str, float | None] = {}
    used: dict[str, str] = {}
    missing: list[str] = []
    for name in RATIO_NAMES:
        metric = config.metric_for(name)
        used[name] = metric
        if paired and name in paired and uses_paired(name, config):
            ratios[name] = paired[name] * (config.zeta if name == "speedup" else 1.0)
            used[name] = metric + PAIRED_SUFFIX
            continue
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
