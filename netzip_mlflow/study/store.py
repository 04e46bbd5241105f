"""Kept for imports written before the retry helper moved: see :mod:`netzip_mlflow.tracking.retry`."""

from __future__ import annotations

import time  # noqa: F401 - tests patch store.time.sleep

from netzip_mlflow.tracking.retry import TRANSIENT_MARKERS, is_transient, retry_locked

__all__ = ["TRANSIENT_MARKERS", "is_transient", "retry_locked"]
