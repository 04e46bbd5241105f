"""The error hierarchy of netzip-mlflow.

Every error a user can cause derives from :class:`NetzipError`, and its message says what went wrong
and what to do about it. Catch :class:`NetzipError` to handle all of them.
"""

from __future__ import annotations


class NetzipError(Exception):
    """Base class of every error raised on purpose by netzip-mlflow."""


class ConfigError(NetzipError, ValueError):
    """A study, recipe or evaluation setting is invalid; the message names the field."""

    def __init__(self, field: str, problem: str, fix: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        message = f"{field}: {problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)


class DataError(NetzipError, ValueError):
    """The evaluation or training data cannot be used (missing, empty, wrong shape, bad labels)."""


class ModelError(NetzipError, ValueError):
    """A model cannot be built, loaded or run as the task requires."""


class CompressionError(NetzipError, RuntimeError):
    """A compression technique could not be applied to the given model."""


class MeasurementError(NetzipError, RuntimeError):
    """A measurement could not be taken (for example an isolated worker process died)."""


class TrackingError(NetzipError, RuntimeError):
    """MLflow tracking failed or a run the caller named does not exist."""


class WatchdogTimeout(MeasurementError):
    """A watched phase ran past its time limit; the message is ``timeout after N s in <phase>``."""

    def __init__(self, seconds: float, phase: str) -> None:
        self.seconds = seconds
        self.phase = phase
        super().__init__(f"timeout after {seconds:g} s in {phase}")
