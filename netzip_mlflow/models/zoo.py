"""Architectures by name, built with random weights (no download), for the dataset's classes and channels.

``resnet18`` and ``tiny_cnn`` are built in (the ResNet18's stem adapted to small images, see
:func:`resnet18`); every other name is looked up in torchvision's model registry
(``torchvision.models.list_models(module=torchvision.models)``: ``mobilenet_v3_small``,
``efficientnet_b0``, ``convnext_tiny``, ``vit_b_16``, ...) and built with ``weights=None``, the
dataset's number of classes, and its first convolution rebuilt for the dataset's channels when they
are not 3 (:func:`build_torchvision`). With the ``[timm]`` extra, ``timm/<name>`` builds timm's
``<name>`` (``timm.list_models()``) the same way: random weights, nothing downloaded (:func:`build_timm`).

Every architecture can be built narrower (``width`` < 1: that fraction of the channels of every
layer but the classifier), e.g. a half-width ResNet18 as a distillation student. Narrowing goes
through torch-pruning's dependency graph (:func:`narrow`), so residual additions stay consistent and
the module structure stays the same as the full-width model's.
"""

from __future__ import annotations

from collections.abc import Callable

import difflib
import warnings

import torch
import torch_pruning as tp
import torchvision
from torch import nn

from netzip_mlflow.errors import ConfigError


def resnet18(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """torchvision's ResNet18 with its stem adapted to the input.

    For images of 64 pixels or more the ImageNet stem is kept (7x7/2 conv + max-pool). Smaller
    images get a 3x3 stem without max-pool, stride 2 from 24 pixels up (28x28 MNIST: 14x14 into
    layer1, about 0.12 GMACs) and stride 1 below (8x8 digits), so the network keeps spatial extent.
    """
    channels, height, _ = input_shape
    model = torchvision.models.resnet18(num_classes=num_classes)
    if height >= 64:
        if channels != 3:
            model.conv1 = nn.Conv2d(channels, 64, 7, 2, 3, bias=False)
        return model
    stride = 2 if height >= 24 else 1
    model.conv1 = nn.Conv2d(channels, 64, 3, stride, 1, bias=False)
    model.maxpool = nn.Identity()
    return model


class TinyCNN(nn.Module):
    """A small conv net (two conv-bn-relu blocks, global pooling, a linear head) for quick tests."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], width: int = 16) -> None:
        super().__init__()
        channels = input_shape[0]
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def tiny_cnn(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """:class:`TinyCNN` with its default width."""
    return TinyCNN(num_classes, input_shape)


ARCHITECTURES: dict[str, Callable[[int, tuple[int, int, int]], nn.Module]] = {
    "resnet18": resnet18,
    "tiny_cnn": tiny_cnn,
}
"""Architectures built here; every other torchvision classification model is built by name."""

#: torchvision constructor arguments some architectures need to run as one plain classifier.
_TORCHVISION_KWARGS: dict[str, dict[str, object]] = {
    "inception_v3": {"aux_logits": False, "init_weights": False},
    "googlenet": {"aux_logits": False, "init_weights": False},
}


def torchvision_architectures() -> list[str]:
    """The classification architectures torchvision can build by name (its model registry)."""
    return list(torchvision.models.list_models(module=torchvision.models))


def known_architectures() -> list[str]:
    """Every name ``model.arch`` accepts: the built-ins and torchvision's classification models."""
    return sorted(set(ARCHITECTURES) | set(torchvision_architectures()))


TIMM_PREFIX = "timm/"
"""``model.arch: timm/<name>`` builds timm's ``<name>`` (the ``[timm]`` extra)."""


def _timm():  # noqa: ANN202 - the module, or None when the extra is not installed
    try:
        import timm
    except ImportError:
        return None
    return timm


def _check_timm(arch: str, field: str) -> None:
    timm = _timm()
    if timm is None:
        raise ConfigError(field, f"{arch!r} needs timm, which is not installed", "pip install 'netzip-mlflow[timm]'")
    name = arch[len(TIMM_PREFIX):]
    names = timm.list_models()
    if name in names:
        return
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"did you mean {', '.join(TIMM_PREFIX + c for c in close)}? " if close else ""
    raise ConfigError(field, f"unknown timm architecture {name!r}", f"{hint}see timm.list_models()")


def check_architecture(arch: str, field: str = "model.arch") -> None:
    """Raise :class:`ConfigError` naming ``field`` and the closest names if ``arch`` is unknown."""
    if arch in ARCHITECTURES or arch in torchvision_architectures():
        return
    if arch.startswith(TIMM_PREFIX):
        _check_timm(arch, field)
        return
    close = difflib.get_close_matches(arch, known_architectures(), n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ConfigError(
        field,
        f"unknown architecture {arch!r}",
        f"{hint}use tiny_cnn, resnet18, any torchvision classification model "
        "(torchvision.models.list_models(module=torchvision.models), e.g. mobilenet_v3_small), "
        "timm/<name> with the [timm] extra, or load a whole module with model.path and --trust-model-file",
    )


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    """The name and module of the first ``Conv2d`` in registration order (the stem), if any."""
    return next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def adapt_channels(model: nn.Module, channels: int) -> nn.Module:
    """Rebuild the stem convolution for ``channels`` input channels (in place; fresh weights)."""
    found = first_conv(model)
    if found is None or found[1].in_channels == channels:
        return model
    name, conv = found
    replacement = nn.Conv2d(
        channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
        groups=1, bias=conv.bias is not None, padding_mode=conv.padding_mode,
    )
    model.set_submodule(name, replacement)
    return model


def build_torchvision(arch: str, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """torchvision's ``arch`` as torchvision defines it (standard stem), random weights, no download.

    ``num_classes`` outputs; the first convolution is rebuilt when the images do not have 3
    channels; vision transformers get ``image_size`` = the images' side.
    """
    kwargs: dict[str, object] = dict(_TORCHVISION_KWARGS.get(arch, {}))
    if arch.startswith("vit_"):
        kwargs["image_size"] = input_shape[1]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ConfigError("model.arch", f"torchvision cannot build {arch!r} for this data: {exc}") from None
    return adapt_channels(model, input_shape[0])


def build_timm(arch: str, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """timm's model ``arch`` (``timm/<name>``) with random weights (``pretrained=False``: nothing is
    downloaded), ``num_classes`` outputs and the images' channels (``in_chans``); models that take
    an image size (vision transformers) get the images' side."""
    timm = _timm()
    if timm is None:
        raise ConfigError("model.arch", f"{arch!r} needs timm, which is not installed", "pip install 'netzip-mlflow[timm]'")
    name = arch[len(TIMM_PREFIX):]
    common = {"pretrained": False, "num_classes": num_classes, "in_chans": input_shape[0]}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return timm.create_model(name, img_size=input_shape[1], **common)
            except TypeError:  # a model without an image-size argument (most CNNs)
                return timm.create_model(name, **common)
    except (ValueError, TypeError, RuntimeError, AssertionError) as exc:
        raise ConfigError("model.arch", f"timm cannot build {name!r} for this data: {exc}") from None


def classifier_head(model: nn.Module, num_classes: int) -> nn.Module:
    """The classifier: the last Linear (or 1x1 Conv, as in SqueezeNet) with ``num_classes`` outputs."""
    head = None
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.out_features == num_classes:
            head = module
        elif isinstance(module, nn.Conv2d) and module.out_channels == num_classes:
            head = module
    if head is None:
        raise ConfigError("model.arch", f"no layer with {num_classes} outputs found to keep as the classifier")
    return head


def _build(arch: str, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    if arch in ARCHITECTURES:
        return ARCHITECTURES[arch](num_classes, input_shape)
    if arch.startswith(TIMM_PREFIX):
        return build_timm(arch, num_classes, input_shape)
    return build_torchvision(arch, num_classes, input_shape)


def standard_variant(arch: str, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module | None:
    """torchvision's own layout of ``arch`` when :func:`build_model` adapts it, else ``None``.

    A state_dict saved from ``torchvision.models.resnet18(num_classes=...)`` has the ImageNet stem
    (7x7/2 conv + max-pool) that the small-image ResNet18 replaces; this model loads it.
    """
    if arch == "resnet18" and input_shape[1] < 64:
        return build_torchvision(arch, num_classes, input_shape)
    return None


def narrow(
    model: nn.Module,
    width: float,
    example_inputs: torch.Tensor,
    keep: nn.Module,
    importance: str = "l2",
) -> nn.Module:
    """Remove ``1 - width`` of the channels of every layer of ``model`` (in place), but ``keep``.

    Args:
        model: the model to narrow (modified and returned).
        width: fraction of the channels kept, in (0, 1].
        example_inputs: a batch the model accepts (for the dependency graph).
        keep: a module whose output channels stay (the classifier).
        importance: which channels stay: ``"l2"`` (largest weight norm) or ``"random"``.

    Raises:
        ConfigError: ``width`` is not in (0, 1] or ``importance`` unknown.
    """
    if isinstance(width, bool) or not isinstance(width, int | float) or not 0 < width <= 1:
        raise ConfigError("width", f"must be a number in (0, 1], got {width!r}")
    if importance not in ("l2", "random"):
        raise ConfigError("importance", f"must be one of: l2, random, got {importance!r}")
    if width == 1:
        return model
    scorer = (
        tp.importance.MagnitudeImportance(p=2)
        if importance == "l2"
        else tp.importance.RandomImportance()
    )
    was_training = model.training
    model.eval()
    pruner = tp.pruner.BasePruner(
        model, example_inputs[:1], importance=scorer, pruning_ratio=1.0 - width,
        global_pruning=False, ignored_layers=[keep],
    )
    pruner.step()
    model.train(was_training)
    return model


def reinitialize(model: nn.Module) -> nn.Module:
    """Fresh random weights as torchvision initialises ResNets (in place, uses the global RNG).

    Convolutions: Kaiming normal (fan-out, ReLU); BatchNorm/GroupNorm: weight 1, bias 0; other
    layers with ``reset_parameters`` (Linear...): their own default initialisation.
    """
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm | nn.GroupNorm):
            if module.weight is not None:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            if getattr(module, "running_mean", None) is not None:
                module.reset_running_stats()
        elif hasattr(module, "reset_parameters") and not list(module.children()):
            module.reset_parameters()
    return model


def build_model(
    arch: str,
    num_classes: int,
    input_shape: tuple[int, int, int],
    seed: int = 0,
    width: float = 1.0,
) -> nn.Module:
    """Build a built-in architecture with seeded random weights.

    Args:
        arch: ``"resnet18"``, ``"tiny_cnn"``, any torchvision classification model name, or
            ``"timm/<name>"`` for a timm model (the ``[timm]`` extra).
        num_classes: outputs of the classifier.
        input_shape: ``(channels, height, width)`` of one input image.
        seed: seeds the random weights.
        width: fraction (0-1] of the channels of every layer but the classifier (1: the standard
            model; 0.5: half the channels, about a quarter of the parameters and MACs).

    Raises:
        ConfigError: unknown ``arch`` (field ``model.arch``) or ``width`` out of (0, 1].
    """
    check_architecture(arch)
    torch.manual_seed(seed)
    model = _build(arch, num_classes, input_shape)
    if width != 1:
        example = torch.zeros(1, *input_shape)
        narrow(model, width, example, keep=classifier_head(model, num_classes))
        torch.manual_seed(seed)
        reinitialize(model)
    return model
