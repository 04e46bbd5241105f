"""What a study logs to its parent run once the recipes are done: the leaderboard, its plots and seed
002's population class-impact analysis (both read back from MLflow, see :mod:`netzip_mlflow.analysis`)."""

from __future__ import annotations

import logging

import mlflow
import pandas as pd

from netzip_mlflow.config.schema import StudySpec
from netzip_mlflow.tracking import keys
from netzip_mlflow.tracking.retry import retry_locked

log = logging.getLogger(__name__)


def log_population(spec: StudySpec) -> None:
    """Seed 002's population method for recipes this study has run with several seeds (else nothing)."""
    from netzip_mlflow.analysis.population import population_impact, population_table
    from netzip_mlflow.errors import NetzipError

    try:
        results = population_impact(spec.experiment_name, spec.study)
    except NetzipError as exc:
        log.warning("population class-impact analysis skipped: %s", exc)
        retry_locked(mlflow.set_tag, keys.TAG_CIE_POPULATION_ERROR, str(exc)[:500])
        return
    if results:
        retry_locked(mlflow.log_text, population_table(results).to_csv(index=False), keys.POPULATION_ARTIFACT)
        retry_locked(mlflow.log_metrics, {f"cie_population/{r.recipe}/impacted_classes": float(r.impact.impacted_classes) for r in results})


def this_study_run(board: pd.DataFrame, run_ids: set[str]) -> pd.DataFrame:
    """The rows of ``run_ids`` and of the baselines they refer to, re-ranked among themselves."""
    from netzip_mlflow.analysis.leaderboard import ROLE_COLUMN

    compressed = board["run_id"].isin(run_ids)
    base = (board[ROLE_COLUMN] == keys.ROLE_BASELINE) & board["run_id"].isin(board.loc[compressed, "baseline_run_id"])
    out = board[compressed | base].reset_index(drop=True)
    ranked = (out[ROLE_COLUMN] != keys.ROLE_BASELINE) & out["rank"].notna()
    if keys.OCS in out.columns:
        out.loc[ranked, "rank"] = out.loc[ranked, keys.OCS].rank(ascending=False, method="min").astype("Int64")
    out.attrs = dict(board.attrs)
    return out


def log_leaderboard(spec: StudySpec, run_ids: set[str] | None = None) -> pd.DataFrame | None:
    """Rank this study run's recipe runs (``run_ids``; earlier study runs of the same name are left
    out), the baseline as row 0, and log the table (csv, html, an MLflow table) and plots to the
    study run. A plot that cannot be drawn (no finite OCS: every model at chance) is skipped and the
    reason tagged (``netzip.plots.skipped``); the study still finishes."""
    import tempfile

    from netzip_mlflow.analysis.leaderboard import baselines, leaderboard
    from netzip_mlflow.analysis.plots import bubble_plot, ocs_bar_plot, radar_plot
    from netzip_mlflow.analysis.render import display_frame, render
    from netzip_mlflow.analysis.sweeps import plot_sweep, sweep_series
    from netzip_mlflow.errors import DataError

    board = leaderboard(spec.experiment_name, study=spec.study, with_baseline=True)
    if run_ids is not None and not board.empty:
        board = this_study_run(board, run_ids)
    if board.empty:
        return board
    retry_locked(mlflow.log_text, render(board, "csv"), f"{keys.LEADERBOARD_FOLDER}/leaderboard.csv")
    retry_locked(mlflow.log_text, render(board, "html"), f"{keys.LEADERBOARD_FOLDER}/leaderboard.html")
    retry_locked(mlflow.log_table, data=display_frame(board), artifact_file=f"{keys.LEADERBOARD_FOLDER}/leaderboard_table.json")
    base = baselines(spec.experiment_name, study=spec.study)
    referenced = base[base["run_id"].isin(board["baseline_run_id"])] if not base.empty else base
    star = referenced.iloc[0] if not referenced.empty else None  # the baseline of the bubble plot
    compressed = board[board["role"] != keys.ROLE_BASELINE]
    figures = {
        "radar": lambda: radar_plot(compressed, top_k=spec.report.radar_top_k),
        "ocs_bars": lambda: ocs_bar_plot(compressed),
        "accuracy_latency_bubbles": lambda: bubble_plot(compressed, baseline=star),
    }
    skipped = []
    for name, draw in figures.items():
        try:
            fig = draw()
        except DataError as exc:  # e.g. no finite OCS (every model at chance): the study still finishes
            skipped.append(f"{name}: {exc}")
            continue
        retry_locked(mlflow.log_figure, fig, f"{keys.PLOTS_FOLDER}/{name}.png")
    if skipped:
        log.warning("plots not drawn: %s", "; ".join(skipped))
        retry_locked(mlflow.set_tag, keys.TAG_PLOTS_SKIPPED, "; ".join(skipped)[:500])
    nonzero = dict(zip(base["run_id"], base[keys.PARAMS_NONZERO])) if keys.PARAMS_NONZERO in base else {}
    series = sweep_series(compressed, nonzero)
    if series:
        with tempfile.TemporaryDirectory() as tmp:
            retry_locked(mlflow.log_artifact, str(plot_sweep(series, f"{tmp}/impact_vs_sparsity.png")), "plots")
    return board
