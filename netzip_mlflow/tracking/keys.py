"""The metric-key schema: the single source of every metric name, its unit and its direction.

The keys are a contract (docs/architecture.md, "MLflow layout"); the CLI, the leaderboard, the plots and the README table
are all generated from :data:`METRICS`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    """One metric key with its unit, direction and meaning."""

    key: str
    unit: str
    higher_is_better: bool
    description: str


def _m(key: str, unit: str, higher: bool, description: str) -> MetricSpec:
    return MetricSpec(key, unit, higher, description)


TOP1 = "accuracy/top1"
TOP5 = "accuracy/top5"
PRECISION_MACRO = "accuracy/precision_macro"
RECALL_MACRO = "accuracy/recall_macro"
F1_MACRO = "accuracy/f1_macro"
PRECISION_MICRO = "accuracy/precision_micro"
RECALL_MICRO = "accuracy/recall_micro"
F1_MICRO = "accuracy/f1_micro"
MAP50 = "accuracy/map50"
MAP50_95 = "accuracy/map50_95"
PRECISION_IOU50 = "accuracy/precision_iou50"
RECALL_IOU50 = "accuracy/recall_iou50"
AGREEMENT = "accuracy/agreement"
LATENCY_MS = "speed/latency_ms"
LATENCY_MEAN_MS = "speed/latency_ms_mean"
LATENCY_P90_MS = "speed/latency_ms_p90"
LATENCY_P99_MS = "speed/latency_ms_p99"
LATENCY_CI95_REL = "speed/latency_ci95_rel"
LATENCY_SAMPLES = "speed/latency_n"
THROUGHPUT = "speed/throughput_per_s"
MACS = "speed/macs"
MACS_EFFECTIVE = "speed/macs_effective"
CHATS = "speed/chats"
CHATS_EFFECTIVE = "speed/chats_effective"
DISK_MB = "size/disk_mb"
DISK_MB_GZIP = "size/disk_mb_gzip"
PARAMS = "size/params"
PARAMS_NONZERO = "size/params_nonzero"
SPARSITY = "size/sparsity"
CPU_UTIL = "resources/cpu_util_pct"
CPU_BACKGROUND = "resources/cpu_background_pct"
RAM_PEAK = "resources/ram_mb_peak"
RAM_MODEL = "resources/ram_mb_model"
GPU_UTIL = "resources/gpu_util_pct"
GPU_MEM_PEAK = "resources/gpu_mem_mb_peak"
ENERGY_PER_SAMPLE = "energy/joules_per_sample"
POWER = "energy/power_w"
IDLE_POWER = "energy/idle_power_w"
RATIO_PERFORMANCE = "ratio/performance"
RATIO_SPEEDUP = "ratio/speedup"
RATIO_COMPRESSION = "ratio/compression"
RATIO_EFFICIENCY = "ratio/efficiency"
RATIO_SPEEDUP_PAIRED = "ratio/speedup_paired"
RATIO_SPEEDUP_PAIRED_LOW = "ratio/speedup_paired_ci95_low"
RATIO_SPEEDUP_PAIRED_HIGH = "ratio/speedup_paired_ci95_high"
RATIO_EFFICIENCY_PAIRED = "ratio/efficiency_paired"
RATIO_EFFICIENCY_PAIRED_LOW = "ratio/efficiency_paired_ci95_low"
RATIO_EFFICIENCY_PAIRED_HIGH = "ratio/efficiency_paired_ci95_high"
PAIRED_ROUNDS = "ratio/paired_rounds"
PAIRED_CALLS_PER_BLOCK = "ratio/paired_calls_per_block"
OCS = "ocs"
CIE_CLASSES = "cie/impacted_classes"
CIE_IMAGES = "cie/impacted_images"

METRICS: dict[str, MetricSpec] = {
    s.key: s
    for s in (
        _m(TOP1, "fraction", True, "top-1 accuracy"),
        _m(TOP5, "fraction", True, "top-5 accuracy"),
        _m(PRECISION_MACRO, "fraction", True, "precision, unweighted mean over classes"),
        _m(RECALL_MACRO, "fraction", True, "recall, unweighted mean over classes"),
        _m(F1_MACRO, "fraction", True, "F1, unweighted mean over classes"),
        _m(PRECISION_MICRO, "fraction", True, "precision over all samples"),
        _m(RECALL_MICRO, "fraction", True, "recall over all samples"),
        _m(F1_MICRO, "fraction", True, "F1 over all samples"),
        _m(MAP50, "fraction", True, "detection mean average precision at IoU 0.5"),
        _m(MAP50_95, "fraction", True, "detection mAP averaged over IoU 0.5:0.95"),
        _m(PRECISION_IOU50, "fraction", True, "detection precision at IoU 0.5, score >= 0.5"),
        _m(RECALL_IOU50, "fraction", True, "detection recall at IoU 0.5, score >= 0.5"),
        _m(AGREEMENT, "fraction", True, "share of samples whose top-1 equals the baseline's"),
        _m(LATENCY_MS, "ms", False, "median latency of one batch"),
        _m(LATENCY_MEAN_MS, "ms", False, "mean latency of one batch"),
        _m(LATENCY_P90_MS, "ms", False, "90th percentile latency of one batch"),
        _m(LATENCY_P99_MS, "ms", False, "99th percentile latency of one batch"),
        _m(LATENCY_CI95_REL, "fraction", False, "half-width of the 95% CI of the median / median"),
        _m(LATENCY_SAMPLES, "count", True, "timed batches behind the latency figures"),
        _m(THROUGHPUT, "samples/s", True, "samples per second at the latency batch size"),
        _m(MACS, "MACs", False, "multiply-accumulates per sample as executed"),
        _m(MACS_EFFECTIVE, "MACs", False, "MACs scaled by each layer's weight density"),
        _m(CHATS, "MAC-bits", False, "sum over layers of MACs x weight bit-width"),
        _m(CHATS_EFFECTIVE, "MAC-bits", False, "CHATS from the effective MACs"),
        _m(DISK_MB, "MB (1e6 B)", False, "serialized state_dict on disk"),
        _m(DISK_MB_GZIP, "MB (1e6 B)", False, "the serialized model after gzip -9"),
        _m(PARAMS, "count", False, "parameters, packed quantized weights included"),
        _m(PARAMS_NONZERO, "count", False, "parameters that are not exactly zero"),
        _m(SPARSITY, "fraction", True, "share of parameters that are zero"),
        _m(CPU_UTIL, "% of machine", False, "evaluating process CPU use during inference"),
        _m(CPU_BACKGROUND, "% of machine", False, "whole-machine CPU use just before inference"),
        _m(RAM_PEAK, "MB (1e6 B)", False, "peak RSS of the evaluating process during inference"),
        _m(RAM_MODEL, "MB (1e6 B)", False, "peak anonymous memory minus that before the model was loaded"),
        _m(GPU_UTIL, "%", False, "GPU utilisation during inference (NVML)"),
        _m(GPU_MEM_PEAK, "MB (1e6 B)", False, "peak GPU memory allocated by the process"),
        _m(ENERGY_PER_SAMPLE, "J", False, "energy per sample, idle power subtracted"),
        _m(POWER, "W", False, "mean power during inference, idle subtracted"),
        _m(IDLE_POWER, "W", False, "idle power measured just before inference"),
        _m(RATIO_PERFORMANCE, "x", True, "compressed / original accuracy (paper eq. 10)"),
        _m(RATIO_SPEEDUP, "x", True, "zeta x original / compressed speed metric (eq. 7)"),
        _m(RATIO_COMPRESSION, "x", True, "original / compressed size (eq. 8)"),
        _m(RATIO_EFFICIENCY, "x", True, "original / compressed energy (eq. 9)"),
        _m(RATIO_SPEEDUP_PAIRED, "x", True, "baseline / compressed latency, timed interleaved (median of rounds)"),
        _m(RATIO_SPEEDUP_PAIRED_LOW, "x", True, "lower end of the 95% CI of the paired speedup"),
        _m(RATIO_SPEEDUP_PAIRED_HIGH, "x", True, "upper end of the 95% CI of the paired speedup"),
        _m(RATIO_EFFICIENCY_PAIRED, "x", True, "baseline / compressed energy per call, metered interleaved"),
        _m(RATIO_EFFICIENCY_PAIRED_LOW, "x", True, "lower end of the 95% CI of the paired efficiency"),
        _m(RATIO_EFFICIENCY_PAIRED_HIGH, "x", True, "upper end of the 95% CI of the paired efficiency"),
        _m(PAIRED_ROUNDS, "count", True, "ABBA rounds behind the paired ratios"),
        _m(PAIRED_CALLS_PER_BLOCK, "count", True, "calls per block of the paired rounds"),
        _m(OCS, "score", True, "Overall Compression Success (paper eq. 11)"),
        _m(CIE_CLASSES, "count", False, "classes impacted by compression (seed 002)"),
        _m(CIE_IMAGES, "images", False, "estimated images impacted (seed 002 step 7)"),
    )
}

CLASSIFICATION_ONLY = frozenset({TOP1, TOP5, PRECISION_MACRO, RECALL_MACRO, F1_MACRO, PRECISION_MICRO, RECALL_MICRO, F1_MICRO, AGREEMENT, CIE_CLASSES, CIE_IMAGES})
"""Metrics only a classification study logs."""
DETECTION_ONLY = frozenset({MAP50, MAP50_95, PRECISION_IOU50, RECALL_IOU50})
"""Metrics only a detection study logs."""
NOT_RATIO_INPUTS = frozenset({RATIO_PERFORMANCE, RATIO_SPEEDUP, RATIO_COMPRESSION, RATIO_EFFICIENCY, OCS, AGREEMENT})
"""Metrics that are derived from a baseline (or are ratios themselves): a ratio cannot be built on them."""


def ratio_metric_problem(key: str, task: str) -> str | None:
    """Why ``key`` cannot feed a ratio of a ``task`` study (``classification``/``detection``), or ``None``."""
    if key in NOT_RATIO_INPUTS:
        return f"{key} is computed against the baseline, so a ratio cannot be built on it"
    if task == "classification" and key in DETECTION_ONLY:
        return f"{key} is a detection metric; a classification study does not log it (use e.g. {TOP1})"
    if task == "detection" and key in CLASSIFICATION_ONLY:
        return f"{key} is a classification metric; a detection study does not log it (use e.g. {MAP50})"
    return None


RATIO_KEYS: dict[str, str] = {
    "performance": RATIO_PERFORMANCE,
    "speedup": RATIO_SPEEDUP,
    "compression": RATIO_COMPRESSION,
    "efficiency": RATIO_EFFICIENCY,
}

PAIRED_RATIOS: dict[str, tuple[str, str, str]] = {
    "speedup": (RATIO_SPEEDUP_PAIRED, RATIO_SPEEDUP_PAIRED_LOW, RATIO_SPEEDUP_PAIRED_HIGH),
    "efficiency": (RATIO_EFFICIENCY_PAIRED, RATIO_EFFICIENCY_PAIRED_LOW, RATIO_EFFICIENCY_PAIRED_HIGH),
}
"""Ratio name -> (paired median, CI low, CI high) metric keys."""
PAIRED_SOURCES: dict[str, tuple[str, ...]] = {
    "speedup": (LATENCY_MS, THROUGHPUT),
    "efficiency": (ENERGY_PER_SAMPLE,),
}
"""Ratio name -> the metrics whose ratio the paired measurement replaces when it feeds that ratio."""

# Tags (docs/architecture.md, "MLflow layout").
TAG_ROLE = "netzip.role"
TAG_STUDY = "netzip.study"
TAG_BASELINE_RUN = "netzip.baseline_run_id"
TAG_TECHNIQUE = "netzip.technique"
TAG_RECIPE = "netzip.recipe"
TAG_ENERGY_METER = "netzip.energy_meter"
TAG_ERROR = "netzip.error"
TAG_TASK = "netzip.task"
TAG_CIE_METHOD = "netzip.cie.method"  # "single-model pipeline" or "population (Welch t-test)"
TAG_MISSING_RATIOS = "netzip.ocs.missing_ratios"
TAG_OMITTED_METRICS = "netzip.omitted_metrics"  # metrics left out as undefined, and why
TAG_LATENCY_TARGET_MET = "netzip.latency.target_met"
TAG_LATENCY_TIMER = "netzip.latency.timer"
TAG_LATENCY_KERNELS = "netzip.latency.kernels"  # binary layers run on float kernels (bnn)
TAG_RUNTIME = "netzip.runtime"  # torch, onnxruntime or openvino
TAG_RUNTIME_THREAD_OPTION = "netzip.runtime.thread_option"  # the runtime's option that fixed threads
TAG_RUNTIME_THREADS = "netzip.runtime.threads"
TAG_RUNTIME_ISOLATED = "netzip.runtime.isolated"
TAG_WEIGHTS_SHA256 = "netzip.weights_sha256"  # SHA-256 (hex) of the logged weights/state_dict.pt
TAG_REBUILD_SHA256 = "netzip.rebuild_sha256"  # SHA-256 (hex) of the logged weights/rebuild.json
TAG_PAIRED = "netzip.paired"  # "true (...)" or "false (why)"
TAG_PAIRED_TARGET_MET = "netzip.paired.target_met"
TAG_PAIRED_EFFICIENCY = "netzip.paired.efficiency"  # measured, estimate restating latency, or why absent
TAG_BASELINE_FINETUNED = "netzip.baseline.finetuned"  # "true": model.path weights fine-tuned here
TAG_OCS_WITHHELD = "netzip.ocs.withheld"  # why ratios and OCS were not computed (model at chance)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # MLflow 3: which view the UI opens an experiment in
EXPERIMENT_KIND = "custom_model_development"  # the runs/model-training view, not the GenAI overview
TAG_HW_PREFIX = "netzip.hw."
TAG_SW_PREFIX = "netzip.sw."
TAG_HW_ID = "netzip.hw.id"  # hash of the machine's hardware facts; ratios only within one id
TAG_CONFIG_HASH = "netzip.config_hash"  # what a study run / recipe run was made from (resume)
TAG_RESUMED = "netzip.resumed"
TAG_MODEL_SOURCE = "netzip.model_source"  # `netzip evaluate MODEL`: the model file or URI
TAG_CIE_POPULATION_ERROR = "netzip.cie.population_error"
TAG_EXECUTOR = "netzip.executor"
TAG_HW_CLASS = "netzip.hw_class"
TAG_BASELINE_OF = "netzip.baseline_of"  # baseline@<class> runs: the study's main baseline run
TAG_RAY_NODE_ID = "netzip.ray.node_id"
TAG_RAY_NODE_IP = "netzip.ray.node_ip"
TAG_RAY_HOSTNAME = "netzip.ray.hostname"
TAG_RAY_RESOURCES = "netzip.ray.resources"
TAG_LEADERBOARD_NOTE = "netzip.leaderboard.note"  # study run: why its leaderboard/plots are missing or incomplete
TAG_LEASE_PREFIX = "netzip.lease."  # experiment tag netzip.lease.<study>: who runs the study now (server stores)
ERROR_INTERRUPTED = "KeyboardInterrupt: interrupted by user"  # netzip.error of a run stopped by Ctrl-C (KILLED)
ROLE_STUDY = "study"
ROLE_BASELINE = "baseline"
ROLE_COMPRESSED = "compressed"
ROLE_TRIAL = "trial"  # a search trial stopped early (pruned): proxy metrics only, not in leaderboards

# Compression search (``netzip search``): tags on the search's parent run and on its trial runs.
TAG_SEARCH = "netzip.search"  # "true" on a study run that ran a search
TAG_SEARCH_OPTUNA_STUDY = "netzip.search.optuna_study"
TAG_SEARCH_STORAGE = "netzip.search.storage"  # the Optuna storage URL, password masked
TAG_SEARCH_BEST_RUNS = "netzip.search.best_run_ids"  # comma-separated (a Pareto set for several objectives)
TAG_TRIAL = "netzip.search.trial"  # the Optuna trial number
TAG_TRIAL_STATE = "netzip.search.state"  # COMPLETE, PRUNED or FAIL
TAG_TRIAL_FEASIBLE = "netzip.search.feasible"  # "true" / "false"
TAG_TRIAL_VIOLATED = "netzip.search.violated"  # the constraints a trial broke, e.g. "speed/macs<=2e8"
TAG_TRIAL_PRUNED_REASON = "netzip.search.pruned_reason"
PARAM_TRIAL_PREFIX = "trial."  # trial.number and every sampled parameter, as MLflow params
# Proxy measurements of a trial (model after compression, training switched off); not NetZIP metrics.
PROXY_TOP1 = "search/proxy_top1"
PROXY_MACS = "search/proxy_macs"
TAG_SEARCH_IMPORTANCES_ERROR = "netzip.search.importances_error"  # why Optuna's importances are missing
SEARCH_TRIAL_COUNTS = {  # metrics of the search's parent run: trials by outcome
    "COMPLETE": "search/trials_complete",
    "PRUNED": "search/trials_pruned",
    "FAIL": "search/trials_failed",
    "INFEASIBLE": "search/trials_infeasible",
}

# The Model Registry (``netzip promote``): tags on the registered model version.
TAG_PROMOTED_BY = "netzip.promoted_by"  # the ranking metric
TAG_PROMOTED_WHERE = "netzip.promoted_where"  # the --where conditions
TAG_SOURCE_RUN = "netzip.run_id"


def ratio_metric_tag(ratio: str) -> str:
    """Tag naming the metric that fed ``ratio`` (e.g. ``netzip.ratio.speedup_metric``)."""
    return f"netzip.ratio.{ratio}_metric"


def ratio_ci_columns(ratio: str) -> tuple[str, str]:
    """Leaderboard columns holding the 95% CI of ``ratio`` as shown (paired ratios only), e.g.
    ``("ratio/speedup_ci95_low", "ratio/speedup_ci95_high")``."""
    column = RATIO_KEYS[ratio]
    return f"{column}_ci95_low", f"{column}_ci95_high"


def ratio_change_column(ratio: str) -> str:
    """Leaderboard column saying whether a paired ``ratio`` is a measurable change (``False``: its
    CI does not clear 1.0 by ``RatioConfig.min_change_rel``), e.g. ``"ratio/speedup_changed"``."""
    return f"{RATIO_KEYS[ratio]}_changed"


def higher_is_better(key: str) -> bool:
    """Direction of a metric key; raises ``KeyError`` naming the key if it is unknown."""
    try:
        return METRICS[key].higher_is_better
    except KeyError:
        raise KeyError(
            f"unknown metric key {key!r}; known keys: {', '.join(sorted(METRICS))}"
        ) from None


# Artifact paths (relative to a run's artifact root).
PREDICTIONS_ARTIFACT = "predictions/predictions.npz"
OPS_ARTIFACT = "ops/per_layer.csv"
CONFUSION_ARTIFACT = "confusion/confusion_matrix.png"
IMPACT_FOLDER = "class_impact"
TRACEBACK_ARTIFACT = "error/traceback.txt"
STUDY_ARTIFACT = "study.yaml"
LEADERBOARD_FOLDER = "leaderboard"
PLOTS_FOLDER = "plots"
POPULATION_ARTIFACT = "class_impact/population.csv"
MODEL_WEIGHTS_FOLDER = "weights"  # the tensors-only copy of a logged model (tracking/stored_model.py)
MODEL_WEIGHTS_FILE = "state_dict.pt"  # in MODEL_WEIGHTS_FOLDER; SHA-256 in TAG_WEIGHTS_SHA256
MODEL_REBUILD_FILE = "rebuild.json"  # in MODEL_WEIGHTS_FOLDER; SHA-256 in TAG_REBUILD_SHA256
OPENVINO_IR_ARTIFACT = "openvino_ir"  # the IR folder inside an OpenVINO pyfunc model
