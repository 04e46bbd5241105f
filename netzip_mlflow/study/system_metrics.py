"""MLflow system metrics (CPU, RAM, disk, network; GPU when available) while a run trains.

Sampling runs in a background thread, so it is switched on only around training (the baseline's
and a recipe's fine-tuning or QAT), never while latency or energy are measured. It needs only
``psutil`` (works offline). Metrics appear under ``system/`` in the run, one step per interval.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from netzip_mlflow.models.training import log_system_metrics

log = logging.getLogger(__name__)


@contextmanager
def system_metrics(run_id: str, enabled: bool = True, interval_s: float = 5.0) -> Iterator[None]:
    """Sample system metrics into run ``run_id`` every ``interval_s`` seconds while the block runs.

    The study's switch around :func:`~netzip_mlflow.models.training.log_system_metrics`: a failure
    to start the monitor is logged and ignored, it must never fail a study.
    """
    with ExitStack() as stack:
        if enabled:
            try:
                stack.enter_context(log_system_metrics(run_id, interval_s))
            except Exception as exc:  # noqa: BLE001 - optional telemetry
                log.warning("system metrics are not logged for run %s: %s", run_id, exc)
        yield
