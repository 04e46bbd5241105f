"""The per-recipe watchdog: a time limit on compressing, checking, evaluating and logging one recipe.

A recipe runs in the study's own process, so the watchdog is a ``SIGALRM`` timer whose handler
raises :class:`RecipeTimeout` in the main thread wherever it is: in Python code, in ``time.sleep``,
or while waiting for the isolated measurement worker (whose process group is then killed, see
:func:`netzip_mlflow.evaluation.runtime.run_worker`). A native call that never returns to Python
cannot be interrupted this way; the isolated worker has its own limit (``evaluation.timeout_s``)
for the measurement, where a hung forward pass is most likely to be met.

:class:`RecipeTimeout` derives from ``BaseException`` so that a technique's or a model's own
``except Exception`` cannot swallow it. Off the main thread (or without ``SIGALRM``) the watchdog
does nothing and says so in the log.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Mapping
from types import FrameType, TracebackType
from typing import Any

log = logging.getLogger(__name__)

RECIPE_BASE_S = 1800.0
"""Allowance of every recipe besides its measurements and training, s (30 min)."""
EPOCH_BASE_S = 600.0
EPOCH_PER_SAMPLE_S = 0.5
"""Allowance per training epoch: ``600 s + 0.5 s x training samples``."""


class RecipeTimeout(BaseException):
    """The recipe ran past its limit; ``str()`` is ``timeout after N s in <phase>``."""

    def __init__(self, seconds: float, phase: str) -> None:
        self.seconds = seconds
        self.phase = phase
        super().__init__(f"timeout after {seconds:g} s in {phase}")


def training_epochs(params: Mapping[str, Any]) -> int:
    """All training epochs a recipe's params ask for (``*epochs``; pipeline steps summed)."""
    total = 0
    for key, value in params.items():
        if key == "steps" and isinstance(value, list):
            total += sum(training_epochs(step.get("params") or {}) for step in value if isinstance(step, Mapping))
        elif key.endswith("epochs") and isinstance(value, int) and not isinstance(value, bool):
            total += max(value, 0)
    return total


def default_recipe_timeout_s(params: Mapping[str, Any], train_samples: int, worker_timeout_s: float | None) -> float:
    """Default limit of one recipe, s.

    ``1800 + 2 x worker limit + epochs x (600 + 0.5 x train_samples)``: half an hour for
    compression, checks and logging, room for two isolated measurements, and for each training
    epoch ten minutes plus half a second per training sample (generous for a CPU).
    """
    epochs = training_epochs(params)
    return RECIPE_BASE_S + 2.0 * (worker_timeout_s or 0.0) + epochs * (EPOCH_BASE_S + EPOCH_PER_SAMPLE_S * train_samples)


class Watchdog:
    """``with Watchdog(seconds) as dog: dog.phase = "..."; ...`` raises :class:`RecipeTimeout`
    after ``seconds`` (``None`` or ``0``: no limit), naming the phase it was in."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = float(seconds) if seconds else 0.0
        self.phase = "setup"
        self._previous: Any = None
        self._armed = False

    def _fire(self, signum: int, frame: FrameType | None) -> None:
        raise RecipeTimeout(self.seconds, self.phase)

    def __enter__(self) -> Watchdog:
        if not self.seconds:
            return self
        if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
            log.warning("recipe timeout of %g s not enforced: not on the main thread", self.seconds)
            return self
        self._previous = signal.signal(signal.SIGALRM, self._fire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        self._armed = True
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cancel()

    def cancel(self) -> None:
        """Stop the timer and restore the previous SIGALRM handler (idempotent)."""
        if self._armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous)
            self._armed = False
