"""Compression search: find the best recipe under constraints with Optuna (``netzip search``).

:mod:`~netzip_mlflow.search.space` checks and samples the ``search:`` block's templates,
:mod:`~netzip_mlflow.search.proxy` decides early stops, :mod:`~netzip_mlflow.search.objective`
scores trials, :mod:`~netzip_mlflow.search.runner` runs the trials as study recipe runs, and
:mod:`~netzip_mlflow.search.artifacts` logs the plots. Optuna is the ``[search]`` extra; nothing
here imports it until a search runs.
"""
