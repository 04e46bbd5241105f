"""MLflow system metrics (CPU, RAM, disk, network; GPU when available) while a run trains.

Sampling runs in a background thread, so it is switched on only around training (the baseline's
and a recipe's fine-tuning or QAT), never while latency or energy are measured. It needs only
``psutil`` (works offline). Metrics appear under ``system/`` in the run, one step per interval.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


@contextmanager
def system_metrics(run_id: str, enabled: bool = True, interval_s: float = 5.0) -> Iterator[None]:
    """Sample system metrics into run ``run_id`` every ``interval_s`` seconds while the block runs.

    A failure to start the monitor is logged and ignored: it must never fail a study.
    """
    monitor = None
    if enabled:
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s, resume_logging=True)
            monitor.sampling_interval = interval_s  # the MLflow env var must not override the YAML
            monitor.start()
        except Exception as exc:  # noqa: BLE001 - optional telemetry
            log.warning("system metrics are not logged for run %s: %s", run_id, exc)
            monitor = None
    try:
        yield
    finally:
        if monitor is not None:
            monitor.finish()
            _closing_sample(monitor, run_id)


def _closing_sample(monitor: object, run_id: str) -> None:
    """Log one last sample when the block ends, so a block shorter than the interval has one too.

    MLflow's monitor publishes only after each full interval; after ``finish`` its thread is
    joined, so sampling here cannot race with it.
    """
    try:
        monitor.collect_metrics()
        monitor.publish_metrics(monitor.aggregate_metrics())
        monitor.mlflow_logger.flush()
    except Exception as exc:  # noqa: BLE001 - optional telemetry
        log.warning("closing system-metrics sample not logged for run %s: %s", run_id, exc)
