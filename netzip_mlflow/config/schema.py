"""The study schema: what a study YAML may say, validated with messages that name the field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from netzip_mlflow.config.search import SearchSettings
from netzip_mlflow.errors import short_repr
from netzip_mlflow.evaluation.settings import MAX_BATCH, EvaluationSettings
from netzip_mlflow.tracking import keys


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Strict):
    """Where the images come from: a built-in dataset, an ImageFolder tree or (detection) a COCO folder.

    For ``builtin: shapes`` (the synthetic detection set) ``limit`` is the number of images drawn
    (default 300) and ``image_size`` their side.
    """

    builtin: Literal["mnist", "digits", "shapes"] | None = None
    path: Path | None = None
    image_size: int = Field(224, ge=8, le=1024)
    channels: Literal[1, 3] = 3
    test_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = Field(0, ge=0, description="seed of the train/test split, kept apart from the study seed")
    limit: int | None = Field(None, ge=20, le=100_000_000, description="keep only this many images (stratified)")
    batch_size: int = Field(128, ge=1, le=MAX_BATCH)
    skip_corrupt: bool = Field(
        False, description="skip (and count) image files that cannot be decoded instead of refusing the dataset"
    )

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.builtin is None) == (self.path is None):
            raise ValueError(
                "give exactly one of 'builtin' (mnist, digits; shapes for detection) or 'path' "
                "(an ImageFolder tree; a COCO folder for detection)"
            )
        return self


class TrainSpec(_Strict):
    """Training of the baseline: from scratch for a built model, fine-tuning for a loaded one.

    ``epochs`` defaults to 2 for a model built from ``model.arch`` and to 0 for one loaded from
    ``model.path`` (set it to fine-tune the loaded weights on the study's training data).
    """

    epochs: int = Field(2, ge=0, le=1000)
    lr: float = Field(0.05, gt=0, le=10)
    optimizer: Literal["sgd", "adam"] = "sgd"


class ModelSpec(_Strict):
    """The baseline model: a built-in architecture, trained here or loaded from a file."""

    arch: str = "resnet18"
    path: Path | None = None
    trust_model_file: bool = Field(
        False,
        description="allow a model file that is a whole pickled module, and logged models (resume, Ray "
        "workers) without a tensors-only copy to be unpickled: unpickling can run code, so only for "
        "files you made and stores only you can write to (CLI: --trust-model-file)",
    )
    train: TrainSpec = TrainSpec()

    @model_validator(mode="before")
    @classmethod
    def _loaded_models_train_only_when_asked(cls, raw: Any) -> Any:
        """``train.epochs`` defaults to 0 when ``path`` is given (the loaded weights are the baseline)."""
        if not isinstance(raw, dict) or raw.get("path") is None:
            return raw
        train = raw.get("train")
        if train is None:
            return {**raw, "train": {"epochs": 0}}
        if isinstance(train, dict) and "epochs" not in train:
            return {**raw, "train": {**train, "epochs": 0}}
        return raw


class EvaluationSpec(EvaluationSettings):
    """The ``evaluation:`` section: every :class:`~netzip_mlflow.evaluation.settings.EvaluationSettings`
    field (declared there once, shared with ``nz.EvaluationConfig``, the plugin and the CLI) plus
    what only a study does (MLflow system metrics while training)."""

    system_metrics: bool = Field(True, description="log MLflow system metrics (system/*) while training")
    system_metrics_interval_s: float = Field(5.0, gt=0, description="system metrics sampling interval, s")


RAY_RESERVED_RESOURCES = frozenset({"CPU", "GPU", "memory", "object_store_memory"})


class ResourceSpec(_Strict):
    """What one recipe's task needs on a cluster (``--executor ray``; the local executor ignores it).

    ``custom`` names the machine class the recipe must be measured on, e.g. ``{"rpi4": 1}``: a
    Ray worker started with ``ray start --resources '{"rpi4": 1}'`` offers it.
    """

    num_cpus: float = Field(1.0, ge=0, le=1024)
    num_gpus: float = Field(0.0, ge=0, le=64)
    custom: dict[str, float] = Field(default_factory=dict)

    @field_validator("custom")
    @classmethod
    def _custom_names(cls, value: dict[str, float]) -> dict[str, float]:
        for name, amount in value.items():
            if name in RAY_RESERVED_RESOURCES or name.startswith("node:"):
                raise ValueError(f"{short_repr(name)} is a built-in Ray resource; use num_cpus / num_gpus, or another name")
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}", name):
                raise ValueError(f"custom resource name {short_repr(name)} must be a letter then letters, digits, '_', '.', '-'")
            if not amount > 0:
                raise ValueError(f"custom resource {short_repr(name)} needs an amount > 0, got {short_repr(amount)}")
        return value

    @property
    def hardware_class(self) -> str:
        """The machine class this recipe is measured on: its custom resource names, or ``""``."""
        return "+".join(sorted(self.custom))


class RecipeSpec(_Strict):
    """One compression recipe: a name (unique in the study), a technique and its parameters.

    A recipe either names one ``technique`` with its ``params``, or chains ``steps`` (a list of
    ``{technique, params}``, e.g. prune_structured -> finetune -> ptq). A ``steps`` recipe is stored
    as ``technique: pipeline`` with ``params: {steps: [...]}``; the loader checks every step and
    names the field, e.g. ``recipes[2].steps[1].params.amount``.
    """

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")
    technique: str
    params: dict[str, Any] = Field(default_factory=dict)
    resources: ResourceSpec = ResourceSpec()
    timeout_s: float | None = Field(
        None, ge=0,
        description="seconds the whole recipe (compress, check, evaluate, log) may run before its run is "
        "marked FAILED (default: derived from the measurement timeout and the training epochs; 0: no limit)",
    )

    @model_validator(mode="before")
    @classmethod
    def _steps_are_a_pipeline(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        has_steps, has_technique = "steps" in raw, "technique" in raw
        if has_steps and has_technique:
            raise ValueError("give either 'technique' (with 'params') or 'steps', not both")
        if not has_steps and not has_technique:
            raise ValueError("give 'technique' (with 'params') or 'steps' (a list of {technique, params})")
        if not has_steps:
            return raw
        if "params" in raw:
            raise ValueError("a recipe with 'steps' has no 'params' of its own; give each step its params")
        if not isinstance(raw["steps"], list) or not raw["steps"]:
            raise ValueError("'steps' must be a non-empty list of {technique, params}")
        rest = {k: v for k, v in raw.items() if k != "steps"}
        return {**rest, "technique": "pipeline", "params": {"steps": raw["steps"]}}


class ReportSpec(_Strict):
    """What the study run's plots show."""

    radar_top_k: int = Field(5, ge=1, description="recipes (best OCS first) drawn on the radar plot")


class ExecutorSpec(_Strict):
    """Where recipes run: ``local`` (one after another in this process) or on a ``ray`` cluster."""

    kind: Literal["local", "ray"] = "local"
    address: str | None = Field(None, description="Ray cluster address, e.g. 'auto' or 'ray://head:10001'")


class SearchSpec(SearchSettings):
    """The ``search:`` block: recipe templates (a recipe whose params may hold ranges ``{low, high}``,
    choices ``{choices: [...]}`` or, for ``layer_policy``, ``{groups, low, high}``) and the settings of
    :class:`~netzip_mlflow.config.search.SearchSettings`."""

    recipes: list[RecipeSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_template_names(self) -> SearchSpec:
        names = [r.name for r in self.recipes]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"recipes[{i}].name {name!r} is used twice; template names must be unique")
        return self


class StudySpec(_Strict):
    """A whole study: data, baseline model, evaluation settings, recipes and an optional search."""

    study: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")
    experiment: str | None = None
    seed: int = 0
    task: Literal["classification", "detection"] = "classification"
    data: DataSpec
    model: ModelSpec = ModelSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    recipes: list[RecipeSpec] = Field(default_factory=list)
    executor: ExecutorSpec = ExecutorSpec()
    report: ReportSpec = ReportSpec()
    search: SearchSpec | None = None

    @model_validator(mode="after")
    def _something_to_run(self) -> StudySpec:
        if not self.recipes and self.search is None:
            raise ValueError("give at least one recipe in 'recipes' (netzip run) or a 'search' block (netzip search)")
        return self

    @model_validator(mode="after")
    def _unique_recipe_names(self) -> StudySpec:
        seen: set[str] = set()
        for i, recipe in enumerate(self.recipes):
            if recipe.name in seen:
                raise ValueError(f"recipes[{i}].name {recipe.name!r} is used twice; recipe names must be unique")
            seen.add(recipe.name)
        return self

    @model_validator(mode="after")
    def _data_fits_task(self) -> StudySpec:
        detection_data = self.data.builtin == "shapes"
        if self.task == "classification" and detection_data:
            raise ValueError("data.builtin 'shapes' is a detection dataset; set task: detection")
        if self.task == "detection" and self.data.builtin not in (None, "shapes"):
            raise ValueError(
                f"data.builtin {self.data.builtin!r} is a classification dataset; for task: detection "
                "use builtin: shapes or path: <COCO folder>"
            )
        return self

    @model_validator(mode="after")
    def _ratio_metrics_fit_task(self) -> StudySpec:
        ratios = self.evaluation.ratios
        for ratio in ("performance", "speedup", "compression", "efficiency"):
            key = getattr(ratios, ratio)
            if self.task == "detection" and ratio == "performance" and "performance" not in ratios.model_fields_set:
                continue  # the default (top-1) is replaced by mAP@0.5 for detection
            problem = keys.ratio_metric_problem(key, self.task)
            if problem:
                raise ValueError(f"evaluation.ratios.{ratio}: {problem}")
        return self

    @property
    def detection_arch(self) -> str:
        """The detector of a detection study: ``model.arch`` if given, else the built-in default."""
        from netzip_mlflow.models.detection_zoo import DEFAULT_DETECTOR

        return self.model.arch if "arch" in self.model.model_fields_set else DEFAULT_DETECTOR

    @property
    def experiment_name(self) -> str:
        """The MLflow experiment (default ``netzip-<study>``)."""
        return self.experiment or f"netzip-{self.study}"


#: Techniques that cannot be applied to a detection model, with the reason (shown in the ConfigError).
DETECTION_NOT_APPLICABLE: dict[str, str] = {
    "ptq": (
        "static int8 needs the model traced by torch.fx (or quant/dequant stubs around every int8 "
        "region); a torchvision detector's region proposals and NMS have data-dependent control flow "
        "that FX cannot trace, and roi_align/nms have no int8 kernels"
    ),
    "qat": (
        "quantization-aware training traces the model with torch.fx and trains it with the "
        "classification loop (cross-entropy on logits); a detector cannot be traced and trains on a "
        "dict of losses"
    ),
    "bnn": (
        "binarization trains the model with the classification loop (cross-entropy on logits); a "
        "detector trains on a dict of losses"
    ),
}
_EXPORT_REASON = (
    "a netzip runtime model takes one batch tensor and returns class logits; running a torchvision "
    "detector (a list of images in, per-image box dicts out of data-dependent region proposals and "
    "NMS) through an ONNX Runtime or OpenVINO session and scoring it is not implemented"
)
RUNTIME_TECHNIQUES = ("onnx", "openvino")
DETECTION_NOT_APPLICABLE["onnx"] = _EXPORT_REASON
DETECTION_NOT_APPLICABLE["openvino"] = _EXPORT_REASON
DETECTION_TECHNIQUES = ("ptq_dynamic", "fp16", "prune_unstructured", "prune_structured")


def task_recipe_problem(
    task: str, technique: str, params: dict[str, Any], device: str = "cpu"
) -> tuple[str, str, str] | None:
    """``(field, problem, fix)`` when a recipe cannot run in a study of ``task``, else ``None``.

    Field names are relative to the recipe (``technique``, ``params.finetune_epochs``).
    """
    if technique == "pipeline":
        for index, step in enumerate(params.get("steps", [])):
            problem = task_recipe_problem(task, step["technique"], step["params"], device)
            if problem is not None:
                return (f"steps[{index}].{problem[0]}", problem[1], problem[2])
        return None
    if technique in RUNTIME_TECHNIQUES and device != "cpu":
        return (
            "technique",
            f"{technique!r} runs the model in a CPU runtime, but the study evaluates on {device}",
            "set evaluation.device: cpu for a study with onnx or openvino recipes",
        )
    if task != "detection":
        return None
    if technique == "fp16" and not device.startswith("cuda"):
        return (
            "technique",
            "'fp16' does not apply to detection on CPU: torchvision's CPU nms kernel has no float16 "
            "version, so a half-precision detector cannot run its own postprocessing",
            "evaluate on a GPU (evaluation.device: cuda) or use ptq_dynamic, prune_unstructured or prune_structured",
        )
    if technique in DETECTION_NOT_APPLICABLE:
        return (
            "technique",
            f"{technique!r} does not apply to detection: {DETECTION_NOT_APPLICABLE[technique]}",
            f"use one of {', '.join(DETECTION_TECHNIQUES)}",
        )
    if technique in ("prune_unstructured", "prune_structured") and int(params.get("finetune_epochs", 0)):
        return (
            "params.finetune_epochs",
            "fine-tuning after pruning uses the classification training loop, which cannot train a detector",
            "set finetune_epochs: 0 in a detection study",
        )
    if technique == "prune_structured" and params.get("importance") == "taylor":
        return (
            "params.importance",
            "taylor importance needs a cross-entropy gradient on class logits, which a detector does not output",
            "use importance: l1, l2 or random",
        )
    return None
