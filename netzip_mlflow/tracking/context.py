"""The ``mlflow.run_context_provider`` plugin: ``netzip.hw.*`` / ``netzip.sw.*`` tags on every run.

Registered under the ``mlflow.run_context_provider`` entry point, so every MLflow run started in an
environment where netzip-mlflow is installed gets the tags of :mod:`netzip_mlflow.tracking.hardware`.
This module is imported by MLflow's plugin registry while ``mlflow`` itself is being imported, so
nothing in the package imports it: the facts live in ``hardware.py``, which does not import mlflow.
"""

from __future__ import annotations

from mlflow.tracking.context.abstract_context import RunContextProvider

from netzip_mlflow.tracking.hardware import context_tags


class NetzipRunContextProvider(RunContextProvider):
    """MLflow run-context provider adding ``netzip.hw.*`` / ``netzip.sw.*`` tags to every run."""

    def in_context(self) -> bool:
        """Always true: the hardware and software context exists for every run."""
        return True

    def tags(self) -> dict[str, str]:
        """The hardware and software tags (cached static facts, live torch thread count)."""
        return context_tags()
