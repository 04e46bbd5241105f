"""What a study logs to its parent run once the recipes are done: the leaderboard, its plots and seed
002's population class-impact analysis (both read back from MLflow, see :mod:`netzip_mlflow.analysis`).

A study whose recipes all finished never fails here because a plot cannot be drawn: what is missing is
said in the study run's tag ``netzip.leaderboard.note`` and the study ends FINISHED."""

from __future__ import annotations

import logging

import mlflow
import pandas as pd

from netzip_mlflow.config.schema import StudySpec
from netzip_mlflow.study.context import evaluation_config
from netzip_mlflow.study.recipe import error_message
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


def _note(notes: list[str], text: str) -> None:
    """Record why the leaderboard or plots are incomplete: a warning, the study run's tag, ``notes``."""
    log.warning("%s", text)
    notes.append(text)
    retry_locked(mlflow.set_tag, keys.TAG_LEADERBOARD_NOTE, " | ".join(notes)[:5000])


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


def log_leaderboard(spec: StudySpec, run_ids: set[str] | None = None, notes: list[str] | None = None) -> pd.DataFrame | None:
    """Rank this study run's recipe runs (``run_ids``; earlier study runs of the same name are left
    out), the baseline as row 0, and log the table (csv, html, an MLflow table) and plots to the
    study run.

    Plots that cannot be drawn never fail the study: they are skipped and why is said in ``notes``
    and the study run's tag ``netzip.leaderboard.note`` (e.g. "no recipe has a finite OCS: the
    baseline's accuracy/top1 is 0").
    """
    from netzip_mlflow.analysis.leaderboard import ROLE_COLUMN, baselines, leaderboard
    from netzip_mlflow.analysis.render import display_frame, render

    notes = notes if notes is not None else []
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
    compressed = board[board[ROLE_COLUMN] != keys.ROLE_BASELINE]
    missing = no_finite_ocs(compressed, referenced, evaluation_config(spec, []).ratios.performance)
    if missing:
        _note(notes, f"no plots: {missing}")
        return board
    try:
        _log_plots(compressed, base, referenced, spec.report.radar_top_k, notes)
    except Exception as exc:  # noqa: BLE001 - the runs are logged; a plot must not fail the study
        _note(notes, f"plots incomplete: {error_message(exc)}")
    return board


def no_finite_ocs(board: pd.DataFrame, base: pd.DataFrame, performance: str) -> str | None:
    """``None`` if some recipe in ``board`` has a finite OCS, else what is missing, in words."""
    import numpy as np

    scores = pd.to_numeric(board[keys.OCS], errors="coerce") if keys.OCS in board else pd.Series(dtype=float)
    if bool(np.isfinite(scores.to_numpy(dtype=float)).any()):
        return None
    reason = "no recipe has a finite OCS"
    if not base.empty and performance in base.columns:
        value = pd.to_numeric(base[performance], errors="coerce").iloc[0]
        if not (np.isfinite(value) and value > 0):
            return f"{reason}: the baseline's {performance} is {value:g}, so no performance ratio can be formed"
    elif not base.empty:
        return f"{reason}: the baseline has no {performance} metric"
    absent = [k for k in keys.RATIO_KEYS.values() if k not in board or pd.to_numeric(board[k], errors="coerce").isna().all()]
    return f"{reason}: no recipe has {', '.join(absent)}" if absent else reason


def _log_plots(compressed: pd.DataFrame, base: pd.DataFrame, referenced: pd.DataFrame, radar_top_k: int, notes: list[str]) -> None:
    """The radar, OCS bar and bubble plots (and the sparsity sweep) of the recipe rows ``compressed``
    as artifacts of the study run; a plot that cannot be drawn is skipped and noted in ``notes``."""
    import tempfile

    from netzip_mlflow.analysis.plots import bubble_plot, ocs_bar_plot, radar_plot
    from netzip_mlflow.analysis.sweeps import plot_sweep, sweep_series
    from netzip_mlflow.errors import DataError

    star = referenced.iloc[0] if not referenced.empty else None  # the baseline of the bubble plot
    figures = {
        "radar": lambda: radar_plot(compressed, top_k=radar_top_k),
        "ocs_bars": lambda: ocs_bar_plot(compressed),
        "accuracy_latency_bubbles": lambda: bubble_plot(compressed, baseline=star),
    }
    skipped = []
    for name, draw in figures.items():
        try:
            fig = draw()
        except DataError as exc:  # e.g. too few rows with a finite value for this plot
            skipped.append(f"{name}: {exc}")
            continue
        retry_locked(mlflow.log_figure, fig, f"{keys.PLOTS_FOLDER}/{name}.png")
    if skipped:
        _note(notes, f"plots not drawn: {'; '.join(skipped)}")
    nonzero = dict(zip(base["run_id"], base[keys.PARAMS_NONZERO])) if keys.PARAMS_NONZERO in base else {}
    series = sweep_series(compressed, nonzero)
    if series:
        with tempfile.TemporaryDirectory() as tmp:
            retry_locked(mlflow.log_artifact, str(plot_sweep(series, f"{tmp}/impact_vs_sparsity.png")), keys.PLOTS_FOLDER)
