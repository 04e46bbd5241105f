"""Global structured pruning (``prune_structured``): channels physically removed, graph-aware.

torch-pruning builds the model's dependency graph (which channels of which layers must be removed
together: a conv's output channels, the following BatchNorm, the next layer's input channels,
residual additions...), ranks every channel group of the network in one global ranking and removes
the lowest ``pruning_ratio`` of the channels. The tensors really shrink: fewer parameters, fewer
MACs, a smaller ``state_dict`` and lower latency on ordinary dense kernels.

The user states the goal as a reduction of parameters (``target: params``) or of MACs (``target:
macs``); the channel ``pruning_ratio`` that reaches it is found by bisection, each trial pruning a
fresh copy and measuring it with ``tp.utils.count_ops_and_params`` (MACs per sample). The chosen
model is the trial whose reduction is at least ``amount`` and closest to it. The network's output
layer (the last Conv/Linear to run: the classifier) is never pruned, so ``num_classes`` is kept.

A per-layer sparsity policy (``layer_policy: "layer1=0.2,layer2=1.0,..."``, AMC-style) replaces the
one global ranking: each named module (a layer group) gets its own channel ratio, ``scale x
weight``, applied to every prunable layer inside it (ranked within the layer), and the bisection
finds the common ``scale`` that reaches ``amount``. The weights therefore give the policy's shape and
``amount`` its budget; groups not named are not pruned. :func:`policy_groups` lists the default groups
of a model (its top-level blocks that hold prunable layers), which ``netzip search`` samples.

``round_to`` keeps every pruned layer's channel count a multiple of it (torch-pruning's
``round_to``): odd counts such as 37 channels leave the vectorised conv kernels (oneDNN, MLAS) on
their slow remainder paths. The default, :data:`ROUND_TO`, was chosen by measurement
(bench/README.md, "Deployment runtimes").
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import torch
import torch_pruning as tp
from torch import nn

from netzip_mlflow.compression.common import (
    reference_shape,
    require_data,
    run_checked,
    train_for_technique,
)
from netzip_mlflow.compression.result import CompressionResult
from netzip_mlflow.compression.spec import (
    AMOUNT,
    LR,
    OPTIMIZER,
    SEED,
    ParamSpec,
    ParamValue,
    TechniqueSpec,
    TrainingHooks,
    epochs_param,
)
from netzip_mlflow.errors import CompressionError
from netzip_mlflow.models.training import iter_batches

#: default ``round_to`` (bench/README.md, "Deployment runtimes").
ROUND_TO = 8

_IMPORTANCES: dict[str, Callable[[], tp.importance.Importance]] = {
    "random": tp.importance.RandomImportance,
    "l1": lambda: tp.importance.MagnitudeImportance(p=1),
    "l2": lambda: tp.importance.MagnitudeImportance(p=2),
    "taylor": tp.importance.TaylorImportance,
}

#: Bisection stops after this many trials or when the ratio interval is narrower than _MIN_STEP.
_MAX_TRIALS = 20
#: ``result.info`` key prefix of a policy group's applied channel ratio (``policy.layer1``).
POLICY_PREFIX = "policy."
_MIN_STEP = 1e-3
#: Highest channel ratio a layer group of a policy gets (a layer keeps at least 5% of its channels).
MAX_GROUP_RATIO = 0.95


@dataclass
class _Trial:
    """One pruned copy: the channel ratio used, its size and cost, and its target reduction."""

    ratio: float
    model: nn.Module
    params: int
    macs: int
    reduction: float


def output_layer(model: nn.Module, example_inputs: torch.Tensor) -> tuple[str, nn.Module]:
    """The last Conv/Linear module to run on ``example_inputs`` (the classifier), with its name.

    Raises:
        CompressionError: the model has no Conv or Linear layer.
    """
    ran: list[tuple[str, nn.Module]] = []
    handles = [
        m.register_forward_hook(lambda *_, n=n, m=m: ran.append((n, m)))
        for n, m in model.named_modules()
        if isinstance(m, nn.modules.conv._ConvNd | nn.Linear)
    ]
    try:
        with torch.no_grad():
            model(example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    if not ran:
        raise CompressionError(
            "prune_structured: the model runs no Conv or Linear layer, so there are no channels to "
            "prune; use a quantization technique instead"
        )
    return ran[-1]


def _measure(model: nn.Module, example_inputs: torch.Tensor) -> tuple[int, int]:
    """``(MACs per sample, parameters)`` of ``model``."""
    macs, params = tp.utils.count_ops_and_params(model, example_inputs[:1])
    return int(macs), int(params)


def _taylor_gradients(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Fill ``.grad`` with the cross-entropy gradient of one batch (Taylor importance needs it)."""
    model.zero_grad(set_to_none=True)
    inputs, targets = batch
    nn.functional.cross_entropy(model(inputs), targets).backward()


@dataclass
class _Pruner:
    """Prunes fresh copies of ``model`` at a given channel ratio and measures them."""

    model: nn.Module
    example_inputs: torch.Tensor
    importance: str
    seed: int
    target: str
    base: tuple[int, int]  # (macs, params) of the unpruned model
    ignored_name: str
    grad_batch: tuple[torch.Tensor, torch.Tensor] | None
    kept: tuple[str, ...] = ()  # modules never pruned, with everything inside them
    policy: dict[str, float] | None = None  # layer group -> relative weight (layer_policy)
    round_to: int = 1  # pruned channel counts kept a multiple of this (1: any count)

    @property
    def max_scale(self) -> float:
        """The top of the bisection: 1 (all channels) globally; with a policy, the scale at which the
        largest-weight group reaches :data:`MAX_GROUP_RATIO`."""
        top = max((self.policy or {}).values(), default=0.0)
        return MAX_GROUP_RATIO / top if self.policy and top > 0 else 1.0

    def group_ratios(self, scale: float) -> dict[str, float]:
        """The channel ratio of each policy group at ``scale`` (capped at :data:`MAX_GROUP_RATIO`)."""
        return {name: min(scale * weight, MAX_GROUP_RATIO) for name, weight in (self.policy or {}).items()}

    def trial(self, ratio: float) -> _Trial:
        model = copy.deepcopy(self.model)
        ignored = [model.get_submodule(self.ignored_name)]
        ignored += [m for name in self.kept for m in model.get_submodule(name).modules()]
        if self.policy:  # local ranking, one ratio per group; layers outside the groups kept
            layout = {
                "global_pruning": False, "pruning_ratio": 0.0, "max_pruning_ratio": MAX_GROUP_RATIO,
                "pruning_ratio_dict": {model.get_submodule(n): r for n, r in self.group_ratios(ratio).items()},
            }
        else:
            layout = {"global_pruning": True, "pruning_ratio": ratio}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            pruner = tp.pruner.BasePruner(
                model, self.example_inputs[:1], importance=_IMPORTANCES[self.importance](),
                ignored_layers=ignored, round_to=self.round_to if self.round_to > 1 else None, **layout,
            )
            if self.grad_batch is not None:
                _taylor_gradients(model, self.grad_batch)
            pruner.step()
        model.zero_grad(set_to_none=True)
        macs, params = _measure(model, self.example_inputs)
        before = self.base[0] if self.target == "macs" else self.base[1]
        after = macs if self.target == "macs" else params
        return _Trial(ratio, model, params, macs, 1.0 - after / before)


def _search(pruner: _Pruner, amount: float, tolerance: float) -> tuple[_Trial, int]:
    """Bisect the channel ratio for a reduction in ``[amount, amount + tolerance]``.

    Returns:
        The feasible trial (reduction >= ``amount``) with the smallest reduction, and the number of
        trials.

    Raises:
        CompressionError: no ratio reaches ``amount``.
    """
    low, high = 0.0, pruner.max_scale
    best: _Trial | None = None
    most = 0.0
    trials = 0
    while trials < _MAX_TRIALS and high - low > _MIN_STEP:
        trial = pruner.trial((low + high) / 2)
        trials += 1
        most = max(most, trial.reduction)
        if trial.reduction < amount:
            low = trial.ratio
            continue
        high = trial.ratio
        if best is None or trial.reduction < best.reduction:
            best = trial
        if trial.reduction - amount <= tolerance:
            break
    if best is None:
        raise CompressionError(
            f"prune_structured: no channel pruning ratio removes {amount:.1%} of the "
            f"{pruner.target} (at most {most:.1%} was reached); lower params.amount"
        )
    return best, trials


def _kept_modules(model: nn.Module, names: str) -> tuple[str, ...]:
    """The module names in the comma-separated ``names`` (params.ignored_layers), checked to exist."""
    kept = tuple(n.strip() for n in names.split(",") if n.strip())
    known = dict(model.named_modules())
    for name in kept:
        if name not in known:
            raise CompressionError(
                f"prune_structured: params.ignored_layers names {name!r}, which is not a module of the "
                "model; use names from model.named_modules() (e.g. rpn,roi_heads for a torchvision detector)"
            )
    return kept


def _prunable(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.conv._ConvNd | nn.Linear)


def policy_groups(model: nn.Module, example_inputs: torch.Tensor) -> list[str]:
    """The default layer groups of a per-layer policy: the model's top-level modules that hold a
    prunable (Conv/Linear) layer other than the output layer, in definition order.

    When only one such module exists (a ``Sequential`` trunk), its children are the groups instead,
    descending until there are at least two (ResNet18: ``conv1, layer1, layer2, layer3, layer4``;
    the tiny CNN: ``features.0, features.3``).
    """
    head_name, head = output_layer(model, example_inputs)

    def holders(parent: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
        return [
            (f"{prefix}{name}", child) for name, child in parent.named_children()
            if any(_prunable(m) and m is not head for m in child.modules())
        ]

    groups = holders(model, "")
    while len(groups) == 1 and any(True for _ in groups[0][1].children()):
        groups = holders(groups[0][1], groups[0][0] + ".")
    if not groups:
        raise CompressionError(
            f"prune_structured: the model has no prunable layer besides its output layer {head_name!r}"
        )
    return [name for name, _ in groups]


def parse_policy(text: str, model: nn.Module) -> dict[str, float] | None:
    """``"layer1=0.5,layer2=1"`` -> ``{"layer1": 0.5, "layer2": 1.0}`` (``None`` for ``""``).

    Raises:
        CompressionError: a malformed entry, a weight outside [0, 1], or a name that is not a module.
    """
    if not text.strip():
        return None
    known = dict(model.named_modules())
    policy: dict[str, float] = {}
    for entry in (e.strip() for e in text.split(",") if e.strip()):
        name, sep, value = entry.partition("=")
        try:
            weight = float(value) if sep else float("nan")
        except ValueError:
            weight = float("nan")
        if not 0.0 <= weight <= 1.0:
            raise CompressionError(
                f"prune_structured: params.layer_policy entry {entry!r} is not NAME=WEIGHT with a "
                "weight in [0, 1]; e.g. layer_policy: 'layer1=0.2,layer2=1.0'"
            )
        if name.strip() not in known or not name.strip():
            raise CompressionError(
                f"prune_structured: params.layer_policy names {name.strip()!r}, which is not a module of "
                "the model; use names from model.named_modules() (e.g. layer1,layer2 for ResNet18)"
            )
        policy[name.strip()] = weight
    return policy


def _prune_structured(
    model: nn.Module,
    params: dict[str, ParamValue],
    data: Iterable | None,
    example_inputs: torch.Tensor | None,
    hooks: TrainingHooks,
) -> CompressionResult:
    """Remove channels globally until the parameter or MAC reduction reaches ``amount``."""
    model = model.eval()
    importance = str(params["importance"])
    grad_batch = None
    if importance == "taylor":
        why = "for Taylor importance (gradients of a batch)"
        data = require_data(data, "prune_structured", why)
        grad_batch = next(iter_batches(data, limit=1))
    expected = reference_shape(model, example_inputs)
    ignored_name, _ = output_layer(model, example_inputs)
    kept = _kept_modules(model, str(params["ignored_layers"]))
    policy = parse_policy(str(params["layer_policy"]), model)
    pruner = _Pruner(
        model, example_inputs, importance, int(params["seed"]), str(params["target"]),
        _measure(model, example_inputs), ignored_name, grad_batch, kept, policy, int(params["round_to"]),
    )
    best, trials = _search(pruner, float(params["amount"]), float(params["tolerance"]))
    pruned = best.model
    info: dict[str, ParamValue] = {
        "importance": importance,
        "target": pruner.target,
        "channel_ratio": best.ratio,
        "round_to": pruner.round_to,
        "search_trials": trials,
        "ignored_layers": ",".join((ignored_name, *kept)),
        "params_before": pruner.base[1],
        "params_after": best.params,
        "macs_before": pruner.base[0],
        "macs_after": best.macs,
        "param_reduction": 1.0 - best.params / pruner.base[1],
        "mac_reduction": 1.0 - best.macs / pruner.base[0],
    }
    if policy:  # the policy as applied: each group's channel ratio (channel_ratio is the scale)
        info.update({f"{POLICY_PREFIX}{name}": r for name, r in pruner.group_ratios(best.ratio).items()})
    info.update(
        train_for_technique(
            pruned, data, params, int(params["finetune_epochs"]), hooks, "prune_structured",
            "finetune",
        )
    )
    run_checked(pruned, example_inputs, expected, "prune_structured")
    return CompressionResult(pruned.eval(), info)


PRUNE_STRUCTURED = TechniqueSpec(
    name="prune_structured",
    description="global channel pruning with physical removal (torch-pruning dependency graph)",
    params=(
        replace(AMOUNT, help="fraction (0-1) of the parameters or MACs to remove, see target"),
        ParamSpec("target", str, "params", "what amount refers to: parameters or MACs",
                  choices=("params", "macs")),
        ParamSpec("importance", str, "l1", "channel ranking: random, l1, l2 (weight magnitude) or "
                  "taylor (gradient x weight on one data batch)", choices=tuple(_IMPORTANCES)),
        ParamSpec("tolerance", float, 0.01, "accepted overshoot of the reduction above amount",
                  low=0.0, high=1.0, low_inclusive=False),
        ParamSpec("ignored_layers", str, "", "comma-separated module names never pruned, with "
                  "everything inside them (e.g. backbone.fpn,rpn,roi_heads keeps a detector's heads)"),
        ParamSpec("round_to", int, ROUND_TO, "keep each pruned layer's channel count a multiple of "
                  "this, so vectorised kernels stay on their fast path (1: any count)", low=1),
        ParamSpec("layer_policy", str, "", "per-layer sparsity policy 'module=weight,...' (weights "
                  "0-1): each module's layers lose scale x weight of their channels (at most 95%), "
                  "the scale found to reach amount; empty: one global ranking"),
        epochs_param("finetune_epochs", 0, "fine-tuning epochs after pruning"),
        LR,
        OPTIMIZER,
        SEED,
    ),
    needs_data=False,
    needs_example_inputs=True,
    data_usage="example inputs for the dependency graph; a batch for taylor; fine-tuning batches",
    apply=_prune_structured,
)

TECHNIQUES: tuple[TechniqueSpec, ...] = (PRUNE_STRUCTURED,)
