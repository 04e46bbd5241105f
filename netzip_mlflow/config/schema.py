"""The study schema: what a study YAML may say, validated with messages that name the field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from netzip_mlflow.tracking import keys


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Strict):
    """Where the images come from: a built-in dataset or an ImageFolder tree."""

    builtin: Literal["mnist", "digits"] | None = None
    path: Path | None = None
    image_size: int = Field(224, ge=8, le=1024)
    channels: Literal[1, 3] = 3
    test_fraction: float = Field(0.2, gt=0, lt=1)
    limit: int | None = Field(None, ge=20, description="keep only this many images (stratified)")
    batch_size: int = Field(128, ge=1, le=4096)

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.builtin is None) == (self.path is None):
            raise ValueError("give exactly one of 'builtin' (mnist, digits) or 'path' (an ImageFolder tree)")
        return self


class TrainSpec(_Strict):
    """Training of the baseline when no weights are given."""

    epochs: int = Field(2, ge=0, le=1000)
    lr: float = Field(0.05, gt=0, le=10)
    optimizer: Literal["sgd", "adam"] = "sgd"


class ModelSpec(_Strict):
    """The baseline model: a built-in architecture, trained here or loaded from a file."""

    arch: str = "resnet18"
    path: Path | None = None
    trust_model_file: bool = False
    train: TrainSpec = TrainSpec()


class LatencySpec(_Strict):
    warmup_s: float = Field(1.0, ge=0)
    target_ci_rel: float = Field(0.02, gt=0, lt=1)
    budget_s: float = Field(10.0, gt=0)
    min_samples: int = Field(30, ge=5)


class RatioSpec(_Strict):
    performance: str = keys.TOP1
    speedup: str = keys.CHATS
    compression: str = keys.DISK_MB
    efficiency: str = keys.ENERGY_PER_SAMPLE
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    zeta: float = Field(1.0, gt=0)

    @field_validator("performance", "speedup", "compression", "efficiency")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in keys.METRICS:
            raise ValueError(f"unknown metric key {value!r}; use one of {', '.join(sorted(keys.METRICS))}")
        return value


class EvaluationSpec(_Strict):
    batch_size: int = Field(1, ge=1)
    eval_batch_size: int = Field(256, ge=1)
    threads: int = Field(1, ge=1, le=1024)
    isolate: bool = True
    device: str = "cpu"
    idle_s: float = Field(1.0, ge=0)
    power_log: Path | None = None
    latency: LatencySpec = LatencySpec()
    ratios: RatioSpec = RatioSpec()


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
                raise ValueError(f"{name!r} is a built-in Ray resource; use num_cpus / num_gpus, or another name")
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}", name):
                raise ValueError(f"custom resource name {name!r} must be a letter then letters, digits, '_', '.', '-'")
            if not amount > 0:
                raise ValueError(f"custom resource {name!r} needs an amount > 0, got {amount!r}")
        return value

    @property
    def hardware_class(self) -> str:
        """The machine class this recipe is measured on: its custom resource names, or ``""``."""
        return "+".join(sorted(self.custom))


class RecipeSpec(_Strict):
    """One compression recipe: a name (unique in the study), a technique and its parameters."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")
    technique: str
    params: dict[str, Any] = Field(default_factory=dict)
    resources: ResourceSpec = ResourceSpec()


class ExecutorSpec(_Strict):
    """Where recipes run: ``local`` (one after another in this process) or on a ``ray`` cluster."""

    kind: Literal["local", "ray"] = "local"
    address: str | None = Field(None, description="Ray cluster address, e.g. 'auto' or 'ray://head:10001'")


class StudySpec(_Strict):
    """A whole study: data, baseline model, evaluation settings and recipes."""

    study: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")
    experiment: str | None = None
    seed: int = 0
    task: Literal["classification"] = "classification"
    data: DataSpec
    model: ModelSpec = ModelSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    recipes: list[RecipeSpec] = Field(min_length=1)
    executor: ExecutorSpec = ExecutorSpec()

    @model_validator(mode="after")
    def _unique_recipe_names(self) -> StudySpec:
        seen: set[str] = set()
        for i, recipe in enumerate(self.recipes):
            if recipe.name in seen:
                raise ValueError(f"recipes[{i}].name {recipe.name!r} is used twice; recipe names must be unique")
            seen.add(recipe.name)
        return self

    @property
    def experiment_name(self) -> str:
        """The MLflow experiment (default ``netzip-<study>``)."""
        return self.experiment or f"netzip-{self.study}"
