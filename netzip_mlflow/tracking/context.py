"""The ``mlflow.run_context_provider`` plugin: ``netzip.hw.*`` / ``netzip.sw.*`` tags on netzip's runs.

MLflow asks every installed run-context provider for tags whenever *any* run starts. A guest in the
user's MLflow touches only its own runs, so this provider answers ``in_context() == True`` only

* while netzip itself starts a run (:func:`start_run`, used everywhere the package starts one), or
* when the user opts in for every run by setting the environment variable ``NETZIP_RUN_CONTEXT=1``.

This module is imported by MLflow's plugin registry while ``mlflow`` itself is being imported, so it
stays light: the facts live in ``hardware.py``, which does not import mlflow or torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from mlflow.tracking.context.abstract_context import RunContextProvider

from netzip_mlflow.tracking.hardware import context_tags

#: Set to 1 / true / yes to have the hardware and software tags added to every MLflow run.
OPT_IN_ENV = "NETZIP_RUN_CONTEXT"

_STARTING_OWN_RUN: ContextVar[bool] = ContextVar("netzip_starting_own_run", default=False)


def opted_in() -> bool:
    """Whether the user asked for the tags on every run (``NETZIP_RUN_CONTEXT``)."""
    return os.environ.get(OPT_IN_ENV, "").strip().lower() in ("1", "true", "yes")


@contextmanager
def own_runs() -> Iterator[None]:
    """Runs started inside this block are netzip's own: the provider tags them."""
    token = _STARTING_OWN_RUN.set(True)
    try:
        yield
    finally:
        _STARTING_OWN_RUN.reset(token)


def start_run(*args: Any, **kwargs: Any) -> Any:
    """``mlflow.start_run`` for a run netzip starts (same arguments and return value)."""
    import mlflow

    with own_runs():
        return mlflow.start_run(*args, **kwargs)


class NetzipRunContextProvider(RunContextProvider):
    """MLflow run-context provider adding ``netzip.hw.*`` / ``netzip.sw.*`` tags to netzip's runs."""

    def in_context(self) -> bool:
        """True while netzip starts a run, or for every run when ``NETZIP_RUN_CONTEXT`` is set."""
        return _STARTING_OWN_RUN.get() or opted_in()

    def tags(self) -> dict[str, str]:
        """The hardware and software tags (cached static facts, live torch thread count)."""
        return context_tags()
