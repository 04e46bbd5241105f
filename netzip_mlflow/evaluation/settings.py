"""Settings of one evaluation (``nz.EvaluationConfig``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from netzip_mlflow.analysis.ratios import RatioConfig
from netzip_mlflow.errors import ConfigError
from netzip_mlflow.evaluation.latency import LatencySettings
from netzip_mlflow.evaluation.paired import PairedSettings

TASKS = ("classification", "detection")


@dataclass(frozen=True)
class EvaluationConfig:
    """How a model is measured.

    Attributes:
        batch_size: samples per batch for latency, throughput, CPU, RAM and energy (paper: 1).
        eval_batch_size: samples per batch for the accuracy pass.
        threads: torch intra-op threads during the runtime measurement (recorded as a param).
        isolate: measure latency, CPU, RAM and energy in a freshly spawned process per model.
        paired: with a baseline model, also time the model against it interleaved in the same
            window (``ratio/speedup_paired`` with its 95% CI; ``ratio/efficiency_paired`` where the
            energy meter reads windows); the latency- and energy-based ratios then use these.
        device: ``"cpu"`` or ``"cuda"`` (``"cuda:N"``).
        latency: the adaptive latency protocol's settings.
        idle_s: seconds of idle power measured right before the energy window.
        power_log: a CSV of ``timestamp,watts`` from an external meter, integrated over the window.
        ratios: which metric feeds each ratio, OCS weights and zeta.
        class_names: names for the class-level report (index = label).
        progress: show progress bars.
        timeout_s: seconds the isolated worker may run before its process group is killed and
            the measurement fails with ``timeout after N s in ...``; ``None``: the default of
            :func:`default_worker_timeout_s`; ``0``: no limit.
    """

    batch_size: int = 1
    eval_batch_size: int = 256
    threads: int = 1
    isolate: bool = True
    paired: bool = True
    device: str = "cpu"
    latency: LatencySettings = field(default_factory=LatencySettings)
    idle_s: float = 1.0
    power_log: Path | None = None
    ratios: RatioConfig = field(default_factory=RatioConfig)
    class_names: tuple[str, ...] | None = None
    progress: bool = True
    timeout_s: float | None = None

    def worker_timeout_s(self) -> float | None:
        """The isolated worker's time limit in seconds (``None``: no limit)."""
        if self.timeout_s is None:
            return default_worker_timeout_s(self.latency, self.idle_s)
        return float(self.timeout_s) or None

    def __post_init__(self) -> None:
        for name in ("batch_size", "eval_batch_size", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"evaluation.{name}", f"must be a positive integer, got {value!r}")
        if self.idle_s < 0:
            raise ConfigError("evaluation.idle_s", f"must be >= 0 seconds, got {self.idle_s}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError("evaluation.device", f"must be 'cpu' or 'cuda[:N]', got {self.device!r}")
        if self.timeout_s is not None and not self.timeout_s >= 0:
            raise ConfigError("evaluation.timeout_s", f"must be >= 0 seconds (0: no limit), got {self.timeout_s}")

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


WORKER_STARTUP_S = 300.0
"""Allowance for the worker to start (import torch and the model's code) on a loaded machine, s."""


def default_worker_timeout_s(latency: LatencySettings, idle_s: float) -> float:
    """Default limit of one isolated measurement, s: ``300 + 10 x (warmup_s + budget_s + idle_s)``.

    The measurement itself takes about ``warmup_s + budget_s + idle_s`` (plus ``min_samples`` calls
    for a slow model); ten times that plus five minutes to start leaves room for a loaded machine and
    still ends a hung forward pass (420 s with the defaults).
    """
    return WORKER_STARTUP_S + 10.0 * (latency.warmup_s + latency.budget_s + idle_s)
