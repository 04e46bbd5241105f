"""Artifacts of a search on its parent run: trial history, plots, importances, best policy.

Logged paths (on the study's parent run):

* ``search/trials.csv``: one row per trial (number, state, run id, feasibility, broken constraints,
  the reason a trial was stopped or failed, objective values, key metrics and sampled params);
* ``search/plots/pareto_front.png``: accuracy vs CHATS and vs latency, feasible region shaded;
* ``search/plots/optimization_history.png``;
* ``search/importances.json`` and ``search/plots/param_importances.png`` (Optuna's fANOVA);
* ``search/best_policy.csv`` and ``search/plots/best_policy.png``: the best trial's per-layer policy
  (when it pruned with ``layer_policy``);

plus the tag ``netzip.search.best_run_ids`` and the metrics ``search/trials_*`` (counts).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from netzip_mlflow.compression.structured import POLICY_PREFIX
from netzip_mlflow.search import plots
from netzip_mlflow.search.objective import Constraint, performance_metric
from netzip_mlflow.tracking.retry import retry_locked
from netzip_mlflow.tracking import keys

if TYPE_CHECKING:  # pragma: no cover
    from netzip_mlflow.config.schema import StudySpec
    from netzip_mlflow.search.runner import SearchResult

log = logging.getLogger(__name__)

FRAME_METRICS = (keys.OCS, keys.TOP1, keys.MAP50, keys.CHATS, keys.MACS, keys.LATENCY_MS, keys.DISK_MB,
                 keys.PROXY_TOP1, keys.PROXY_MACS)


def trial_frame(result: SearchResult, client: MlflowClient) -> pd.DataFrame:
    """One row per trial: number, state, run_id, feasible, violated, note, objective values,
    the key metrics of its run and its sampled parameters (``param.<name>``)."""
    rows = []
    for t in result.trials:
        metrics = client.get_run(t.run_id).data.metrics if t.run_id else {}
        row: dict[str, Any] = {
            "number": t.number, "state": t.state, "run_id": t.run_id, "feasible": t.feasible,
            "violated": ",".join(t.violated), "note": t.note,
        }
        row.update({k: metrics.get(k) for k in (*FRAME_METRICS, *result.objectives)})
        row.update({f"param.{k}": v for k, v in t.params.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def policy_table(run_params: Mapping[str, str], trial_params: Mapping[str, Any]) -> pd.DataFrame:
    """The per-layer policy of a trial run: group, sampled weight and applied channel ratio.

    Reads the run's ``result.[stepK.]policy.<group>`` params (what prune_structured applied) and the
    trial's ``[stepK.]policy.<group>`` weights.
    """
    rows = []
    for key, value in run_params.items():
        if not key.startswith("result.") or f".{POLICY_PREFIX}" not in f".{key[len('result.'):]}":
            continue
        head, _, group = key[len("result."):].partition(POLICY_PREFIX)
        suffix = f"{head}{POLICY_PREFIX}{group}"
        weight = next((float(v) for k, v in trial_params.items() if k.endswith(suffix)), None)
        rows.append({"group": group, "weight": weight, "channel_ratio": float(value)})
    return pd.DataFrame(rows, columns=["group", "weight", "channel_ratio"])


def _importances(study, objectives: list[str]) -> dict[str, dict[str, float]]:
    import optuna

    out = {}
    for i, name in enumerate(objectives):
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        out[name] = optuna.importance.get_param_importances(
            study, evaluator=evaluator, target=lambda t, i=i: t.values[i])
    return out


def log_search_artifacts(
    result: SearchResult,
    study,
    spec: StudySpec,
    bounds: list[Constraint],
    baseline: Mapping[str, float],
    client: MlflowClient,
) -> None:
    """Log the search's tables, plots and counts to the active (parent) run."""
    frame = trial_frame(result, client)
    counts = frame["state"].value_counts().to_dict() if not frame.empty else {}
    complete = frame[frame["state"] == "COMPLETE"] if not frame.empty else frame
    counts["INFEASIBLE"] = int((complete["feasible"] == False).sum()) if not complete.empty else 0  # noqa: E712
    retry_locked(mlflow.log_metrics, {key: float(counts.get(state, 0)) for state, key in keys.SEARCH_TRIAL_COUNTS.items()})
    retry_locked(mlflow.set_tag, keys.TAG_SEARCH_BEST_RUNS, ",".join(t.run_id or "" for t in result.best))
    if frame.empty:
        return
    retry_locked(mlflow.log_text, frame.to_csv(index=False), "search/trials.csv")
    r = spec.evaluation.ratios
    performance = performance_metric(spec.task, r.performance, "performance" in r.model_fields_set)
    directions = [o.resolved_direction for o in spec.search.objective]
    figures = {
        "pareto_front": plots.pareto_plot(complete, performance, bounds, baseline),
        "optimization_history": plots.history_plot(frame, result.objectives, directions),
    }
    try:
        importances = _importances(study, result.objectives)
    except Exception as exc:  # noqa: BLE001 - too few trials, no varying parameter...
        log.warning("parameter importances not computed: %s", exc)
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        retry_locked(mlflow.set_tag, keys.TAG_SEARCH_IMPORTANCES_ERROR, first)
    else:
        retry_locked(mlflow.log_text, json.dumps(importances, indent=2), "search/importances.json")
        if any(importances.values()):
            figures["param_importances"] = plots.importance_plot(importances)
    if result.best:
        best = result.best[0]
        table = policy_table(client.get_run(best.run_id).data.params, best.params) if best.run_id else pd.DataFrame()
        if not table.empty:
            retry_locked(mlflow.log_text, table.to_csv(index=False), "search/best_policy.csv")
            figures["best_policy"] = plots.policy_plot(table, f"Per-layer policy of the best trial ({best.number})")
    for name, fig in figures.items():
        retry_locked(mlflow.log_figure, fig, f"search/plots/{name}.png")
