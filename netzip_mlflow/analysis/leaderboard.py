"""The OCS leaderboard: compressed runs ranked from MLflow run queries alone.

Everything comes from ``MlflowClient.search_runs`` (server-side ``filter_string`` for the
experiment, role, study, technique and hardware tags; paginated), never from local side files, so
the same call works against the embedded SQLite store and a shared ``mlflow server``. Nothing is
re-run: recomputed ratios use the raw metrics each run logged and those of the baseline named by its
``netzip.baseline_run_id`` tag, and a baseline measured on other hardware is never used.

Only FINISHED runs whose baseline exists, is not deleted and is FINISHED get a rank; others are
listed after the ranked rows, unranked, with a ``note`` saying why. Non-finite metrics (±inf) are
treated as missing. The ``trust`` column carries each run's measurement caveats
(:mod:`netzip_mlflow.analysis.trust`).

Metric columns of the returned frame are named by their metric keys (``ocs``, ``ratio/speedup``,
``speed/latency_ms`` in ms, ``size/disk_mb`` in MB of 10^6 bytes, ...; see
:mod:`netzip_mlflow.tracking.keys` for every unit).
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from netzip_mlflow.analysis.ratios import PAIRED_SUFFIX, RATIO_NAMES, RatioConfig, ocs, ratio, uses_paired
from netzip_mlflow.analysis.trust import trust_notes
from netzip_mlflow.errors import ConfigError, TrackingError
from netzip_mlflow.tracking import keys
from netzip_mlflow.tracking.search import search_all_runs
from netzip_mlflow.tracking.uri import mask_credentials

PAGE_SIZE = 10_000
"""Runs per ``search_runs`` page (MLflow stores accept up to 50,000)."""

FAILED_STATUSES = ("FAILED", "KILLED")
RATIO_COLUMNS: tuple[str, ...] = tuple(keys.RATIO_KEYS[name] for name in RATIO_NAMES)
SCORE_COLUMNS: tuple[str, ...] = (*RATIO_COLUMNS, keys.OCS)
RAW_METRICS: tuple[str, ...] = (
    keys.TOP1,
    keys.LATENCY_MS,
    keys.CHATS,
    keys.DISK_MB,
    keys.PARAMS,
    keys.PARAMS_NONZERO,
    keys.ENERGY_PER_SAMPLE,
    keys.CPU_BACKGROUND,
)
PAIRED_METRICS: tuple[str, ...] = tuple(key for trio in keys.PAIRED_RATIOS.values() for key in trio)
OPTIONAL_METRICS: tuple[str, ...] = (keys.MAP50, keys.CIE_CLASSES, keys.CIE_IMAGES, *PAIRED_METRICS)
"""Raw metrics that get a column only when at least one run logged them."""

TAG_HW_ID = keys.TAG_HW_PREFIX + "id"
TAG_HW_CPU = keys.TAG_HW_PREFIX + "cpu"
TAG_COLUMNS: dict[str, str] = {
    "study": keys.TAG_STUDY,
    "recipe": keys.TAG_RECIPE,
    "technique": keys.TAG_TECHNIQUE,
    "runtime": keys.TAG_RUNTIME,
    "hardware": TAG_HW_ID,
    "cpu": TAG_HW_CPU,
    "baseline_run_id": keys.TAG_BASELINE_RUN,
    "error": keys.TAG_ERROR,
    "speedup_metric": keys.ratio_metric_tag("speedup"),
    "efficiency_metric": keys.ratio_metric_tag("efficiency"),
    "latency_target_met": keys.TAG_LATENCY_TARGET_MET,
    "energy_meter": keys.TAG_ENERGY_METER,
    "ocs_withheld": keys.TAG_OCS_WITHHELD,
}
PARAM_COLUMNS: dict[str, str] = {"seed": "seed"}
"""Columns read from run params (the baseline's ``seed``; compressed runs take their baseline's)."""
INTERNAL_COLUMNS = ("latency_target_met", "energy_meter", "ocs_withheld")
"""Tag columns that feed ``trust`` and ``note`` and are not returned themselves."""
ROLE_COLUMN = "role"
PARETO_COLUMNS = {"pareto_latency": keys.LATENCY_MS, "pareto_size": keys.DISK_MB}
"""Pareto flag column -> the lower-is-better metric traded against accuracy."""

OCS_CI_LOW, OCS_CI_HIGH = "ocs_ci95_low", "ocs_ci95_high"
"""Leaderboard columns: the OCS's range over the paired ratios' 95% CIs (NaN when none is paired)."""

NOTE_OTHER_HARDWARE = (
    "baseline {base} measured on other hardware ({hw_base} vs {hw_run}): ratios unusable"
)
NOTE_NO_BASELINE = "baseline run {base} not found"
NOTE_NO_BASELINE_TAG = "no netzip.baseline_run_id tag"
NOTE_BASELINE_DELETED = "baseline run {base} is deleted: not ranked"
NOTE_BASELINE_STATUS = "baseline run {base} is {status}: not ranked"
NOTE_RUN_STATUS = "run is {status}: not ranked until it finishes"
NOTE_WITHHELD = "OCS withheld: {reason}"


# --------------------------------------------------------------------------------------------------
# Querying
# --------------------------------------------------------------------------------------------------


def _quote(value: str, field: str) -> str:
    """A filter-string literal for ``value``."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ConfigError(field, f"{value!r} contains both quote characters", "drop one kind of quote")


def _tag_equals(tag: str, value: str, field: str) -> str:
    return f"tags.`{tag}` = {_quote(value, field)}"


def _resolve_experiments(client: MlflowClient, experiment: str | Sequence[str]) -> list[str]:
    """Experiment ids for names (or ids); unknown names raise :class:`TrackingError`."""
    names = [experiment] if isinstance(experiment, str) else list(experiment)
    if not names:
        raise ConfigError("experiment", "no experiment given", "pass an experiment name")
    ids: list[str] = []
    for name in names:
        found = client.get_experiment_by_name(name)
        if found is None and name.isdigit():
            try:
                found = client.get_experiment(name)
            except MlflowException:
                found = None
        if found is not None and found.lifecycle_stage == "deleted":
            raise TrackingError(
                f"experiment {name!r} is deleted at tracking URI {client.tracking_uri!r}; restore it "
                f"(mlflow experiments restore --experiment-id {found.experiment_id}) or pick another"
            )
        if found is None:
            existing = sorted(e.name for e in client.search_experiments(max_results=1000))
            raise TrackingError(
                f"experiment {name!r} not found at tracking URI {mask_credentials(client.tracking_uri)!r}; "
                f"existing experiments: {', '.join(existing) or '(none)'}; pass one of these "
                "names or point tracking_uri at the store that holds your runs"
            )
        ids.append(found.experiment_id)
    return ids


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a store materialises many small objects.

    MLflow's SQL store builds one ORM object per logged metric, param and tag; with the collector
    on, its repeated full scans over them cost more than the query (measured: 2-3x on 1,000 runs).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _search(
    client: MlflowClient, experiment_ids: list[str], filters: Iterable[str]
) -> list[Run]:
    """Every active run matching all ``filters``, fetched page by page."""
    filter_string = " and ".join(filters)
    try:
        return search_all_runs(client, experiment_ids, filter_string, page_size=PAGE_SIZE)
    except MlflowException as exc:
        raise TrackingError(
            f"search_runs failed for filter {filter_string!r}: {exc.message} "
            "(check that the tracking server is reachable)"
        ) from exc


def _hardware_filters(hardware: str | None) -> list[list[str]]:
    """One filter list per query: the hw id or the cpu tag may match (MLflow filters have no OR)."""
    if hardware is None:
        return [[]]
    return [
        [_tag_equals(TAG_HW_ID, hardware, "hardware")],
        [_tag_equals(TAG_HW_CPU, hardware, "hardware")],
    ]


def _compressed_runs(
    client: MlflowClient,
    experiment_ids: list[str],
    study: str | None,
    technique: str | None,
    hardware: str | None,
    include_failed: bool,
) -> list[Run]:
    base = [_tag_equals(keys.TAG_ROLE, keys.ROLE_COMPRESSED, "role")]
    if study is not None:
        base.append(_tag_equals(keys.TAG_STUDY, study, "study"))
    if technique is not None:
        base.append(_tag_equals(keys.TAG_TECHNIQUE, technique, "technique"))
    if not include_failed:
        base += [f"attributes.status != '{status}'" for status in FAILED_STATUSES]
    seen: dict[str, Run] = {}
    for extra in _hardware_filters(hardware):
        for run in _search(client, experiment_ids, base + extra):
            seen.setdefault(run.info.run_id, run)
    return list(seen.values())


def _baseline_runs(
    client: MlflowClient, experiment_ids: list[str], wanted: Iterable[str]
) -> list[Run]:
    """The baselines named by ``wanted`` ids: one query in the experiments, then any stragglers."""
    wanted = {run_id for run_id in wanted if isinstance(run_id, str) and run_id}
    if not wanted:
        return []
    role = [_tag_equals(keys.TAG_ROLE, keys.ROLE_BASELINE, "role")]
    found = {r.info.run_id: r for r in _search(client, experiment_ids, role)}
    found = {run_id: run for run_id, run in found.items() if run_id in wanted}
    for run_id in sorted(wanted - found.keys()):  # baselines logged in another experiment (or deleted)
        try:
            found[run_id] = client.get_run(run_id)
        except MlflowException:
            continue
    return list(found.values())


def _deleted(run: Run) -> bool:
    return run.info.lifecycle_stage == "deleted"


# --------------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------------


def _frame(runs: list[Run], metrics: Sequence[str]) -> pd.DataFrame:
    """One row per run: id, status, the tag and param columns and the requested metrics.

    Missing and non-finite (±inf, NaN) metrics are NaN, and so are values at the float64 limit
    (MLflow's SQL stores save ±inf as ±1.797e308); ``deleted`` says whether the run is in the trash.
    """
    tag_items = list(TAG_COLUMNS.items())
    records = []
    for run in runs:
        tags, values, params = run.data.tags, run.data.metrics, run.data.params
        records.append(
            (run.info.run_id, run.info.status, _deleted(run))
            + tuple(tags.get(tag) for _, tag in tag_items)
            + tuple(params.get(param) for param in PARAM_COLUMNS.values())
            + tuple(values.get(m, np.nan) for m in metrics)
        )
    columns = ["run_id", "status", "deleted", *TAG_COLUMNS, *PARAM_COLUMNS, *metrics]
    frame = pd.DataFrame.from_records(records, columns=columns)
    values = frame[list(metrics)].astype(float)
    finite = np.isfinite(values.to_numpy()) & (np.abs(values.to_numpy()) < np.finfo(np.float64).max)
    frame[list(metrics)] = values.where(finite, np.nan)
    return frame


def _metric_columns(runs: list[Run], config: RatioConfig | None) -> list[str]:
    wanted = list(SCORE_COLUMNS) + list(RAW_METRICS)
    if config is not None:
        wanted += [config.metric_for(name) for name in RATIO_NAMES]
    logged = set().union(*(run.data.metrics.keys() for run in runs)) if runs else set()
    wanted += [m for m in OPTIONAL_METRICS if m in logged]
    return list(dict.fromkeys(wanted))


def recompute_scores(
    rows: pd.DataFrame, baselines: pd.DataFrame, config: RatioConfig
) -> pd.DataFrame:
    """Ratios and OCS of every row against the aligned baseline row (same index), vectorised.

    Follows :func:`netzip_mlflow.analysis.ratios.compute_ratios`: a ratio whose metric is missing,
    non-finite or zero on either side is NaN and contributes 0 to the OCS; without a performance
    ratio the OCS is NaN; a row's paired ratio (``ratio/speedup_paired``, ``ratio/efficiency_paired``)
    replaces the speedup fed by latency or throughput and the efficiency fed by energy per sample.
    Returns a frame with the ``ratio/*`` columns and ``ocs``.
    """
    out: dict[str, np.ndarray] = {}
    for name in RATIO_NAMES:
        metric = config.metric_for(name)
        orig = _column(baselines, metric)
        comp = _column(rows, metric)
        usable = np.isfinite(orig) & (orig > 0) & np.isfinite(comp) & (comp > 0)
        zeta = config.zeta if name == "speedup" else 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.where(usable, ratio(orig, comp, keys.higher_is_better(metric), zeta), np.nan)
        if name in keys.PAIRED_RATIOS and uses_paired(name, config):
            paired = _column(rows, keys.PAIRED_RATIOS[name][0])
            values = np.where(np.isfinite(paired) & (paired > 0), zeta * paired, values)
        out[keys.RATIO_KEYS[name]] = values
    others = (np.nan_to_num(out[keys.RATIO_KEYS[n]], nan=1.0) for n in RATIO_NAMES[1:])
    out[keys.OCS] = ocs(out[keys.RATIO_PERFORMANCE], *others, weights=config.weights)
    return pd.DataFrame(out, index=rows.index)


def paired_intervals(rows: pd.DataFrame, config: RatioConfig | None) -> pd.DataFrame:
    """Which shown ratios come from a paired measurement, and their 95% CI as shown.

    With ``config`` a ratio is paired where :func:`~netzip_mlflow.analysis.ratios.uses_paired` says
    so and the run logged the paired ratio; without, where the run's ``netzip.ratio.<name>_metric``
    tag says ``(paired)``. The CI is the paired CI scaled as the ratio is (zeta for the speedup).
    Returns the ``paired`` column (e.g. ``"speedup, efficiency"``), the ``ratio/*_ci95_*`` columns
    and ``ratio/*_changed``: True where the paired CI (unscaled) lies wholly beyond
    ``1 +/- min_change_rel`` (:func:`changed`), False where it does not, ``None`` where not paired.
    """
    margin = (config or RatioConfig()).min_change_rel
    out: dict[str, object] = {}
    used: list[list[str]] = [[] for _ in range(len(rows))]
    for name, (key, low_key, high_key) in keys.PAIRED_RATIOS.items():
        paired = _column(rows, key)
        have = np.isfinite(paired) & (paired > 0)
        if config is not None:
            have &= uses_paired(name, config)
        else:
            tag = rows.get(f"{name}_metric", pd.Series(None, index=rows.index, dtype=object))
            have &= tag.fillna("").astype(str).str.endswith(PAIRED_SUFFIX).to_numpy()
        shown = _column(rows, keys.RATIO_KEYS[name])
        have &= np.isfinite(shown)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = shown / paired
        low_col, high_col = keys.ratio_ci_columns(name)
        out[low_col] = np.where(have, _column(rows, low_key) * scale, np.nan)
        out[high_col] = np.where(have, _column(rows, high_key) * scale, np.nan)
        moved = changed(_column(rows, low_key), _column(rows, high_key), margin)
        out[keys.ratio_change_column(name)] = [bool(c) if h else None for c, h in zip(moved, have)]
        for i in np.flatnonzero(have):
            used[i].append(name)
    out[OCS_CI_LOW], out[OCS_CI_HIGH] = _ocs_interval(rows, out, config or RatioConfig())
    return pd.DataFrame({"paired": [", ".join(names) for names in used], **out}, index=rows.index)


def changed(low: np.ndarray, high: np.ndarray, margin: float) -> np.ndarray:
    """Whether a ratio with 95% CI ``[low, high]`` (1.0: no change) is a measurable change: the
    whole CI above ``1 + margin`` or below ``1 / (1 + margin)``. ``margin`` 0: the CI excludes 1.0."""
    with np.errstate(invalid="ignore"):
        return (np.asarray(low) > 1.0 + margin) | (np.asarray(high) < 1.0 / (1.0 + margin))


def _ocs_interval(
    rows: pd.DataFrame, intervals: dict[str, object], config: RatioConfig
) -> tuple[np.ndarray, np.ndarray]:
    """OCS with each paired ratio moved to its CI ends (conservative: both ends at once).

    OCS is linear in the speedup and efficiency ratios (weights l2, l4, scaled by P^2), so its range
    over the ratios' intervals is that sum. NaN for rows without a paired ratio.
    """
    score = _column(rows, keys.OCS)
    p2 = _column(rows, keys.RATIO_PERFORMANCE) ** 2
    low, high = score.copy(), score.copy()
    any_paired = np.zeros(len(rows), dtype=bool)
    for name in keys.PAIRED_RATIOS:
        weight = config.weights[RATIO_NAMES.index(name)]
        shown = _column(rows, keys.RATIO_KEYS[name])
        low_col, high_col = keys.ratio_ci_columns(name)
        lo, hi = np.asarray(intervals[low_col], dtype=float), np.asarray(intervals[high_col], dtype=float)
        paired = np.isfinite(lo) & np.isfinite(hi)
        any_paired |= paired
        ends = (p2 * weight * (lo - shown), p2 * weight * (hi - shown))
        low += np.where(paired, np.minimum(*ends), 0.0)
        high += np.where(paired, np.maximum(*ends), 0.0)
    keep = any_paired & np.isfinite(score)
    return np.where(keep, low, np.nan), np.where(keep, high, np.nan)


def _column(frame: pd.DataFrame, metric: str) -> np.ndarray:
    if metric not in frame.columns:
        return np.full(len(frame), np.nan)
    return frame[metric].to_numpy(dtype=float)


def _check_baselines(
    rows: pd.DataFrame, baselines: pd.DataFrame, config: RatioConfig | None
) -> pd.DataFrame:
    """Blank the scores of rows whose baseline is unusable, recompute when asked, and say in
    ``note`` why a row is not ranked (``ranked`` column)."""
    rows = rows.copy()
    aligned = baselines.reindex(rows["baseline_run_id"]).set_index(rows.index)
    no_tag = rows["baseline_run_id"].isna()
    not_found = ~no_tag & aligned["run_id"].isna()
    deleted = ~not_found & aligned["deleted"].fillna(False).astype(bool)
    base_status = aligned["status"].where(~(not_found | no_tag))
    unfinished_base = ~not_found & ~no_tag & ~deleted & (base_status != "FINISHED")
    other_hw = (
        aligned["hardware"].notna()
        & rows["hardware"].notna()
        & (aligned["hardware"] != rows["hardware"])
    )
    if config is not None:
        rows[list(SCORE_COLUMNS)] = recompute_scores(rows, aligned, config)
        if not config.score_at_chance:
            rows.loc[rows["ocs_withheld"].fillna("").astype(bool), list(SCORE_COLUMNS)] = np.nan
    blank = other_hw | ((no_tag | not_found | deleted) & (config is not None))
    rows.loc[blank, list(SCORE_COLUMNS)] = np.nan
    intervals = paired_intervals(rows, config)
    rows[intervals.columns] = intervals
    rows["seed"] = rows["seed"].fillna(aligned["seed"])
    unfinished = rows["status"] != "FINISHED"
    notes = pd.Series("", index=rows.index, dtype=object)
    withheld = rows["ocs_withheld"].fillna("").astype(str)
    notes[withheld != ""] = [NOTE_WITHHELD.format(reason=r) for r in withheld[withheld != ""]]
    notes[no_tag] = NOTE_NO_BASELINE_TAG
    base_ids = rows["baseline_run_id"]
    notes[not_found] = [NOTE_NO_BASELINE.format(base=b) for b in base_ids[not_found]]
    notes[deleted] = [NOTE_BASELINE_DELETED.format(base=b) for b in base_ids[deleted]]
    notes[unfinished_base] = [
        NOTE_BASELINE_STATUS.format(base=b, status=st)
        for b, st in zip(base_ids[unfinished_base], base_status[unfinished_base])
    ]
    notes[other_hw] = [
        NOTE_OTHER_HARDWARE.format(base=b, hw_base=hb, hw_run=hr)
        for b, hb, hr in zip(base_ids[other_hw], aligned.loc[other_hw, "hardware"], rows.loc[other_hw, "hardware"])
    ]
    notes[unfinished] = [NOTE_RUN_STATUS.format(status=st) for st in rows.loc[unfinished, "status"]]
    rows["note"] = notes
    rows["ranked"] = ~(no_tag | not_found | deleted | unfinished_base | other_hw | unfinished)
    rows["trust"] = trust_notes(rows)
    return rows


# --------------------------------------------------------------------------------------------------
# Ranking and Pareto fronts
# --------------------------------------------------------------------------------------------------


def pareto_front(cost: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Boolean mask of the points not dominated in (lower ``cost``, higher ``gain``).

    A point is dominated when another has ``cost <=`` and ``gain >=`` with one of them strict; equal
    points do not dominate each other. Points with a NaN coordinate are never on the front.
    """
    cost = np.asarray(cost, dtype=float)
    gain = np.asarray(gain, dtype=float)
    front = np.zeros(len(cost), dtype=bool)
    valid = np.flatnonzero(np.isfinite(cost) & np.isfinite(gain))
    if valid.size == 0:
        return front
    order = valid[np.lexsort((-gain[valid], cost[valid]))]  # cost ascending, gain descending
    c, g = cost[order], gain[order]
    starts = np.r_[True, c[1:] != c[:-1]]
    block = np.cumsum(starts) - 1
    best_in_block = g[starts]  # first of each equal-cost block has the highest gain
    best_before = np.r_[-np.inf, np.maximum.accumulate(best_in_block)[:-1]]
    front[order] = (g == best_in_block[block]) & (g > best_before[block])
    return front


def accuracy_metric(frame: pd.DataFrame, config: RatioConfig | None = None) -> str:
    """Accuracy key of the Pareto fronts: the config's performance metric, else top-1 or mAP50."""
    if config is not None:
        return config.performance
    if keys.MAP50 in frame.columns and (keys.TOP1 not in frame or frame[keys.TOP1].isna().all()):
        return keys.MAP50
    return keys.TOP1


def _mark_pareto(rows: pd.DataFrame, accuracy: str) -> pd.DataFrame:
    """Pareto flags within each (hardware, baseline) group."""
    rows = rows.copy()
    for flag in PARETO_COLUMNS:
        rows[flag] = False
    if rows.empty:
        return rows
    groups = rows.groupby(["hardware", "baseline_run_id"], dropna=False, sort=False).indices
    ranked = rows["ranked"].to_numpy(dtype=bool) if "ranked" in rows else np.ones(len(rows), dtype=bool)
    gain = np.where(ranked, _column(rows, accuracy), np.nan)  # unranked runs are on no front
    for flag, cost_key in PARETO_COLUMNS.items():
        cost = _column(rows, cost_key)
        mask = np.zeros(len(rows), dtype=bool)
        for positions in groups.values():
            mask[positions] = pareto_front(cost[positions], gain[positions])
        rows[flag] = mask
    return rows


def _resolve_sort(frame: pd.DataFrame, sort: str, ascending: bool | None) -> tuple[str, bool]:
    column = sort if sort in frame.columns else _alias(frame.columns, sort)
    if ascending is None:
        ascending = not keys.higher_is_better(column) if column in keys.METRICS else True
    return column, ascending


def _alias(columns: Iterable[str], sort: str) -> str:
    """A column whose metric key ends with ``/sort`` (``latency_ms`` -> ``speed/latency_ms``)."""
    matches = [c for c in columns if c.endswith("/" + sort)]
    if len(matches) == 1:
        return matches[0]
    sortable = ", ".join(c for c in columns if c in keys.METRICS or c in TAG_COLUMNS)
    raise ConfigError(
        "sort", f"no column {sort!r} in the leaderboard", f"sort by one of: {sortable}"
    )


def _rank(rows: pd.DataFrame, column: str, ascending: bool) -> pd.DataFrame:
    """Ranked rows sorted by ``column`` (NaN last, unranked), then the unranked rows the same way."""
    ranked = rows["ranked"] if "ranked" in rows else pd.Series(True, index=rows.index)
    parts = []
    for keep in (ranked, ~ranked):
        part = rows[keep].sort_values(column, ascending=ascending, na_position="last", kind="stable")
        rank = part[column].rank(ascending=ascending, method="min").astype("Int64")
        part.insert(0, "rank", rank if keep is ranked else pd.array([pd.NA] * len(part), dtype="Int64"))
        parts.append(part)
    return pd.concat(parts).reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def leaderboard(
    experiment: str | list[str],
    study: str | None = None,
    sort: str = "ocs",
    ascending: bool | None = None,
    technique: str | None = None,
    hardware: str | None = None,
    ratio_config: RatioConfig | None = None,
    include_failed: bool = False,
    tracking_uri: str | None = None,
    max_results: int | None = None,
    with_baseline: bool = False,
) -> pd.DataFrame:
    """Rank the compressed runs of one or more experiments (by name) by OCS or any column.

    Args:
        experiment: experiment name(s) (an id also works); unknown names raise ``TrackingError``.
        study, technique: keep runs whose ``netzip.study`` / ``netzip.technique`` tag equals this.
        sort: a column (metric key such as ``"ocs"`` or ``"speed/latency_ms"``; the part after the
            slash, ``"latency_ms"``, works too) or a tag column such as ``"recipe"``.
        ascending: sort direction; by default best first according to the metric's direction.
        hardware: keep runs whose ``netzip.hw.id`` or ``netzip.hw.cpu`` tag equals this.
        ratio_config: when given, ratios and OCS are recomputed from the logged raw metrics of each
            run and of the baseline named by its ``netzip.baseline_run_id`` tag.
        include_failed: append FAILED/KILLED runs (unranked, with their ``error``) at the end.
        tracking_uri: the MLflow store to read (default: MLflow's current tracking URI).
        max_results: return only the first ``max_results`` ranked rows (ranking and Pareto flags
            still consider every run).
        with_baseline: put the baselines the ranked rows refer to first, as rank 0 with ``role``
            ``baseline`` and their raw metrics (what the ratios compare against).

    Returns:
        One row per compressed run: ``rank``, ``run_id``, ``status``, ``study``, ``recipe``,
        ``technique``, ``runtime`` (``netzip.runtime``: torch, onnxruntime, openvino; blank for runs
        logged before runtimes were recorded), ``hardware`` (hw id), ``cpu``, ``baseline_run_id``, the four ``ratio/*``
        columns and ``ocs``, raw metrics under their keys (``accuracy/top1`` fraction,
        ``speed/latency_ms`` ms, ``speed/chats`` MAC-bits, ``size/disk_mb`` MB, ``size/params``,
        ``energy/joules_per_sample`` J, ``cie/impacted_classes`` when logged), ``pareto_latency``
        and ``pareto_size`` (non-dominated in accuracy vs latency / vs disk size among runs sharing
        hardware and baseline), ``seed`` (the baseline's), ``trust`` (measurement caveats,
        :mod:`netzip_mlflow.analysis.trust`), ``note`` (why a run is unranked or its ratios blank)
        and ``error``. Unranked rows (``rank`` NA) follow the ranked ones. The frame's
        ``attrs["sort"]`` names the sort column.

    Raises:
        ConfigError: ``study``/``technique``/``hardware`` match no run (the message lists the
            values that exist), or an unknown ``sort`` column.
    """
    if max_results is not None and max_results < 1:
        raise ConfigError("max_results", f"must be a positive count, got {max_results}")
    client = MlflowClient(tracking_uri)
    experiment_ids = _resolve_experiments(client, experiment)
    with _gc_paused():
        frame, baselines = _fetch(
            client, experiment_ids, study, technique, hardware, include_failed, ratio_config
        )

        if frame.empty:
            _check_filters(client, experiment_ids, study=study, technique=technique, hardware=hardware)

    failed = frame["status"].isin(FAILED_STATUSES)
    ranked = _check_baselines(frame[~failed], baselines, ratio_config)
    ranked = _mark_pareto(ranked, accuracy_metric(ranked, ratio_config))
    column, ascending = _resolve_sort(ranked, sort, ascending)
    ranked = _rank(ranked, column, ascending)
    if max_results is not None:
        ranked = ranked.head(max_results)
    parts = [ranked]
    if failed.any():
        parts.append(frame[failed].assign(note="run failed", pareto_latency=False, pareto_size=False))
    if with_baseline:
        usable = ranked["ranked"].astype(bool)  # not the baselines of runs on other hardware, say
        parts.insert(0, _baseline_rows(baselines, ranked.loc[usable, "baseline_run_id"]))
    result = pd.concat([p for p in parts if not p.empty] or [ranked], ignore_index=True)
    result[ROLE_COLUMN] = result[ROLE_COLUMN].fillna(keys.ROLE_COMPRESSED) if ROLE_COLUMN in result else keys.ROLE_COMPRESSED
    result = result[_column_order(result)]
    result.attrs["sort"] = column
    return result


def _baseline_rows(baselines: pd.DataFrame, referenced: pd.Series) -> pd.DataFrame:
    """The baselines ``referenced`` (in first-use order) as rank-0 rows with their trust notes."""
    wanted = [b for b in dict.fromkeys(referenced.dropna()) if b in baselines.index and not baselines.at[b, "deleted"]]
    rows = baselines.loc[wanted].reset_index(drop=True).drop(columns=list(SCORE_COLUMNS), errors="ignore")
    if rows.empty:
        return rows
    rows["trust"] = trust_notes(rows)
    notes = pd.Series("", index=rows.index, dtype=object)
    notes[rows["status"] != "FINISHED"] = [f"baseline run is {st}" for st in rows.loc[rows["status"] != "FINISHED", "status"]]
    return rows.assign(
        rank=pd.array([0] * len(rows), dtype="Int64"), recipe="baseline", technique="baseline",
        role=keys.ROLE_BASELINE, note=notes, pareto_latency=False, pareto_size=False,
    )


def _existing(client: MlflowClient, experiment_ids: list[str], tag_columns: Sequence[str]) -> dict[str, list[str]]:
    """Values of the given tag columns over the netzip runs of the experiments (sorted, distinct)."""
    found: dict[str, set[str]] = {c: set() for c in tag_columns}
    for role in (keys.ROLE_COMPRESSED, keys.ROLE_BASELINE):
        for run in _search(client, experiment_ids, [_tag_equals(keys.TAG_ROLE, role, "role")]):
            for column in tag_columns:
                for tag in ((TAG_HW_ID, TAG_HW_CPU) if column == "hardware" else (TAG_COLUMNS[column],)):
                    value = run.data.tags.get(tag)
                    if value:
                        found[column].add(value)
    return {c: sorted(v) for c, v in found.items()}


def _check_filters(client: MlflowClient, experiment_ids: list[str], **filters: str | None) -> None:
    """Raise :class:`ConfigError` when a filter value names nothing in the experiments."""
    given = {name: value for name, value in filters.items() if value is not None}
    if not given:
        return
    existing = _existing(client, experiment_ids, list(given))
    for name, value in given.items():
        if value not in existing[name]:
            names = ", ".join(existing[name][:30]) or "(none: the experiment has no netzip runs)"
            raise ConfigError(name, f"no run has {name} {value!r}", f"existing values: {names}")


def _fetch(
    client: MlflowClient,
    experiment_ids: list[str],
    study: str | None,
    technique: str | None,
    hardware: str | None,
    include_failed: bool,
    config: RatioConfig | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The compressed runs and their baselines (indexed by run id) as frames."""
    runs = _compressed_runs(client, experiment_ids, study, technique, hardware, include_failed)
    metrics = _metric_columns(runs, config)
    frame = _frame(runs, metrics)
    base_runs = _baseline_runs(client, experiment_ids, frame["baseline_run_id"].dropna().unique())
    baselines = _frame(base_runs, metrics).set_index("run_id", drop=False).rename_axis(None)
    return frame, baselines


def _column_order(frame: pd.DataFrame) -> list[str]:
    """Identity columns, then metrics (and any column added later), then flags and notes.

    Internal columns (``ranked``, ``deleted`` and the tags that feed ``trust``) are dropped.
    """
    first = ["rank", "run_id", "status", ROLE_COLUMN, "study", "seed", "recipe", "technique", "runtime", "hardware", "cpu"]
    last = ["baseline_run_id", *PARETO_COLUMNS, "trust", "note", "error"]
    internal = {"ranked", "deleted", *INTERNAL_COLUMNS}
    middle = [c for c in frame.columns if c not in first and c not in last and c not in internal]
    return [c for c in first if c in frame.columns] + middle + [c for c in last if c in frame.columns]


def baselines(
    experiment: str | list[str],
    study: str | None = None,
    hardware: str | None = None,
    tracking_uri: str | None = None,
) -> pd.DataFrame:
    """The baseline runs (one row each, same columns as the leaderboard's raw metrics and tags).

    Useful as the ``baseline`` of :func:`netzip_mlflow.analysis.plots.bubble_plot`.
    """
    client = MlflowClient(tracking_uri)
    experiment_ids = _resolve_experiments(client, experiment)
    base = [_tag_equals(keys.TAG_ROLE, keys.ROLE_BASELINE, "role")]
    if study is not None:
        base.append(_tag_equals(keys.TAG_STUDY, study, "study"))
    runs: dict[str, Run] = {}
    for extra in _hardware_filters(hardware):
        for run in _search(client, experiment_ids, base + extra):
            runs.setdefault(run.info.run_id, run)
    found = list(runs.values())
    frame = _frame(found, _metric_columns(found, None))
    return frame.drop(columns=list(SCORE_COLUMNS))


def hardware_label(frame: pd.DataFrame) -> pd.Series:
    """``"<cpu> [<hw id>]"`` per row (the hw id alone when the cpu tag is missing)."""
    hw = frame["hardware"].fillna("unknown").astype(str)
    cpu = frame["cpu"]
    labelled = cpu.notna()
    out = hw.copy()
    out[labelled] = cpu[labelled].astype(str) + " [" + hw[labelled] + "]"
    return out


def pivot_by_hardware(
    frame: pd.DataFrame, values: Sequence[str] = (keys.OCS, keys.LATENCY_MS)
) -> pd.DataFrame:
    """Recipes (rows, by name) across hardware (column groups) side by side.

    Columns are a MultiIndex ``(hardware label, value)``; when a recipe ran several times on one
    machine its best-OCS run is shown. Rows are ordered by mean OCS over the machines, best first.
    """
    missing = [v for v in values if v not in frame.columns]
    if missing:
        raise ConfigError("values", f"no column {missing} in the leaderboard", "pick metric keys")
    ranked = frame[~frame["status"].isin(FAILED_STATUSES)]
    if ROLE_COLUMN in ranked:
        ranked = ranked[ranked[ROLE_COLUMN] != keys.ROLE_BASELINE]
    if ranked.empty:  # an empty experiment: no machines, no recipes
        empty = pd.DataFrame(index=pd.Index([], name="recipe"), columns=pd.MultiIndex.from_arrays([[], []], names=["hardware", "metric"]))
        return empty
    ranked = ranked.assign(hw_label=hardware_label)
    best = ranked.sort_values(keys.OCS, ascending=False, na_position="last", kind="stable")
    best = best.drop_duplicates(["recipe", "hw_label"], keep="first")
    table = best.pivot(index="recipe", columns="hw_label", values=list(values))
    machines = list(dict.fromkeys(best["hw_label"]))
    table = table.swaplevel(0, 1, axis=1).reindex(
        columns=pd.MultiIndex.from_product([machines, list(values)])
    )
    if keys.OCS in values:
        mean_ocs = table.xs(keys.OCS, axis=1, level=1).mean(axis=1)
        table = table.loc[mean_ocs.sort_values(ascending=False, na_position="last").index]
    table.index.name = "recipe"
    table.columns.names = ["hardware", "metric"]
    return table


def leaderboard_by_hardware(
    experiment: str | list[str],
    study: str | None = None,
    technique: str | None = None,
    ratio_config: RatioConfig | None = None,
    tracking_uri: str | None = None,
    values: Sequence[str] = (keys.OCS, keys.LATENCY_MS),
    hardware: str | None = None,
) -> pd.DataFrame:
    """The same recipes on each machine side by side (the paper's PC vs Raspberry Pi comparison).

    Index: recipe name; columns: ``(hardware label, metric)`` for each of ``values`` (default OCS
    and median latency in ms). ``hardware`` keeps one machine only (as in :func:`leaderboard`).
    See :func:`pivot_by_hardware`.
    """
    frame = leaderboard(
        experiment, study=study, technique=technique, hardware=hardware,
        ratio_config=ratio_config, tracking_uri=tracking_uri,
    )
    return pivot_by_hardware(frame, values)


RUNTIME_VALUES: tuple[str, ...] = (keys.OCS, keys.LATENCY_MS, keys.RATIO_SPEEDUP, keys.DISK_MB, keys.TOP1)
"""Default columns of :func:`pivot_by_runtime`."""


def pivot_by_runtime(frame: pd.DataFrame, values: Sequence[str] = RUNTIME_VALUES) -> pd.DataFrame:
    """The best run (highest OCS) of each runtime on each machine, one row each.

    Index: ``(hardware label, runtime)``; columns: ``recipe``, ``technique`` and ``values`` (those
    present in ``frame``). Rows are ordered by OCS, best first, within each machine. Runs without a
    ``netzip.runtime`` tag are grouped under ``"unrecorded"``.
    """
    columns = [v for v in values if v in frame.columns]
    ranked = frame[~frame["status"].isin(FAILED_STATUSES)].assign(
        hw_label=hardware_label, runtime=frame["runtime"].fillna("unrecorded")
    )
    best = ranked.sort_values(keys.OCS, ascending=False, na_position="last", kind="stable")
    best = best.drop_duplicates(["hw_label", "runtime"], keep="first")
    table = best.set_index(["hw_label", "runtime"])[["recipe", "technique", *columns]]
    table.index.names = ["hardware", "runtime"]
    return table


def leaderboard_by_runtime(
    experiment: str | list[str],
    study: str | None = None,
    technique: str | None = None,
    ratio_config: RatioConfig | None = None,
    tracking_uri: str | None = None,
    values: Sequence[str] = RUNTIME_VALUES,
    hardware: str | None = None,
) -> pd.DataFrame:
    """The best recipe of each deployment runtime (the paper's case study 2 comparison); see
    :func:`pivot_by_runtime`. Ratios are against the study's baseline (PyTorch float32)."""
    frame = leaderboard(
        experiment, study=study, technique=technique, hardware=hardware,
        ratio_config=ratio_config, tracking_uri=tracking_uri,
    )
    return pivot_by_runtime(frame, values)
