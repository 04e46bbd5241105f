"""The cheap proxy of a trial: the model after compression with training switched off.

Used to stop (Optuna "prune") trials before fine-tuning and the full measurement, by the rules of
:class:`~netzip_mlflow.config.search.TrialPruningSpec`. Training is switched off by setting every
``*epochs`` parameter that may be 0 to 0; the proxy stops before the first step that cannot run
without training (``finetune``, ``qat``, ``distill``), and steps after such a step are not in it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from netzip_mlflow.compression.pipeline import PIPELINE
from netzip_mlflow.compression.registry import compress, get_technique
from netzip_mlflow.config.schema import RecipeSpec
from netzip_mlflow.evaluation.accuracy import accuracy_metrics, predict
from netzip_mlflow.evaluation.ops import count_ops
from netzip_mlflow.search.objective import Constraint
from netzip_mlflow.tracking import keys

#: Techniques that change the architecture, hence the MACs.
STRUCTURAL = frozenset({"prune_structured", "distill", "nni"})


@dataclass(frozen=True)
class ProxyPlan:
    """What the proxy of one recipe is and what it can decide.

    Attributes:
        steps: the steps of the proxy recipe (training switched off); empty: no proxy.
        complete: the proxy covers the whole recipe and nothing trains: it *is* the final model.
        macs_final: no architecture-changing step comes after the proxy, so its MACs are final.
    """

    steps: list[dict[str, Any]]
    complete: bool
    macs_final: bool


def _steps(recipe: RecipeSpec) -> list[dict[str, Any]]:
    if recipe.technique == PIPELINE:
        return [dict(s) for s in recipe.params["steps"]]
    return [{"technique": recipe.technique, "params": dict(recipe.params)}]


def plan(recipe: RecipeSpec) -> ProxyPlan:
    """The proxy of a concrete (validated) recipe."""
    steps = _steps(recipe)
    proxy: list[dict[str, Any]] = []
    trained = False
    for step in steps:
        spec = get_technique(step["technique"])
        by_name = {p.name: p for p in spec.params}
        params = dict(step["params"])
        epochs = [k for k, v in params.items() if k.endswith("epochs") and isinstance(v, int) and v > 0]
        if any((by_name[k].low or 0) > 0 for k in epochs):
            break  # a training technique (finetune, qat, ...): the proxy ends here
        trained = trained or bool(epochs)
        params.update({k: 0 for k in epochs})
        proxy.append({"technique": spec.name, "params": params})
    rest = steps[len(proxy):]
    return ProxyPlan(
        steps=proxy,
        complete=not rest and not trained,
        macs_final=bool(proxy) and not any(s["technique"] in STRUCTURAL for s in rest),
    )


@dataclass(frozen=True)
class ProxyResult:
    """The proxy's top-1 accuracy (fraction) and MACs per sample."""

    top1: float
    macs: float

    def as_metrics(self) -> dict[str, float]:
        return {keys.PROXY_TOP1: self.top1, keys.PROXY_MACS: self.macs}


def measure(
    proxy: ProxyPlan, baseline: nn.Module, train: Iterable, test: Iterable, example_inputs: torch.Tensor
) -> ProxyResult:
    """Compress a copy of ``baseline`` with the proxy steps; its test top-1 and MACs per sample."""
    result = compress(baseline, proxy.steps, data=train, example_inputs=example_inputs, progress=False)
    top1 = accuracy_metrics(predict(result.model, test))[keys.TOP1]
    macs = count_ops(result.model, example_inputs[:1]).macs
    return ProxyResult(top1, float(macs))


def exact_for(proxy: ProxyPlan, bound: Constraint) -> bool:
    """Whether the proxy measures ``bound``'s metric as the final model will have it."""
    return (bound.metric == keys.MACS and proxy.macs_final) or (bound.metric == keys.TOP1 and proxy.complete)


def prune_reason(
    proxy: ProxyPlan, result: ProxyResult, bounds: list[Constraint], min_proxy_accuracy: float | None
) -> str | None:
    """Why the trial should stop now (one line), or ``None`` to go on."""
    measured: Mapping[str, float] = {keys.MACS: result.macs, keys.TOP1: result.top1}
    for bound in bounds:
        if exact_for(proxy, bound) and bound.value(measured) > 0:
            what = "MACs do not change with training or quantization" if bound.metric == keys.MACS else (
                "the recipe does not train, so the proxy is the final model")
            return f"{bound.label} broken already after compression ({bound.metric}={measured[bound.metric]:g}; {what})"
    if min_proxy_accuracy is not None and result.top1 < min_proxy_accuracy:
        return (f"proxy top-1 {result.top1:.4f} after compression, before fine-tuning, is below "
                f"search.pruning.min_proxy_accuracy {min_proxy_accuracy:g}")
    return None


def useful(proxy: ProxyPlan, bounds: list[Constraint], min_proxy_accuracy: float | None) -> bool:
    """Whether measuring the proxy can stop this trial at all (else it is skipped)."""
    if not proxy.steps:
        return False
    if min_proxy_accuracy is not None:
        return True
    return any(exact_for(proxy, b) for b in bounds)
