"""What the leaderboard ranks and says: unranked runs with reasons, baseline row 0, trust notes."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from netzip_mlflow.analysis import leaderboard as lb
from netzip_mlflow.analysis.trust import BACKGROUND_CPU_LIMIT_PCT
from netzip_mlflow.errors import TrackingError
from netzip_mlflow.tracking import keys
from tests.analysis.test_leaderboard import Store, _metrics, _names, _row, _scores

PC = ("pc01", "Intel i7")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    s = Store(f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db")
    exp = s.client.create_experiment("honest")
    s.client.create_experiment("honest-empty")
    gone = s.client.create_experiment("honest-deleted")
    s.client.delete_experiment(gone)
    b1 = s.baseline("b1", exp, "s1", *PC, _metrics(0.80, 10.0, 100.0, 40.0, 2.0))
    s.client.log_param(b1, "seed", "0")
    b2 = s.baseline("b2", exp, "s1", *PC, _metrics(0.82, 10.0, 100.0, 40.0, 2.0))
    s.client.log_param(b2, "seed", "1")
    s.client.set_tag(b2, keys.TAG_LATENCY_TARGET_MET, "false")
    dead = s.baseline("dead", exp, "s1", *PC, _metrics(0.80, 10.0, 100.0, 40.0, 2.0))
    s.client.delete_run(dead)
    s.compressed("good", exp, "s1", "ptq", "ptq", *PC, b1,
                 _metrics(0.80, 5.0, 25.0, 10.0, 1.0) | _scores(1, 4, 4, 2, 7.0))
    s.compressed("seed1", exp, "s1", "ptq", "ptq", *PC, b2,
                 _metrics(0.82, 5.0, 25.0, 10.0, 1.0) | _scores(1, 4, 4, 2, 6.0)
                 | {keys.CPU_BACKGROUND: BACKGROUND_CPU_LIMIT_PCT + 50})
    s.client.set_tag(s.ids["seed1"], keys.TAG_ENERGY_METER, "cpu-load-estimate (estimate; TDP x load)")
    s.client.set_tag(s.ids["seed1"], keys.TAG_LATENCY_TARGET_MET, "false")
    s.compressed("infinite", exp, "s1", "inf", "ptq", *PC, b1,
                 _metrics(0.80, 5.0, 25.0, 10.0, 1.0) | _scores(1, 4, 4, 2, math.inf))
    s.compressed("orphan", exp, "s1", "orphan", "ptq", *PC, dead,
                 _metrics(0.80, 5.0, 25.0, 10.0, 1.0) | _scores(1, 4, 4, 2, 9.0))
    s.compressed("live", exp, "s1", "live", "ptq", *PC, b1,
                 _metrics(0.80, 5.0, 25.0, 10.0, 1.0) | _scores(1, 4, 4, 2, 8.0), status="RUNNING")
    s.compressed("foreign", exp, "s1", "foreign", "ptq", *PC, "f" * 32,
                 _metrics(0.80, 5.0, 25.0, 10.0, 1.0) | _scores(1, 4, 4, 2, 10.0))
    s.compressed("other_study", exp, "s2", "ptq", "ptq", *PC, b1,
                 _metrics(0.80, 5.0, 25.0, 10.0, 1.0) | _scores(1, 4, 4, 2, 5.0))
    return s


def test_only_finished_runs_with_a_finished_baseline_are_ranked(store: Store) -> None:
    df = lb.leaderboard("honest", study="s1", tracking_uri=store.uri)
    ranked = df[df["rank"].notna()]
    assert _names(ranked, store) == ["good", "seed1"]  # 7.0 then 6.0; inf is missing
    notes = {n: note for n, note in zip(_names(df, store), df["note"])}
    assert "RUNNING" in notes["live"]
    assert "deleted" in notes["orphan"]
    assert "not found" in notes["foreign"]
    infinite = _row(df, store, "infinite")
    assert math.isnan(infinite[keys.OCS])  # ±inf read as missing, not ranked first
    assert _names(df, store)[:2] == ["good", "seed1"]  # unranked rows come after the ranked ones


def test_baseline_rows_come_first_with_their_raw_metrics(store: Store) -> None:
    df = lb.leaderboard("honest", study="s1", tracking_uri=store.uri, with_baseline=True)
    base = df[df["role"] == keys.ROLE_BASELINE]
    assert list(base.index) == [0, 1]  # rows 0.. are the baselines
    assert base["rank"].tolist() == [0, 0] and set(base["recipe"]) == {"baseline"}
    assert set(base["run_id"]) == {store.ids["b1"], store.ids["b2"]}
    b1 = _row(df, store, "b1")
    assert b1[keys.TOP1] == 0.80 and b1[keys.LATENCY_MS] == 10.0 and math.isnan(b1[keys.OCS])
    assert _row(df, store, "b2")["trust"] == "latency CI target missed"


def test_seed_comes_from_the_baseline_and_trust_notes_from_the_run(store: Store) -> None:
    df = lb.leaderboard("honest", study="s1", tracking_uri=store.uri)
    assert _row(df, store, "good")["seed"] == "0" and _row(df, store, "seed1")["seed"] == "1"
    trust = _row(df, store, "seed1")["trust"]
    assert trust == f"latency CI target missed; background CPU {BACKGROUND_CPU_LIMIT_PCT + 50:.0f}%; energy estimated"
    assert _row(df, store, "good")["trust"] == ""


def test_deleted_experiment_is_refused(store: Store) -> None:
    with pytest.raises(TrackingError, match="honest-deleted.*deleted.*restore"):
        lb.leaderboard("honest-deleted", tracking_uri=store.uri)


def test_empty_experiment_by_hardware_gives_an_empty_table(store: Store) -> None:
    table = lb.leaderboard_by_hardware("honest-empty", tracking_uri=store.uri)
    assert table.empty and list(table.columns.names) == ["hardware", "metric"]
    board = lb.leaderboard("honest-empty", tracking_uri=store.uri, with_baseline=True)
    assert board.empty


def test_pareto_fronts_are_per_baseline(store: Store) -> None:
    df = lb.leaderboard("honest", study="s1", tracking_uri=store.uri)
    # good (b1) and seed1 (b2) have the same cost; only within their own baseline's group each is
    # on the front (across baselines seed1's higher top-1 would dominate good).
    assert bool(_row(df, store, "good")["pareto_latency"]) and bool(_row(df, store, "seed1")["pareto_latency"])
    left_out = df["note"].astype(bool)  # RUNNING, deleted or missing baseline
    assert left_out.sum() == 3 and not df.loc[left_out, "pareto_latency"].any()
