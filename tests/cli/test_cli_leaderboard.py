"""``netzip leaderboard`` and ``netzip plot`` through the CLI entry point, on hand-made runs.

Every expected score is computed here by hand from the logged metrics (paper eq. 7-11).
"""

from __future__ import annotations

import io
import json
import time

import mlflow
import pandas as pd
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from PIL import Image

from netzip_mlflow.cli.main import main
from netzip_mlflow.tracking import keys

EXPERIMENT = "cli-lb"
PC = {"netzip.hw.id": "pc01", "netzip.hw.cpu": "Intel i7"}
PI = {"netzip.hw.id": "pi04", "netzip.hw.cpu": "Cortex-A72"}
# (top-1, latency ms, CHATS, disk MB, J/sample)
BASE = {"pc": (0.80, 10.0, 100.0, 40.0, 2.0), "pi": (0.80, 100.0, 100.0, 40.0, 8.0)}
RUNS = {  # name: (hardware, baseline, recipe, technique, metrics, logged OCS)
    "a": ("pc", "pc", "ptq_int8", "ptq", (0.78, 4.0, 25.0, 10.0, 1.0), 99.0),
    "b": ("pc", "pc", "prune_50", "prune_unstructured", (0.80, 9.0, 100.0, 40.0, 2.0), 98.0),
    "c": ("pi", "pi", "ptq_int8", "ptq", (0.80, 50.0, 25.0, 10.0, 5.0), 97.0),
    "x": ("pi", "pc", "mixed", "ptq", (0.80, 50.0, 25.0, 10.0, 5.0), 96.0),  # baseline on the PC
}
KEYS = (keys.TOP1, keys.LATENCY_MS, keys.CHATS, keys.DISK_MB, keys.ENERGY_PER_SAMPLE)


def _ocs(values, base, weights=(1, 1, 1, 1), zeta=1.0, speed_index=1) -> float:
    """Paper eq. 11 with P from top-1, S from column ``speed_index`` (lower is better), C, E."""
    p = values[0] / base[0]
    s = zeta * base[speed_index] / values[speed_index]
    c = base[3] / values[3]
    e = base[4] / values[4]
    return p**2 * sum(w * (r - 1) for w, r in zip(weights, (p, s, c, e)))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('cli-lb')}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment(EXPERIMENT)
    ids: dict[str, str] = {}

    def log(name: str, tags: dict, values: tuple, extra: dict | None = None) -> None:
        run = client.create_run(exp, tags={keys.TAG_STUDY: "s", **tags})
        now = int(time.time() * 1000)
        metrics = dict(zip(KEYS, values)) | (extra or {})
        client.log_batch(run.info.run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])
        client.set_terminated(run.info.run_id)
        ids[name] = run.info.run_id

    log("base_pc", {keys.TAG_ROLE: keys.ROLE_BASELINE, **PC}, BASE["pc"])
    log("base_pi", {keys.TAG_ROLE: keys.ROLE_BASELINE, **PI}, BASE["pi"])
    for name, (hw, base, recipe, technique, values, logged) in RUNS.items():
        tags = {keys.TAG_ROLE: keys.ROLE_COMPRESSED, keys.TAG_RECIPE: recipe, keys.TAG_TECHNIQUE: technique,
                keys.TAG_BASELINE_RUN: ids[f"base_{base}"], **(PC if hw == "pc" else PI)}
        log(name, tags, values, {keys.OCS: logged, keys.RATIO_PERFORMANCE: 1.0})
    previous = mlflow.get_tracking_uri()
    yield uri, ids
    mlflow.set_tracking_uri(previous)


def _run(uri: str, *args: str, capsys) -> str:
    code = main(["--tracking-uri", uri, "leaderboard", "--experiment", EXPERIMENT, *args])
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def _json(uri: str, *args: str, capsys) -> pd.DataFrame:
    records = json.loads(_run(uri, *args, "--format", "json", capsys=capsys))
    return pd.DataFrame(records)


def _by_name(frame: pd.DataFrame, ids: dict[str, str]) -> dict[str, pd.Series]:
    names = {v: k for k, v in ids.items()}
    return {names[r["run_id"]]: r for _, r in frame.iterrows()}


def test_recomputed_ocs_with_latency_speedup_equals_hand_computation(store, capsys):
    uri, ids = store
    rows = _by_name(_json(uri, "--speedup-metric", "speed/latency_ms", capsys=capsys), ids)
    for name in ("a", "b", "c"):
        base = BASE[RUNS[name][1]]
        expected = _ocs(RUNS[name][4], base)
        assert rows[name][keys.OCS] == pytest.approx(expected, rel=1e-12), name
        assert rows[name][keys.RATIO_SPEEDUP] == pytest.approx(base[1] / RUNS[name][4][1])
    assert rows["a"][keys.OCS] == pytest.approx(0.950625 * (-0.025 + 1.5 + 3 + 1))  # 0.975^2, by hand
    assert rows["a"]["rank"] == 1  # 4.254 > c (0.8) > b (0.111)


def test_weights_and_zeta(store, capsys):
    uri, ids = store
    frame = _json(uri, "--speedup-metric", "speed/latency_ms", "--weights", "1,2,0.5,0.25",
                  "--zeta", "1.5", capsys=capsys)
    rows = _by_name(frame, ids)
    for name in ("a", "b", "c"):
        expected = _ocs(RUNS[name][4], BASE[RUNS[name][1]], (1, 2, 0.5, 0.25), 1.5)
        assert rows[name][keys.OCS] == pytest.approx(expected, rel=1e-12), name


def test_logged_scores_without_recompute_options(store, capsys):
    uri, ids = store
    rows = _by_name(_json(uri, capsys=capsys), ids)
    assert [rows[n][keys.OCS] for n in "abc"] == [99.0, 98.0, 97.0]


def test_hardware_is_never_mixed(store, capsys):
    uri, ids = store
    for args in ((), ("--speedup-metric", "speed/latency_ms")):
        x = _by_name(_json(uri, *args, capsys=capsys), ids)["x"]
        assert pd.isna(x[keys.OCS]) and pd.isna(x[keys.RATIO_SPEEDUP])  # not a ratio to the PC
        assert "other hardware" in x["note"] and "pc01" in x["note"] and "pi04" in x["note"]
    pi_only = _by_name(_json(uri, "--hardware", "Cortex-A72", capsys=capsys), ids)
    assert sorted(pi_only) == ["base_pi", "c", "x"]  # x's PC baseline is no row: x is unranked
    # c is compared with the Pi baseline: speedup 100 / 50 = 2, not the PC's 10 / 50.
    c = _by_name(_json(uri, "--speedup-metric", "speed/latency_ms", capsys=capsys), ids)["c"]
    assert c[keys.RATIO_SPEEDUP] == pytest.approx(2.0)


def test_by_hardware_puts_machines_side_by_side(store, capsys):
    uri, _ = store
    frame = pd.read_csv(io.StringIO(_run(uri, "--by", "hardware", "--speedup-metric",
                                         "speed/latency_ms", "--format", "csv", capsys=capsys)))
    row = frame.set_index("recipe").loc["ptq_int8"]
    assert row[f"Intel i7 [pc01] | {keys.OCS}"] == pytest.approx(_ocs(RUNS["a"][4], BASE["pc"]))
    assert row[f"Cortex-A72 [pi04] | {keys.OCS}"] == pytest.approx(_ocs(RUNS["c"][4], BASE["pi"]))
    assert row[f"Cortex-A72 [pi04] | {keys.LATENCY_MS}"] == 50.0


def test_formats_and_filters(store, capsys):
    uri, ids = store
    markdown = _run(uri, "--technique", "ptq", "--format", "markdown", capsys=capsys)
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + 2 + 3  # header, separator, the two baselines (row 0), a / c / x
    assert lines[2].startswith("| 0 ") and "baseline" in lines[2]
    html = _run(uri, "--format", "html", capsys=capsys)
    assert html.count("<tr") == 1 + 2 + 4 and "ptq_int8" in html
    table = _run(uri, "--study", "s", capsys=capsys)
    assert "OCS leaderboard" in table and "prune_50" in table
    for weights in ("1,x", "1,0,1,1", "1,-1,1,1", "1,1,1"):
        bad = main(["--tracking-uri", uri, "leaderboard", "--experiment", EXPERIMENT, "--weights", weights])
        assert bad == 2, weights
        assert "--weights" in capsys.readouterr().err
    for margin in ("1.5", "-0.1", "nan"):
        bad = main(["--tracking-uri", uri, "leaderboard", "--experiment", EXPERIMENT, "--min-change", margin])
        assert bad == 2, margin
        assert "--min-change" in capsys.readouterr().err


def test_unknown_filters_exit_non_zero_naming_the_existing_values(store, capsys):
    uri, _ = store
    for flag, value, existing in (("--study", "nope", "s"), ("--hardware", "nope", "Cortex-A72, Intel i7, pc01, pi04")):
        code = main(["--tracking-uri", uri, "leaderboard", "--experiment", EXPERIMENT, flag, value])
        err = capsys.readouterr().err
        assert code == 2 and f"'{value}'" in err and f"existing values: {existing}" in " ".join(err.split())


def test_empty_experiment_and_plot_out_a_file(store, tmp_path, capsys):
    uri, _ = store
    MlflowClient(uri).create_experiment("cli-empty")
    for extra in ((), ("--by", "hardware")):
        code = main(["--tracking-uri", uri, "leaderboard", "--experiment", "cli-empty", *extra])
        assert code == 0 and "No compressed runs" in capsys.readouterr().out
    code = main(["--tracking-uri", uri, "plot", "--experiment", "cli-empty", "--out", str(tmp_path / "p")])
    assert code == 2 and "no compressed runs to plot" in capsys.readouterr().err
    afile = tmp_path / "exists.png"
    afile.write_bytes(b"x")
    code = main(["--tracking-uri", uri, "plot", "--experiment", EXPERIMENT, "--out", str(afile)])
    err = capsys.readouterr().err
    assert code == 2 and "--out" in err and "is a file" in err and afile.read_bytes() == b"x"


def test_plot_command_writes_three_pngs(store, tmp_path, capsys):
    uri, _ = store
    code = main(["--tracking-uri", uri, "plot", "--experiment", EXPERIMENT, "--out", str(tmp_path),
                 "--speedup-metric", "speed/latency_ms"])
    assert code == 0, capsys.readouterr().err
    for name in ("radar", "ocs_bars", "accuracy_latency_bubbles"):
        with Image.open(tmp_path / f"{name}.png") as image:
            assert min(image.size) > 300
            assert len(image.getcolors(1 << 20) or []) > 20  # more than a blank canvas
