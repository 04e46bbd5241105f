"""Settings of one evaluation: the one declaration of every evaluation setting, its default, bounds
and description (docs/architecture.md, "Settings").

:class:`EvaluationSettings` is what a study YAML's ``evaluation:`` section, the MLflow plugin's
``evaluator_config`` and ``netzip evaluate``'s flags all set; :class:`EvaluationConfig`
(``nz.EvaluationConfig``) adds what only a caller knows (the class names, progress bars). The YAML's
own extras live in :class:`netzip_mlflow.config.schema.EvaluationSpec`. Constructing any of them with a
bad value raises :class:`~netzip_mlflow.errors.ConfigError` naming the YAML field path, e.g.
``evaluation.latency.budget_s``.
"""

from __future__ import annotations

import re
from pathlib import Path
from collections.abc import Iterable, Mapping, Sequence
from typing import ClassVar, TypeVar

from pydantic import Field, field_validator

from netzip_mlflow.analysis.ratios import RatioConfig
from netzip_mlflow.errors import short_repr
from netzip_mlflow.evaluation.latency import LatencySettings
from netzip_mlflow.evaluation.paired import PairedSettings
from netzip_mlflow.validation import SettingsModel

TASKS = ("classification", "detection")

MAX_BATCH = 4096
"""Upper bound of every batch size: larger ones only exhaust memory on the machines this runs on."""

DEVICE_PATTERN = r"cpu|cuda(:[0-9]{1,2})?"

_Settings = TypeVar("_Settings", bound="EvaluationSettings")


class EvaluationSettings(SettingsModel):
    """How a model is measured: the settings a study YAML (``evaluation:``), the plugin's
    ``evaluator_config`` and ``netzip evaluate``'s flags share. Times are in seconds."""

    section: ClassVar[str] = "evaluation"

    batch_size: int = Field(
        1, ge=1, le=MAX_BATCH, description="samples per batch for latency, throughput, CPU, RAM and energy (paper: 1)"
    )
    eval_batch_size: int = Field(256, ge=1, le=MAX_BATCH, description="samples per batch for the accuracy pass")
    threads: int = Field(
        1, ge=1, le=1024, description="torch intra-op threads during the runtime measurement (recorded as a param)"
    )
    isolate: bool = Field(
        True, description="measure latency, CPU, RAM and energy in a freshly spawned process per model"
    )
    paired: bool = Field(
        True,
        description="with a baseline model, also time the model against it interleaved in the same window "
        "(ratio/speedup_paired with its 95% CI; ratio/efficiency_paired where the energy meter reads "
        "windows); the latency- and energy-based ratios then use these",
    )
    device: str = Field("cpu", description="cpu, cuda or cuda:N")
    latency: LatencySettings = Field(default_factory=LatencySettings, description="the adaptive latency protocol")
    idle_s: float = Field(
        1.0, ge=0, le=3600, description="seconds of idle power measured right before the energy window"
    )
    power_log: Path | None = Field(
        None, description="a CSV of timestamp,watts from an external meter, integrated over the window"
    )
    ratios: RatioConfig = Field(
        default_factory=RatioConfig, description="which metric feeds each ratio, OCS weights and zeta"
    )
    timeout_s: float | None = Field(
        None, ge=0,
        description="seconds the isolated measurement worker may run before its process group is killed "
        "(default: derived from the latency budget, see worker_timeout_s; 0: no limit)",
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not re.fullmatch(DEVICE_PATTERN, value):
            raise ValueError(f"unknown device {short_repr(value)}; use cpu, cuda or cuda:N")
        return value

    def worker_timeout_s(self) -> float | None:
        """The isolated worker's time limit in seconds (``None``: no limit)."""
        if self.timeout_s is None:
            return default_worker_timeout_s(self.latency, self.idle_s)
        return float(self.timeout_s) or None

    def paired_settings(self) -> PairedSettings | None:
        """The paired protocol's settings (precision target, budget and warm-up as the latency
        protocol's), or None when ``paired`` is off."""
        if not self.paired:
            return None
        return PairedSettings(
            target_ci_rel=self.latency.target_ci_rel,
            budget_s=self.latency.budget_s,
            warmup_s=min(self.latency.warmup_s, 1.0),
        )

    def with_task_defaults(self: _Settings, task: str) -> _Settings:
        """These settings for ``task`` (detection: mAP@0.5 feeds the performance ratio unless another
        metric was chosen, see :meth:`RatioConfig.with_task_defaults`)."""
        ratios = self.ratios.with_task_defaults(task)
        return self if ratios is self.ratios else self.model_copy(update={"ratios": ratios})

    def evaluation_config(self, class_names: Sequence[str] | None = None, progress: bool = True) -> EvaluationConfig:
        """These settings with what only the caller knows, as the :class:`EvaluationConfig` to measure with."""
        shared = {name: getattr(self, name) for name in EvaluationSettings.model_fields}
        return EvaluationConfig(**shared, class_names=class_names, progress=progress)


class EvaluationConfig(EvaluationSettings):
    """How a model is measured (``nz.EvaluationConfig``): the shared :class:`EvaluationSettings`
    plus what only the caller knows. See the fields' descriptions for each setting."""

    class_names: tuple[str, ...] | None = Field(
        None, description="names for the class-level report (index = label)"
    )
    progress: bool = Field(True, description="show progress bars")

    @field_validator("class_names", mode="before")
    @classmethod
    def _names_as_text(cls, value: object) -> object:
        """Any sequence of names (a list, a tuple, an array of labels) as a tuple of strings."""
        if isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping):
            return tuple(str(name) for name in value)
        return value


WORKER_STARTUP_S = 300.0
"""Allowance for the worker to start (import torch and the model's code) on a loaded machine, s."""


def default_worker_timeout_s(latency: LatencySettings, idle_s: float) -> float:
    """Default limit of one isolated measurement, s: ``300 + 10 x (warmup_s + budget_s + idle_s)``.

    The measurement itself takes about ``warmup_s + budget_s + idle_s`` (plus ``min_samples`` calls
    for a slow model); ten times that plus five minutes to start leaves room for a loaded machine and
    still ends a hung forward pass (420 s with the defaults).
    """
    return WORKER_STARTUP_S + 10.0 * (latency.warmup_s + latency.budget_s + idle_s)
