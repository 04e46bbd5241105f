"""Reading many runs: the package's one paging loop over ``MlflowClient.search_runs``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mlflow.entities import Run, ViewType
from mlflow.tracking import MlflowClient


def search_all_runs(
    client: MlflowClient,
    experiment_ids: Sequence[str],
    filter_string: str = "",
    *,
    view: int = ViewType.ACTIVE_ONLY,
    order_by: list[str] | None = None,
    page_size: int = 1000,
    call: Callable[..., Any] | None = None,
) -> list[Run]:
    """Every run matching ``filter_string``, fetched page by page (the package's one paging loop).

    ``call(fn, *args, **kwargs)`` wraps each ``search_runs`` call (e.g. :func:`~netzip_mlflow.tracking.retry.retry_locked`).
    """
    call = call or (lambda fn, *args, **kwargs: fn(*args, **kwargs))
    runs: list[Run] = []
    token: str | None = None
    while True:
        page = call(client.search_runs, list(experiment_ids), filter_string, view, page_size,
                    order_by=order_by, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs
