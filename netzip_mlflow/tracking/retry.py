"""Talking to the MLflow store with retries: SQLite says 'database is locked' when studies overlap.

MLflow's embedded SQLite store serialises writers; with several studies running at once a write can
fail with ``database is locked`` (or lose a race creating a row). Such errors are transient: the
runner wraps its MLflow calls in :func:`retry_locked`, which retries them with jittered back-off.
Any other error (an unreachable server, a missing run) is raised at once. This is the package's one
retry helper (``netzip_mlflow.study.store`` re-exports it).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT_MARKERS = (
    "database is locked", "database table is locked", "unique constraint", "already exists", "integrityerror",
    "deadlock",
)
"""Lower-case fragments of error messages that mean 'try again'."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) reports a lock or a lost creation race."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).lower()
        if any(marker in text for marker in TRANSIENT_MARKERS):
            return True
        current = current.__cause__ or current.__context__
    return False


def retry_locked(fn: Callable[..., T], *args: object, attempts: int = 10, base_delay_s: float = 0.05, **kwargs: object) -> T:
    """Call ``fn(*args, **kwargs)``, retrying while it fails with a transient store error.

    Args:
        attempts: how many calls at most.
        base_delay_s: first back-off in seconds; doubled each retry (capped at 2 s), with jitter.
    """
    for attempt in range(attempts - 1):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not is_transient(exc):
                raise
            delay = min(2.0, base_delay_s * 2**attempt) * (0.5 + random.random())
            log.info("MLflow store busy (%s); retrying in %.2f s", str(exc).splitlines()[0][:120], delay)
            time.sleep(delay)
    return fn(*args, **kwargs)
