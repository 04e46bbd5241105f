"""The proxy of a trial: training switched off, what it can decide exactly."""

from __future__ import annotations

import torch

from netzip_mlflow.config.schema import RecipeSpec
from netzip_mlflow.compression.registry import validate_params
from netzip_mlflow.search import proxy as px
from netzip_mlflow.search.objective import Constraint
from netzip_mlflow.tracking import keys


def _pipeline(*steps) -> RecipeSpec:
    params = validate_params("pipeline", {"steps": [{"technique": t, "params": p} for t, p in steps]})
    return RecipeSpec(name="r", technique="pipeline", params=params)


def test_finetune_epochs_switched_off_and_ptq_kept() -> None:
    plan = px.plan(_pipeline(("prune_structured", {"amount": 0.5, "finetune_epochs": 2}), ("ptq", {})))
    assert [s["technique"] for s in plan.steps] == ["prune_structured", "ptq"]
    assert plan.steps[0]["params"]["finetune_epochs"] == 0
    assert plan.macs_final and not plan.complete  # it trains, so accuracy is not final


def test_proxy_stops_before_a_training_technique() -> None:
    plan = px.plan(_pipeline(("prune_structured", {"amount": 0.5}), ("finetune", {"epochs": 1}), ("ptq", {})))
    assert [s["technique"] for s in plan.steps] == ["prune_structured"]
    assert plan.macs_final and not plan.complete
    plan = px.plan(_pipeline(("finetune", {"epochs": 1}), ("prune_structured", {"amount": 0.5})))
    assert plan.steps == [] and not plan.macs_final  # a structural step after the cut


def test_a_recipe_without_training_is_its_own_proxy() -> None:
    plan = px.plan(RecipeSpec(name="q", technique="ptq", params=validate_params("ptq", {})))
    assert plan.complete and plan.macs_final


def test_prune_reasons() -> None:
    plan = px.ProxyPlan(steps=[{"technique": "ptq", "params": {}}], complete=False, macs_final=True)
    macs = Constraint(keys.MACS, 100.0, upper=True)
    top1 = Constraint(keys.TOP1, 0.9, upper=False)
    result = px.ProxyResult(top1=0.5, macs=150.0)
    assert "speed/macs<=100" in px.prune_reason(plan, result, [macs, top1], None)
    ok = px.ProxyResult(top1=0.5, macs=90.0)
    assert px.prune_reason(plan, ok, [macs, top1], None) is None  # top-1 not final: fine-tuning may recover
    assert "min_proxy_accuracy" in px.prune_reason(plan, ok, [macs, top1], 0.6)
    complete = px.ProxyPlan(steps=plan.steps, complete=True, macs_final=True)
    assert "accuracy/top1>=0.9" in px.prune_reason(complete, ok, [macs, top1], None)
    assert not px.useful(px.ProxyPlan([], True, True), [macs], 0.5)


def test_measure_matches_an_independent_count(tiny_model, tiny_loader) -> None:
    plan = px.plan(_pipeline(("prune_structured", {"amount": 0.5, "target": "macs"})))
    example = next(iter(tiny_loader))[0]
    result = px.measure(plan, tiny_model, tiny_loader, tiny_loader, example)
    from netzip_mlflow.compression.registry import compress

    pruned = compress(tiny_model, plan.steps, example_inputs=example, progress=False).model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in tiny_loader:
            correct += int((pruned(x).argmax(1) == y).sum())
            total += len(y)
    assert result.top1 == correct / total
    convs = [m for m in pruned.modules() if isinstance(m, torch.nn.Conv2d)]
    h, w = example.shape[2:]
    macs = sum(c.out_channels * c.in_channels * 9 * h * w for c in convs) + pruned.classifier.in_features * pruned.classifier.out_features
    assert result.macs == macs
