"""The one paging loop over ``search_runs``: every page is read, the wrapper wraps every call."""

from __future__ import annotations

from mlflow.store.entities.paged_list import PagedList

from netzip_mlflow.tracking.search import search_all_runs


class FakeClient:
    def __init__(self, pages: list[list[int]]) -> None:
        self.pages = pages
        self.calls: list[dict] = []

    def search_runs(self, experiment_ids, filter_string, view, page_size, order_by=None, page_token=None):  # noqa: ANN001, ANN201
        self.calls.append({"ids": experiment_ids, "filter": filter_string, "size": page_size, "token": page_token})
        index = int(page_token or 0)
        token = str(index + 1) if index + 1 < len(self.pages) else None
        return PagedList(self.pages[index], token)


def test_reads_every_page_in_order():
    client = FakeClient([[1, 2], [3], [4, 5]])
    assert search_all_runs(client, ["7"], "tags.x = 'y'", page_size=2) == [1, 2, 3, 4, 5]
    assert [c["token"] for c in client.calls] == [None, "1", "2"]
    assert all(c["ids"] == ["7"] and c["filter"] == "tags.x = 'y'" and c["size"] == 2 for c in client.calls)


def test_call_wraps_each_request():
    client = FakeClient([[1], [2]])
    wrapped = []

    def call(fn, *args, **kwargs):  # noqa: ANN001, ANN202
        wrapped.append(kwargs["page_token"])
        return fn(*args, **kwargs)

    assert search_all_runs(client, ["1"], call=call) == [1, 2]
    assert wrapped == [None, "1"]
