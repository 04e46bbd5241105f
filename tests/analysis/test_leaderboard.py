"""The leaderboard against a temporary SQLite MLflow store holding hand-made runs.

Every expected number below is computed by hand from the logged metrics (paper eq. 7-11), not by the
code under test.
"""

from __future__ import annotations

import math
import time

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from netzip_mlflow.analysis import leaderboard as lb
from netzip_mlflow.analysis.ratios import RatioConfig, compute_ratios
from netzip_mlflow.errors import ConfigError, TrackingError
from netzip_mlflow.tracking import keys

T1, LAT, CH, MB, J, PAR = (
    keys.TOP1, keys.LATENCY_MS, keys.CHATS, keys.DISK_MB, keys.ENERGY_PER_SAMPLE, keys.PARAMS
)
MISSING_BASELINE = "0" * 32


def _metrics(top1: float, latency: float, chats: float, disk: float, energy: float) -> dict:
    return {T1: top1, LAT: latency, CH: chats, MB: disk, J: energy, PAR: 1000.0}


def _scores(p: float, s: float, c: float, e: float, score: float) -> dict:
    return {keys.RATIO_PERFORMANCE: p, keys.RATIO_SPEEDUP: s, keys.RATIO_COMPRESSION: c,
            keys.RATIO_EFFICIENCY: e, keys.OCS: score}


class Store:
    """Logs runs the way the study runner does; remembers run ids by a short name."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.client = MlflowClient(uri)
        self.ids: dict[str, str] = {}

    def log(self, name: str, experiment_id: str, tags: dict, metrics: dict,
            status: str = "FINISHED") -> str:
        run = self.client.create_run(experiment_id, tags=tags)
        now = int(time.time() * 1000)
        self.client.log_batch(run.info.run_id,
                              metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])
        self.client.set_terminated(run.info.run_id, status=status)
        self.ids[name] = run.info.run_id
        return run.info.run_id

    def baseline(self, name: str, exp: str, study: str, hw: str, cpu: str, metrics: dict) -> str:
        tags = {keys.TAG_ROLE: keys.ROLE_BASELINE, keys.TAG_STUDY: study, lb.TAG_HW_ID: hw,
                lb.TAG_HW_CPU: cpu, keys.TAG_TASK: "classification"}
        return self.log(name, exp, tags, metrics)

    def compressed(self, name: str, exp: str, study: str, recipe: str, technique: str, hw: str,
                   cpu: str, baseline: str, metrics: dict, status: str = "FINISHED",
                   error: str | None = None) -> str:
        tags = {keys.TAG_ROLE: keys.ROLE_COMPRESSED, keys.TAG_STUDY: study, keys.TAG_RECIPE: recipe,
                keys.TAG_TECHNIQUE: technique, keys.TAG_BASELINE_RUN: baseline, lb.TAG_HW_ID: hw,
                lb.TAG_HW_CPU: cpu}
        tags |= {keys.ratio_metric_tag(n): m for n, m in
                 (("performance", T1), ("speedup", CH), ("compression", MB), ("efficiency", J))}
        if error:
            tags[keys.TAG_ERROR] = error
        return self.log(name, exp, tags, metrics, status)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Study s1 on a PC and a Raspberry Pi, study s2 on the PC, and a second experiment.

    Logged scores use the default ratio metrics (top-1, CHATS, disk MB, J/sample), by hand:
    c1 ptq on pc: P=1, S=100/25=4, C=40/10=4, E=2/1=2 -> OCS = 1*(0+3+3+1) = 7
    c2 prune on pc: P=.72/.8=.9, S=C=E=1 -> OCS = .81*(-.1) = -0.081
    c3 fp16 on pc: P=1, S=2, C=2, E=2/1.6=1.25 -> OCS = 2.25
    c4 ptq on pi: P=.79/.8=.9875, S=4, C=4, E=8/4=2 -> OCS = .9875^2*6.9875
    c5 ptq on pi whose baseline tag names the PC baseline -> must be blanked
    """
    s = Store(f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db")
    exp = s.client.create_experiment("lb-test")
    other = s.client.create_experiment("lb-other")
    s.client.create_experiment("lb-empty")
    pc = ("pc01", "Intel i7")
    pi = ("pi04", "Cortex-A72")
    b1 = s.baseline("b1", exp, "s1", *pc, _metrics(0.80, 10.0, 100.0, 40.0, 2.0))
    b2 = s.baseline("b2", exp, "s1", *pi, _metrics(0.80, 100.0, 100.0, 40.0, 8.0))
    b3 = s.baseline("b3", exp, "s2", *pc, _metrics(0.90, 10.0, 100.0, 40.0, 2.0))
    s.compressed("c1", exp, "s1", "ptq_int8", "ptq", *pc, b1,
                 _metrics(0.80, 5.0, 25.0, 10.0, 1.0) | _scores(1, 4, 4, 2, 7.0))
    s.compressed("c2", exp, "s1", "prune_l1_50", "prune_unstructured", *pc, b1,
                 _metrics(0.72, 10.0, 100.0, 40.0, 2.0) | _scores(0.9, 1, 1, 1, -0.081)
                 | {keys.CIE_CLASSES: 3.0})
    s.compressed("c3", exp, "s1", "fp16", "fp16", *pc, b1,
                 _metrics(0.80, 8.0, 50.0, 20.0, 1.6) | _scores(1, 2, 2, 1.25, 2.25))
    s.compressed("c4", exp, "s1", "ptq_int8", "ptq", *pi, b2,
                 _metrics(0.79, 40.0, 25.0, 10.0, 4.0)
                 | _scores(0.9875, 4, 4, 2, 0.9875**2 * 6.9875))
    s.compressed("c5", exp, "s1", "ptq_int8_mixed", "ptq", *pi, b1,
                 _metrics(0.79, 40.0, 25.0, 10.0, 4.0) | _scores(0.9875, 4, 4, 2, 5.0))
    s.compressed("f1", exp, "s1", "qat_int8", "qat", *pc, b1, {}, status="FAILED",
                 error="CompressionError: boom")
    s.compressed("c6", exp, "s2", "ptq_int8", "ptq", *pc, b3,
                 _metrics(0.90, 5.0, 25.0, 10.0, 1.0) | _scores(1, 4, 4, 2, 7.0))
    s.compressed("o1", other, "s3", "lonely", "ptq", *pc, MISSING_BASELINE,
                 _metrics(0.5, 5.0, 25.0, 10.0, 1.0) | _scores(1, 1, 1, 1, 0.5))
    s.compressed("o2", other, "s3", "far_baseline", "fp16", *pc, b1,  # baseline in lb-test
                 _metrics(0.80, 8.0, 50.0, 20.0, 1.6) | _scores(1, 2, 2, 1.25, 2.25))
    return s


def _names(df: pd.DataFrame, store: Store) -> list[str]:
    by_id = {v: k for k, v in store.ids.items()}
    return [by_id[r] for r in df["run_id"]]


def _row(df: pd.DataFrame, store: Store, name: str) -> pd.Series:
    return df.set_index("run_id").loc[store.ids[name]]


def test_ranks_compressed_runs_by_logged_ocs(store: Store) -> None:
    df = lb.leaderboard("lb-test", study="s1", tracking_uri=store.uri)
    assert _names(df, store) == ["c1", "c4", "c3", "c2", "c5"]  # c5 blanked: NaN sorts last
    assert df["rank"].tolist()[:4] == [1, 2, 3, 4]
    assert pd.isna(df["rank"].iloc[4])
    assert df[keys.OCS].iloc[:4].tolist() == pytest.approx([7.0, 0.9875**2 * 6.9875, 2.25, -0.081])
    c1 = _row(df, store, "c1")
    assert (c1["recipe"], c1["technique"], c1["hardware"], c1["cpu"], c1["study"]) == (
        "ptq_int8", "ptq", "pc01", "Intel i7", "s1")
    assert (c1[T1], c1[LAT], c1[MB], c1[PAR]) == (0.80, 5.0, 10.0, 1000.0)
    assert c1[keys.RATIO_SPEEDUP] == 4.0
    assert keys.CIE_CLASSES in df.columns and _row(df, store, "c2")[keys.CIE_CLASSES] == 3.0


def test_baseline_on_other_hardware_gives_nan_and_a_note(store: Store) -> None:
    for config in (None, RatioConfig()):
        c5 = _row(lb.leaderboard("lb-test", study="s1", ratio_config=config,
                                 tracking_uri=store.uri), store, "c5")
        assert all(math.isnan(c5[col]) for col in lb.SCORE_COLUMNS)
        assert "other hardware" in c5["note"] and "pc01" in c5["note"] and "pi04" in c5["note"]


def test_filters_study_technique_and_hardware(store: Store) -> None:
    uri = store.uri
    assert _names(lb.leaderboard("lb-test", study="s2", tracking_uri=uri), store) == ["c6"]
    ptq = lb.leaderboard("lb-test", technique="ptq", tracking_uri=uri)
    assert sorted(_names(ptq, store)) == ["c1", "c4", "c5", "c6"]
    by_id = lb.leaderboard("lb-test", study="s1", hardware="pi04", tracking_uri=uri)
    by_cpu = lb.leaderboard("lb-test", study="s1", hardware="Cortex-A72", tracking_uri=uri)
    assert _names(by_id, store) == _names(by_cpu, store) == ["c4", "c5"]
    with pytest.raises(ConfigError, match=r"hardware 'no-such-machine'.*Cortex-A72, Intel i7, pc01, pi04"):
        lb.leaderboard("lb-test", hardware="no-such-machine", tracking_uri=uri)
    with pytest.raises(ConfigError, match=r"study 'nope'.*existing values: s1, s2"):
        lb.leaderboard("lb-test", study="nope", tracking_uri=uri)


def test_recomputes_ocs_from_logged_metrics_with_another_speedup_metric(store: Store) -> None:
    config = RatioConfig(speedup=LAT)
    df = lb.leaderboard("lb-test", study="s1", ratio_config=config, tracking_uri=store.uri)

    def by_hand(top1: float, lat: float, disk: float, energy: float, base: tuple) -> float:
        b_top1, b_lat, b_disk, b_energy = base
        p, s, c, e = top1 / b_top1, b_lat / lat, b_disk / disk, b_energy / energy
        return p**2 * ((p - 1) + (s - 1) + (c - 1) + (e - 1))

    pc, pi = (0.80, 10.0, 40.0, 2.0), (0.80, 100.0, 40.0, 8.0)
    expected = {
        "c1": by_hand(0.80, 5.0, 10.0, 1.0, pc),  # 5.0
        "c2": by_hand(0.72, 10.0, 40.0, 2.0, pc),  # -0.081
        "c3": by_hand(0.80, 8.0, 20.0, 1.6, pc),  # 1.5
        "c4": by_hand(0.79, 40.0, 10.0, 4.0, pi),
    }
    assert expected["c1"] == pytest.approx(5.0) and expected["c3"] == pytest.approx(1.5)
    for name, value in expected.items():
        assert _row(df, store, name)[keys.OCS] == pytest.approx(value, rel=1e-12)
    assert _row(df, store, "c4")[keys.RATIO_SPEEDUP] == pytest.approx(2.5)
    assert _names(df, store)[:4] == sorted(expected, key=expected.get, reverse=True)


def test_recompute_matches_logged_scores_with_the_default_config(store: Store) -> None:
    logged = lb.leaderboard("lb-test", study="s1", tracking_uri=store.uri)
    recomputed = lb.leaderboard("lb-test", study="s1", ratio_config=RatioConfig(),
                                tracking_uri=store.uri)
    cols = list(lb.SCORE_COLUMNS)
    np.testing.assert_allclose(recomputed[cols].to_numpy(float), logged[cols].to_numpy(float))


def test_failed_runs_are_excluded_by_default_and_listed_on_request(store: Store) -> None:
    uri = store.uri
    assert "f1" not in _names(lb.leaderboard("lb-test", study="s1", tracking_uri=uri), store)
    df = lb.leaderboard("lb-test", study="s1", include_failed=True, tracking_uri=uri)
    assert _names(df, store)[-1] == "f1"
    f1 = df.iloc[-1]
    assert f1["status"] == "FAILED" and f1["error"] == "CompressionError: boom"
    assert pd.isna(f1["rank"]) and not f1["pareto_latency"]
    assert len(df) == 6


def test_pareto_flags_within_hardware_and_baseline(store: Store) -> None:
    df = lb.leaderboard("lb-test", study="s1", tracking_uri=store.uri)
    # PC group: c1 (5 ms, 10 MB, .80) dominates c3 (8 ms, 20 MB, .80) and c2 (10 ms, 40 MB, .72).
    flags = {n: (bool(r.pareto_latency), bool(r.pareto_size))
             for n, r in zip(_names(df, store), df.itertuples())}
    # c5 names a baseline measured on other hardware: unranked, so on no front
    assert flags == {"c1": (True, True), "c2": (False, False), "c3": (False, False),
                     "c4": (True, True), "c5": (False, False)}


def test_pareto_front_on_a_hand_made_set() -> None:
    cost = np.array([1.0, 2.0, 2.0, 3.0, 1.0, 4.0, np.nan, 0.5, 3.0])
    gain = np.array([0.5, 0.7, 0.6, 0.7, 0.5, 0.9, 1.0, 0.1, 0.8])
    # 0 & 4 equal (both kept), 2 dominated by 1, 3 dominated by 1 (same gain, higher cost),
    # 6 has NaN, 7 cheapest, 8 beats 1 on gain, 5 the best gain.
    expected = [True, True, False, False, True, True, False, True, True]
    assert lb.pareto_front(cost, gain).tolist() == expected


def test_pareto_front_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    cost = rng.integers(0, 8, 200).astype(float)
    gain = rng.integers(0, 8, 200).astype(float)
    brute = [
        not any((cost[j] <= cost[i]) and (gain[j] >= gain[i])
                and (cost[j] < cost[i] or gain[j] > gain[i]) for j in range(len(cost)))
        for i in range(len(cost))
    ]
    assert lb.pareto_front(cost, gain).tolist() == brute


def test_sort_by_other_metric_default_direction_and_limit(store: Store) -> None:
    uri = store.uri
    fast = lb.leaderboard("lb-test", study="s1", sort="latency_ms", tracking_uri=uri)
    assert fast[LAT].tolist() == sorted(fast[LAT].tolist())  # lower is better: ascending
    assert fast["rank"].tolist()[:4] == [1, 2, 3, 4]  # c5 (40 ms, like c4) is unranked: other hardware
    assert _names(fast, store)[-1] == "c5" and pd.isna(fast["rank"].iloc[-1])
    assert fast.attrs["sort"] == LAT
    by_recipe = lb.leaderboard("lb-test", study="s1", sort="recipe", tracking_uri=uri)
    assert by_recipe["recipe"].tolist() == sorted(by_recipe["recipe"].tolist())
    worst_first = lb.leaderboard("lb-test", study="s1", ascending=True, tracking_uri=uri)
    assert _names(worst_first, store)[0] == "c2"
    top2 = lb.leaderboard("lb-test", study="s1", max_results=2, tracking_uri=uri)
    assert _names(top2, store) == ["c1", "c4"]
    with pytest.raises(ConfigError, match="sort"):
        lb.leaderboard("lb-test", sort="nonsense", tracking_uri=uri)


def test_pagination_gives_the_same_rows(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    full = lb.leaderboard("lb-test", tracking_uri=store.uri)
    monkeypatch.setattr(lb, "PAGE_SIZE", 2)
    paged = lb.leaderboard("lb-test", tracking_uri=store.uri)
    pd.testing.assert_frame_equal(paged, full)


def test_several_experiments_missing_and_remote_baselines(store: Store) -> None:
    df = lb.leaderboard(["lb-test", "lb-other"], tracking_uri=store.uri)
    assert {"o1", "o2", "c6"} <= set(_names(df, store))
    lonely = _row(df, store, "o1")
    assert "not found" in lonely["note"] and lonely[keys.OCS] == 0.5  # logged score kept
    assert pd.isna(lonely["rank"])  # but not ranked: its baseline is missing
    config = RatioConfig(speedup=LAT)
    other = lb.leaderboard("lb-other", ratio_config=config, tracking_uri=store.uri)
    assert math.isnan(_row(other, store, "o1")[keys.OCS])
    # o2's baseline lives in lb-test: fetched by id, OCS recomputed (same numbers as c3: 1.5)
    assert _row(other, store, "o2")[keys.OCS] == pytest.approx(1.5)


def test_unknown_experiment_names_the_existing_ones(store: Store) -> None:
    with pytest.raises(TrackingError, match="lb-test") as info:
        lb.leaderboard("no-such-experiment", tracking_uri=store.uri)
    assert "no-such-experiment" in str(info.value)


def test_uses_mlflow_current_tracking_uri_by_default(store: Store) -> None:
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(store.uri)
    try:
        assert len(lb.leaderboard("lb-test", study="s2")) == 1
    finally:
        mlflow.set_tracking_uri(previous)


def test_quotes_in_filter_values(store: Store) -> None:
    with pytest.raises(ConfigError, match="existing values"):  # quoted correctly, then refused as unknown
        lb.leaderboard("lb-test", study="it's", tracking_uri=store.uri)
    with pytest.raises(ConfigError, match="study"):
        lb.leaderboard("lb-test", study="it's \"odd\"", tracking_uri=store.uri)


def test_leaderboard_by_hardware_puts_machines_side_by_side(store: Store) -> None:
    table = lb.leaderboard_by_hardware("lb-test", study="s1", tracking_uri=store.uri)
    pc, pi = "Intel i7 [pc01]", "Cortex-A72 [pi04]"
    assert list(table.columns.get_level_values(0).unique()) == [pc, pi]
    assert table.loc["ptq_int8", (pc, keys.OCS)] == 7.0
    assert table.loc["ptq_int8", (pi, keys.OCS)] == pytest.approx(0.9875**2 * 6.9875)
    assert table.loc["ptq_int8", (pi, LAT)] == 40.0
    assert math.isnan(table.loc["fp16", (pi, keys.OCS)])
    assert table.index[0] == "ptq_int8"  # best mean OCS first


def test_baselines_lists_baseline_runs(store: Store) -> None:
    df = lb.baselines("lb-test", study="s1", hardware="pc01", tracking_uri=store.uri)
    assert df["run_id"].tolist() == [store.ids["b1"]]
    assert df.iloc[0][LAT] == 10.0 and keys.OCS not in df.columns


def test_empty_experiment_gives_an_empty_frame_with_the_columns(store: Store) -> None:
    df = lb.leaderboard("lb-empty", ratio_config=RatioConfig(), tracking_uri=store.uri)
    assert df.empty
    assert {"rank", "run_id", "recipe", keys.OCS, T1, "pareto_latency", "note"} <= set(df.columns)


def test_vectorised_recompute_agrees_with_compute_ratios_row_by_row() -> None:
    rng = np.random.default_rng(1)
    cols = [T1, LAT, CH, MB, J]
    rows = pd.DataFrame(rng.uniform(0.1, 2.0, (60, 5)), columns=cols)
    base = pd.DataFrame(rng.uniform(0.1, 2.0, (60, 5)), columns=cols)
    rows.iloc[::7, 3] = np.nan  # missing compressed size
    base.iloc[::5, 4] = 0.0  # unusable baseline energy
    rows.iloc[::11, 0] = np.nan  # no accuracy: OCS is NaN
    config = RatioConfig(speedup=LAT, weights=(1.0, 0.5, 2.0, 1.5), zeta=1.3)
    got = lb.recompute_scores(rows, base, config)
    for i in range(len(rows)):
        clean = {k: v for k, v in base.iloc[i].items() if not np.isnan(v)}
        result = compute_ratios(clean, {k: v for k, v in rows.iloc[i].items() if not np.isnan(v)},
                                config)
        for name, key in keys.RATIO_KEYS.items():
            expected = result.ratios[name]
            assert (np.isnan(got.iloc[i][key]) if expected is None
                    else got.iloc[i][key] == pytest.approx(expected))
        assert got.iloc[i][keys.OCS] == pytest.approx(result.ocs, nan_ok=True)


@pytest.fixture(scope="module")
def paired_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """One baseline (10 ms, 2 J) and two recipes with paired ratios logged next to the raw metrics.

    p1: latency 5 ms (unpaired ratio 2.0), paired speedup 1.6 [1.5, 1.7], paired efficiency 1.5
        [1.4, 1.6]; logged with the paired ratios feeding S and E (tags say "(paired)").
    p2: latency 9 ms, paired speedup 1.01 [0.98, 1.04]: no measurable change.
    """
    s = Store(f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db")
    exp = s.client.create_experiment("lb-paired")
    pc = ("pc01", "Intel i7")
    b = s.baseline("b", exp, "s", *pc, _metrics(0.80, 10.0, 100.0, 40.0, 2.0))
    paired1 = {keys.RATIO_SPEEDUP_PAIRED: 1.6, keys.RATIO_SPEEDUP_PAIRED_LOW: 1.5, keys.RATIO_SPEEDUP_PAIRED_HIGH: 1.7,
               keys.RATIO_EFFICIENCY_PAIRED: 1.5, keys.RATIO_EFFICIENCY_PAIRED_LOW: 1.4,
               keys.RATIO_EFFICIENCY_PAIRED_HIGH: 1.6}
    paired2 = {keys.RATIO_SPEEDUP_PAIRED: 1.01, keys.RATIO_SPEEDUP_PAIRED_LOW: 0.98,
               keys.RATIO_SPEEDUP_PAIRED_HIGH: 1.04}
    s.compressed("p1", exp, "s", "ptq", "ptq", *pc, b,
                 _metrics(0.80, 5.0, 100.0, 10.0, 1.0) | paired1 | _scores(1, 1.6, 4, 1.5, 4.1))
    s.compressed("p2", exp, "s", "prune", "prune_unstructured", *pc, b,
                 _metrics(0.80, 9.0, 100.0, 40.0, 2.0) | paired2 | _scores(1, 1.01, 1, 1, 0.01))
    s.client.set_tag(s.ids["p1"], keys.ratio_metric_tag("speedup"), LAT + " (paired)")
    s.client.set_tag(s.ids["p1"], keys.ratio_metric_tag("efficiency"), J + " (paired)")
    s.client.set_tag(s.ids["p2"], keys.ratio_metric_tag("speedup"), LAT + " (paired)")
    return s


def test_latency_speedup_uses_the_paired_ratio_with_its_ci(paired_store: Store) -> None:
    config = RatioConfig(speedup=LAT, zeta=2.0)
    df = lb.leaderboard("lb-paired", ratio_config=config, tracking_uri=paired_store.uri)
    p1, p2 = _row(df, paired_store, "p1"), _row(df, paired_store, "p2")
    low, high = keys.ratio_ci_columns("speedup")
    assert p1[keys.RATIO_SPEEDUP] == pytest.approx(3.2)  # zeta x 1.6, not zeta x 10/5
    assert (p1[low], p1[high]) == pytest.approx((3.0, 3.4))
    assert p1[keys.RATIO_EFFICIENCY] == pytest.approx(1.5)  # paired, not 2 J / 1 J
    assert p1["paired"] == "speedup, efficiency" and p2["paired"] == "speedup"
    # OCS = P^2 (0 + (3.2-1) + (4-1) + (1.5-1)) = 5.7; range over both CIs: 5.7 + [-0.2-0.1, 0.2+0.1]
    assert p1[keys.OCS] == pytest.approx(5.7)
    assert (p1[lb.OCS_CI_LOW], p1[lb.OCS_CI_HIGH]) == pytest.approx((5.4, 6.0))
    chats = lb.leaderboard("lb-paired", ratio_config=RatioConfig(), tracking_uri=paired_store.uri)
    c1 = _row(chats, paired_store, "p1")
    assert c1[keys.RATIO_SPEEDUP] == pytest.approx(1.0) and math.isnan(c1[low])  # CHATS: nothing paired
    assert c1["paired"] == "efficiency"


def test_logged_ratios_show_their_paired_ci_from_the_tags(paired_store: Store) -> None:
    df = lb.leaderboard("lb-paired", tracking_uri=paired_store.uri)
    p1 = _row(df, paired_store, "p1")
    low, high = keys.ratio_ci_columns("efficiency")
    assert (p1[low], p1[high]) == pytest.approx((1.4, 1.6))
    assert p1["paired"] == "speedup, efficiency"


def test_a_ci_containing_one_is_shown_as_no_measurable_change(paired_store: Store) -> None:
    from netzip_mlflow.analysis.render import NO_CHANGE, PAIRED_LEGEND, render

    df = lb.leaderboard("lb-paired", ratio_config=RatioConfig(speedup=LAT), tracking_uri=paired_store.uri)
    text = render(df, "markdown")
    lines = {line.split("|")[2].strip(): line for line in text.splitlines() if line.startswith("| ") and ("prune" in line or "ptq " in line)}
    assert NO_CHANGE in lines["prune"] and "1.01" not in lines["prune"]
    assert "1.60*" in lines["ptq"] and NO_CHANGE not in lines["ptq"]
    assert PAIRED_LEGEND in text
    assert render(df, "csv").count(NO_CHANGE) == 0  # csv keeps the numbers


@pytest.mark.parametrize(
    ("low", "high", "margin", "expected"),
    [
        (3.42, 3.83, 0.05, True),     # PTQ: far beyond 1.05
        (0.931, 0.966, 0.05, False),  # a 3-7 % "slowdown": within what moves between fresh processes
        (0.931, 0.966, 0.0, True),    # margin 0: the CI excludes 1.0, a change
        (0.98, 1.04, 0.0, False),     # contains 1.0
        (1.051, 1.2, 0.05, True),
        (0.90, 0.95, 0.05, True),     # wholly below 1 / 1.05 = 0.952
        (0.90, 0.96, 0.05, False),
    ],
)
def test_a_change_must_clear_the_margin(low: float, high: float, margin: float, expected: bool) -> None:
    assert bool(lb.changed(np.array([low]), np.array([high]), margin)[0]) is expected


def test_the_verdict_is_taken_on_the_unscaled_ci(paired_store: Store) -> None:
    """zeta = 2 shows p2's 1.01 [0.98, 1.04] as 2.02 [1.96, 2.08]: still no measurable change."""
    from netzip_mlflow.analysis.render import NO_CHANGE, render

    df = lb.leaderboard("lb-paired", ratio_config=RatioConfig(speedup=LAT, zeta=2.0), tracking_uri=paired_store.uri)
    column = keys.ratio_change_column("speedup")
    assert _row(df, paired_store, "p1")[column] == True and _row(df, paired_store, "p2")[column] == False  # noqa: E712
    assert _row(df, paired_store, "p2")[keys.RATIO_SPEEDUP] == pytest.approx(2.02)
    prune = next(line for line in render(df, "markdown").splitlines() if "| prune " in line)
    assert NO_CHANGE in prune and "2.02" not in prune
    unpaired = lb.leaderboard("lb-paired", ratio_config=RatioConfig(), tracking_uri=paired_store.uri)
    assert pd.isna(_row(unpaired, paired_store, "p1")[column])  # CHATS speedup: nothing paired to judge
