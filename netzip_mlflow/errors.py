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
class LeaseError(NetzipError, RuntimeError):
    """Another process holds the study's lease: only one writer per study at a time."""


ECHO_LIMIT = 80
"""At most this many characters of a user value are echoed in an error message."""


def short_repr(value: object, limit: int = ECHO_LIMIT) -> str:
    """``repr(value)`` capped at ``limit`` characters, never expanding more than a few levels.

    Error messages echo what the user gave; a YAML alias chain can make that a structure of
    billions of elements that plain ``repr`` would try to build (an alias bomb), so this walks at
    most a few items per level and a few levels deep.
    """
    import reprlib

    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxtuple, short.maxdict, short.maxset = 3, 4, 4, 4, 4
    short.maxstring, short.maxother, short.maxlong = limit, limit, limit
    text = short.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
