"""Pipelines: several techniques applied one after the other ("deep compression").

A pipeline is a list of steps, each ``{"technique": name, "params": {...}}``, e.g.::

    steps = [
        {"technique": "prune_structured", "params": {"amount": 0.5}},
        {"technique": "finetune", "params": {"epochs": 2}},
        {"technique": "ptq"},
    ]
    result = compress_pipeline(model, steps, data=loader)

Every step gets the previous step's model; a technique whose result is no longer a float model
(``ptq``, ``ptq_dynamic``, ``qat``, ``fp16``: ``TechniqueSpec.final``) must be the last step.
In a study YAML a recipe says ``steps:`` instead of ``technique:``/``params:``; it is stored as the
technique ``pipeline`` with ``params: {steps: [...]}``, so its MLflow runs are tagged
``netzip.technique=pipeline`` and the chain is in the ``result.steps`` param (``a+b+c``).

``result.info`` holds ``steps`` (``"prune_structured+finetune+ptq"``), ``pipeline_steps`` (count)
and every step's own info as ``step<k>.<key>`` with ``k`` counting from 1 (``step1.channel_ratio``,
``step3.quantized_layers``...). Training epochs reported through ``on_epoch_end`` are numbered
continuously across steps (a 2-epoch fine-tune after a 1-epoch one reports epochs 1 and 2), so
MLflow step metrics of the whole pipeline form one curve.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from netzip_mlflow.compression.registry import PIPELINE, apply_technique, compress, get_technique
from netzip_mlflow.compression.result import CompressionResult, InfoValue
from netzip_mlflow.compression.spec import ParamValue, TechniqueSpec, TrainingHooks
from netzip_mlflow.errors import ConfigError, short_repr

_STEP_KEYS = ("technique", "params")


def validate_steps(steps: Any) -> list[dict[str, Any]]:
    """Check a list of pipeline steps and fill in every step's default parameters.

    Returns:
        ``[{"technique": name, "params": {complete, checked params}}, ...]``.

    Raises:
        ConfigError: the field names the step, e.g. ``steps[1].params.amount``,
            ``steps[0].technique``, or ``steps`` itself when it is not a non-empty list.
    """
    if isinstance(steps, str | bytes) or not isinstance(steps, Sequence) or not steps:
        raise ConfigError(
            "steps",
            f"must be a non-empty list of steps, got {short_repr(steps)}",
            "e.g. steps: [{technique: prune_structured, params: {amount: 0.5}}, {technique: ptq}]",
        )
    checked: list[dict[str, Any]] = []
    previous: TechniqueSpec | None = None
    for index, step in enumerate(steps):
        where = f"steps[{index}]"
        if not isinstance(step, Mapping):
            raise ConfigError(
                where, f"must be a mapping with 'technique' and 'params', got {short_repr(step)}"
            )
        for key in step:
            if key not in _STEP_KEYS:
                raise ConfigError(
                    f"{where}.{key}", "unknown key", "a step has technique and params"
                )
        if "technique" not in step:
            raise ConfigError(f"{where}.technique", "is missing", "name the step's technique")
        name = step["technique"]
        if name == PIPELINE:
            raise ConfigError(
                f"{where}.technique", "a step cannot itself be a pipeline",
                "list its steps here instead",
            )
        try:
            spec = get_technique(name)
            params = spec.validate(step.get("params"))
        except ConfigError as exc:
            raise ConfigError(f"{where}.{exc.field}", exc.problem, exc.fix) from None
        if previous is not None and previous.final:
            raise ConfigError(
                f"{where}.technique",
                f"{name!r} cannot follow {previous.name!r}, whose model is no longer a float model",
                f"make {previous.name} the last step",
            )
        checked.append({"technique": spec.name, "params": params})
        previous = spec
    return checked


@dataclass
class _EpochCounter:
    """Renumbers the epochs of successive training steps into one continuous sequence."""

    outer: Callable[[int, dict[str, float]], None] | None
    done: int = 0

    def hooks(self, progress: bool) -> TrainingHooks:
        offset = self.done

        def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
            self.done = offset + epoch + 1
            if self.outer is not None:
                self.outer(offset + epoch, metrics)

        return TrainingHooks(on_epoch_end=on_epoch_end, progress=progress)


def _apply_pipeline(
    model: nn.Module,
    params: dict[str, Any],
    data: Iterable | None,
    example_inputs: torch.Tensor | None,
    hooks: TrainingHooks,
) -> CompressionResult:
    """Apply the validated ``params["steps"]`` in order to ``model`` (already a private copy)."""

    steps: list[dict[str, Any]] = params["steps"]
    counter = _EpochCounter(hooks.on_epoch_end)
    info: dict[str, InfoValue] = {
        "steps": "+".join(step["technique"] for step in steps),
        "pipeline_steps": len(steps),
    }
    tags: dict[str, str] = {}
    for number, step in enumerate(steps, start=1):
        spec = get_technique(step["technique"])
        result = apply_technique(
            spec, model, step["params"], data, example_inputs, counter.hooks(hooks.progress)
        )
        model = result.model
        info[f"step{number}.technique"] = spec.name
        info.update({f"step{number}.{key}": value for key, value in result.info.items()})
        tags.update(result.tags)
    return CompressionResult(model, info, tags)


@dataclass(frozen=True)
class PipelineSpec(TechniqueSpec):
    """The ``pipeline`` technique: its only parameter, ``steps``, is a list checked step by step."""

    def validate(self, params: Mapping[str, Any] | None) -> dict[str, ParamValue]:
        """``{"steps": [checked steps]}``; errors name ``steps[<i>]....`` (see validate_steps)."""
        if not isinstance(params, Mapping):
            raise ConfigError("params", "a pipeline needs params: {steps: [...]}")
        for key in params:
            if key != "steps":
                raise ConfigError(f"params.{key}", "unknown parameter for a pipeline",
                                  "a pipeline has only steps")
        return {"steps": validate_steps(params.get("steps"))}  # type: ignore[dict-item]


PIPELINE_SPEC = PipelineSpec(
    name=PIPELINE,
    description="several techniques in order, e.g. prune_structured -> finetune -> ptq "
    "(YAML: steps: [{technique, params}, ...])",
    params=(),
    needs_data=False,
    needs_example_inputs=False,
    data_usage="whatever its steps need",
    apply=_apply_pipeline,
)


def compress_pipeline(
    model: nn.Module,
    steps: Sequence[Mapping[str, Any]],
    data: Iterable | None = None,
    example_inputs: torch.Tensor | None = None,
    *,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
) -> CompressionResult:
    """Compress a copy of ``model`` with several techniques in order.

    Args:
        model: the float model; never modified.
        steps: ``[{"technique": name, "params": {...}}, ...]``; ``params`` may be left out.
        data: batches for the steps that calibrate or train.
        example_inputs: a batch for tracing; the first batch of ``data`` when ``None``.
        on_epoch_end: called after every training epoch of every step, epochs numbered
            continuously over the whole pipeline.
        progress: show tqdm progress bars while training.

    Returns:
        One :class:`CompressionResult`: the last step's model, ``info`` of every step (see the
        module docstring).

    Raises:
        ConfigError: a step is invalid (the field names it, e.g. ``steps[1].params.amount``) or
            lacks the data it needs.
        CompressionError: a step cannot be applied to the model it received.
    """

    return compress(
        model, PIPELINE, {"steps": list(steps)}, data, example_inputs,
        on_epoch_end=on_epoch_end, progress=progress,
    )
