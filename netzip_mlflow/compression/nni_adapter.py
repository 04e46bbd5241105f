"""``nni``: Microsoft NNI 3.0 pruners make the masks, torch-pruning removes what they mask.

Needs the optional extra ``pip install 'netzip-mlflow[nni]'`` (``nni==3.0``); without it the
technique is still listed, but applying it raises :class:`~netzip_mlflow.errors.CompressionError`
saying how to install it. NNI is imported only when the technique runs.

Pruners (``params.pruner``): ``l1norm``, ``l2norm`` and ``fpgm`` mask whole output channels of every
Conv2d (``amount`` of each layer's channels, the classifier excluded); ``level`` masks individual
weights of every Conv2d and Linear (``amount`` of each layer's weights, the classifier excluded).

NNI's own ``ModelSpeedup``, which turns masks into smaller layers, fails on torch >= 2.2: its
concrete tracer relies on torch internals that changed (with nni 3.0 and torch 2.14.1 on ResNet18:
``AttributeError: 'NoneType' object has no attribute 'startswith'`` in ``concrete_trace``,
``nni/common/concrete_trace_utils/concrete_tracer.py``). So channel masks are removed through
torch-pruning's dependency graph instead: for every group of coupled channels (a conv's output, its
BatchNorm, the next layers' inputs, residual additions) a channel is removed when every masked conv
of the group masks it; where coupled convs disagree (residual branches) the channel stays, as NNI's
speedup also keeps the union of the kept channels. The removed channels really shrink the tensors.
``level`` masks cannot be removed (they are scattered zeros): they are applied as zeros, kept at
zero during fine-tuning, and show in ``size/sparsity`` like ``prune_unstructured``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils import prune

from netzip_mlflow.compression.common import reference_shape, run_checked, train_for_technique
from netzip_mlflow.compression.result import CompressionResult
from netzip_mlflow.compression.spec import (
    AMOUNT,
    LR,
    OPTIMIZER,
    ParamSpec,
    ParamValue,
    TechniqueSpec,
    TrainingHooks,
    epochs_param,
)
from netzip_mlflow.compression.structured import output_layer
from netzip_mlflow.errors import CompressionError

#: ``params.pruner`` -> the NNI 3.0 pruner class name in ``nni.compression.pruning``.
PRUNERS = {"l1norm": "L1NormPruner", "l2norm": "L2NormPruner", "fpgm": "FPGMPruner",
           "level": "LevelPruner"}
_CHANNEL_PRUNERS = ("l1norm", "l2norm", "fpgm")


def nni_available() -> bool:
    """Whether NNI's pruners can be imported."""
    try:
        import nni.compression.pruning  # noqa: F401
    except Exception:  # ImportError, or NNI failing on import with this torch
        return False
    return True


def _nni_pruner(name: str) -> Any:
    try:
        from nni.compression import pruning
    except Exception as exc:  # ImportError, or NNI failing on import with this torch
        raise CompressionError(
            f"nni: NNI cannot be imported ({type(exc).__name__}: {exc}); install the extra with "
            "pip install 'netzip-mlflow[nni]' (nni==3.0)"
        ) from exc
    return getattr(pruning, PRUNERS[name])


def nni_masks(
    model: nn.Module, pruner: str, amount: float, exclude: str
) -> dict[str, torch.Tensor]:
    """The weight masks an NNI pruner computes for ``model`` (left unmodified).

    Returns:
        ``{module name: mask}`` with the weight's shape, 1 = keep, 0 = pruned.
    """
    kinds = ["Conv2d"] if pruner in _CHANNEL_PRUNERS else ["Conv2d", "Linear"]
    config = [{"op_types": kinds, "exclude_op_names": [exclude], "sparse_ratio": amount}]
    instance = _nni_pruner(pruner)(model, config)
    try:
        _, masks = instance.compress()
    finally:
        instance.unwrap_model()
    return {
        name: entry["weight"].detach().to(torch.float32).cpu()
        for name, entry in masks.items()
        if entry.get("weight") is not None
    }


def remove_masked_channels(
    model: nn.Module,
    masks: dict[str, torch.Tensor],
    example_inputs: torch.Tensor,
    keep: nn.Module,
) -> int:
    """Physically remove the output channels that NNI masked (in place), see the module docstring.

    Returns:
        The number of channel groups pruned.
    """
    names = {module: name for name, module in model.named_modules()}
    masked_out = {
        name: set(torch.nonzero(mask.flatten(1).sum(1) == 0).flatten().tolist())
        for name, mask in masks.items()
    }
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs[:1])
    pruned_groups = 0
    for group in graph.get_all_groups(ignored_layers=[keep]):
        root = group[0].dep.target.module
        handler = group[0].dep.handler
        width = len(group[0].idxs)
        verdicts: dict[int, bool] = {}
        seen_masked = False
        for item in group.items:
            name = names.get(item.dep.target.module)
            if name not in masked_out or not graph.is_out_channel_pruning_fn(item.dep.handler):
                continue
            seen_masked = True
            for index, root_index in zip(item.idxs, item.root_idxs, strict=True):
                masked = index in masked_out[name]
                verdicts[root_index] = verdicts.get(root_index, True) and masked
        remove = sorted(i for i, masked in verdicts.items() if masked)
        if not seen_masked or not remove or len(remove) >= width:
            continue
        pruning_group = graph.get_pruning_group(root, handler, remove)
        if graph.check_pruning_group(pruning_group):
            pruning_group.prune()
            pruned_groups += 1
    return pruned_groups


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _nni(
    model: nn.Module,
    params: dict[str, ParamValue],
    data: Iterable | None,
    example_inputs: torch.Tensor | None,
    hooks: TrainingHooks,
) -> CompressionResult:
    """Masks from an NNI pruner; channels removed through torch-pruning, level masks applied."""
    model = model.eval()
    pruner, amount = str(params["pruner"]), float(params["amount"])
    expected = reference_shape(model, example_inputs)
    head_name, head = output_layer(model, example_inputs)
    before = _count(model)
    masks = nni_masks(model, pruner, amount, head_name)
    if not masks:
        raise CompressionError(
            f"nni: pruner {pruner} masked no layer of this model (it has no Conv2d"
            f"{'' if pruner in _CHANNEL_PRUNERS else ' or Linear'} layer besides the classifier)"
        )
    info: dict[str, ParamValue] = {"pruner": pruner, "masked_layers": len(masks),
                                   "ignored_layers": head_name, "params_before": before}
    epochs = int(params["finetune_epochs"])
    if pruner in _CHANNEL_PRUNERS:
        info["pruned_groups"] = remove_masked_channels(model, masks, example_inputs, head)
        info.update(train_for_technique(model, data, params, epochs, hooks, "nni", "finetune"))
    else:
        modules = dict(model.named_modules())
        for name, mask in masks.items():
            prune.custom_from_mask(modules[name], "weight", mask.to(modules[name].weight.device))
        info.update(train_for_technique(model, data, params, epochs, hooks, "nni", "finetune"))
        for name in masks:
            prune.remove(modules[name], "weight")
        total = sum(modules[name].weight.numel() for name in masks)
        zeros = sum(int((modules[name].weight == 0).sum()) for name in masks)
        info["sparsity_achieved"] = zeros / total
    info["params_after"] = _count(model)
    info["param_reduction"] = 1.0 - info["params_after"] / before
    run_checked(model, example_inputs, expected, f"nni ({pruner})")
    return CompressionResult(model.eval(), info)


NNI = TechniqueSpec(
    name="nni",
    description="NNI 3.0 pruners (L1Norm, L2Norm, FPGM, Level); channels removed via "
    "torch-pruning (optional extra [nni])",
    params=(
        ParamSpec("pruner", str, "l1norm", "NNI pruner: l1norm, l2norm, fpgm (channels) or level "
                  "(single weights)", choices=tuple(PRUNERS)),
        replace(AMOUNT, default=0.5, help="fraction (0-1) of each layer's output channels (level: "
                "weights) that the pruner masks"),
        epochs_param("finetune_epochs", 0, "fine-tuning epochs after pruning"),
        LR,
        OPTIMIZER,
    ),
    needs_data=False,
    needs_example_inputs=True,
    data_usage="example inputs for the dependency graph; fine-tuning batches",
    apply=_nni,
)

TECHNIQUES: tuple[TechniqueSpec, ...] = (NNI,)
