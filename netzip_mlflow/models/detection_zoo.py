"""Built-in object detectors (random init, nothing downloaded) and their training loop.

``tiny_fasterrcnn`` (the default) is torchvision's ``FasterRCNN`` around a 5-layer conv backbone
(:class:`TinyBackbone`: one stride-8 feature map of 32 channels), one anchor level of square anchors
sized for the shapes set, 7x7 RoIAlign, a 128-wide ``TwoMLPHead`` and few proposals: about 0.29 M
parameters and 20 M MACs per 96 px image, so a few hundred training steps fit in a couple of minutes on
2 CPU cores.

``fasterrcnn_mobilenet_v3_large_320_fpn`` is torchvision's Faster R-CNN with a MobileNetV3-Large FPN
backbone, built with ``weights=None, weights_backbone=None`` and sized for small images and 2 CPU
cores: the transform keeps the images at their own size (``min_size = max_size = image side``), fewer
region proposals are kept, and the box head's two fully connected layers are 256 wide instead of 1024
(the ``TwoMLPHead`` of torchvision, only narrower). Its forward is torchvision's: in eval mode
``model(images)`` returns one ``{"boxes", "labels", "scores"}`` dict per image *after* the model's own
postprocessing (box decoding, score threshold, per-class NMS, rescaling), so timing ``model(images)``
times the whole detector. Labels count from 1 (0 is background), ``num_classes`` includes background.

Any ``nn.Module`` with the same contract (train mode: ``model(images, targets) -> dict of losses``;
eval mode: ``model(images) -> list of dicts``) can be trained with :func:`train_detector` and
evaluated with ``task="detection"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, fasterrcnn_mobilenet_v3_large_320_fpn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign
from tqdm.auto import tqdm

from netzip_mlflow.errors import ConfigError, DataError, ModelError

EpochCallback = Callable[[int, dict[str, float]], None]

#: Width of the box head's fully connected layers (torchvision's default is 1024).
BOX_HEAD_WIDTH = 256


def fasterrcnn_mobilenet(num_classes: int, image_size: int, box_head_width: int = BOX_HEAD_WIDTH) -> nn.Module:
    """torchvision's ``fasterrcnn_mobilenet_v3_large_320_fpn`` for ``image_size`` px images.

    Args:
        num_classes: classes including the background (label 0).
        image_size: side of the (square) input images in pixels; the model does not resize them.
        box_head_width: width of the box head's two fully connected layers.
    """
    model = fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=num_classes,
        min_size=image_size,
        max_size=image_size,
        rpn_pre_nms_top_n_train=300,
        rpn_post_nms_top_n_train=128,
        rpn_pre_nms_top_n_test=150,
        rpn_post_nms_top_n_test=100,
        box_batch_size_per_image=64,
        rpn_batch_size_per_image=128,
        box_detections_per_img=50,
    )
    pooled = model.roi_heads.box_roi_pool.output_size[0]
    channels = model.backbone.out_channels
    model.roi_heads.box_head = TwoMLPHead(channels * pooled * pooled, box_head_width)
    model.roi_heads.box_predictor = FastRCNNPredictor(box_head_width, num_classes)
    return model


#: Channels of the tiny detector's backbone stages (each a 3x3 conv, BatchNorm, ReLU; see :class:`TinyBackbone`).
TINY_CHANNELS = (16, 32, 64, 64)
#: Channels of the tiny backbone's output feature map (what the RPN and the RoI pooling see).
TINY_OUT_CHANNELS = 32
#: Width of the tiny detector's box head.
TINY_BOX_HEAD_WIDTH = 128
#: Anchor sides as fractions of the image side (the shapes set draws objects of 0.15-0.4 of the side).
TINY_ANCHOR_FRACTIONS = (0.15, 0.22, 0.3, 0.4)


def _conv_bn(cin: int, cout: int, stride: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class TinyBackbone(nn.Module):
    """Four 3x3 conv-BN-ReLU stages (strides 2, 2, 2, 1) and a 1x1 conv-BN-ReLU projection.

    Output: one feature map at stride 8 with :attr:`out_channels` channels, returned as
    ``{"0": features}`` (torchvision's detection backbone contract).

    Args:
        channels: output channels of the four 3x3 stages.
        out_channels: channels of the 1x1 projection (the feature map the heads read).
    """

    def __init__(self, channels: tuple[int, ...] = TINY_CHANNELS, out_channels: int = TINY_OUT_CHANNELS) -> None:
        super().__init__()
        strides = (2, 2, 2, 1)
        layers, cin = [], 3
        for cout, stride in zip(channels, strides, strict=True):
            layers.append(_conv_bn(cin, cout, stride))
            cin = cout
        self.body = nn.Sequential(*layers)
        self.out = _conv_bn(cin, out_channels, 1, kernel=1)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"0": self.out(self.body(x))}


def tiny_fasterrcnn(num_classes: int, image_size: int, box_head_width: int = TINY_BOX_HEAD_WIDTH) -> nn.Module:
    """A small Faster R-CNN (torchvision's classes) with a 5-layer conv backbone, for 2 CPU cores.

    One stride-8 feature map (:class:`TinyBackbone`), one anchor generator level with square anchors
    sized for the shapes set (:data:`TINY_ANCHOR_FRACTIONS` of ``image_size``), 7x7 RoIAlign, a
    ``TwoMLPHead`` of ``box_head_width``, few region proposals, and no internal resizing
    (``min_size = max_size = image_size``). The backbone's last module, ``backbone.out``, fixes the
    channel count the RPN and the box head read: keep it (and ``rpn``, ``roi_heads``) out of structured
    pruning.

    Args:
        num_classes: classes including the background (label 0).
        image_size: side of the (square) input images in pixels.
        box_head_width: width of the box head's two fully connected layers.
    """
    backbone = TinyBackbone()
    sizes = tuple(sorted({max(4, int(round(f * image_size))) for f in TINY_ANCHOR_FRACTIONS}))
    anchors = AnchorGenerator(sizes=(sizes,), aspect_ratios=((1.0,),))
    pool = MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2)
    head = TwoMLPHead(backbone.out_channels * 7 * 7, box_head_width)
    return FasterRCNN(
        backbone,
        num_classes=None,
        min_size=image_size,
        max_size=image_size,
        rpn_anchor_generator=anchors,
        box_roi_pool=pool,
        box_head=head,
        box_predictor=FastRCNNPredictor(box_head_width, num_classes),
        rpn_pre_nms_top_n_train=200,
        rpn_post_nms_top_n_train=64,
        rpn_pre_nms_top_n_test=100,
        rpn_post_nms_top_n_test=32,
        rpn_batch_size_per_image=64,
        box_batch_size_per_image=32,
        box_detections_per_img=20,
    )


DETECTORS: dict[str, Callable[[int, int], nn.Module]] = {
    "tiny_fasterrcnn": tiny_fasterrcnn,
    "fasterrcnn_mobilenet_v3_large_320_fpn": fasterrcnn_mobilenet,
}
DEFAULT_DETECTOR = "tiny_fasterrcnn"


def build_detector(arch: str, num_classes: int, image_size: int, seed: int = 0) -> nn.Module:
    """Build a built-in detector with seeded random weights (no download).

    Args:
        arch: a name in :data:`DETECTORS`.
        num_classes: classes including the background.
        image_size: side of the square input images in pixels.
        seed: seed of the initial weights.
    """
    if arch not in DETECTORS:
        raise ConfigError("model.arch", f"unknown detection architecture {arch!r}", f"use one of {sorted(DETECTORS)}")
    if num_classes < 2:
        raise ConfigError("num_classes", f"a detector needs at least 2 classes (background + 1), got {num_classes}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DETECTORS[arch](num_classes, image_size)


def _lr_at(step: int, total: int, lr: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total`` steps."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def train_detector(
    model: nn.Module,
    data: Iterable[tuple[torch.Tensor, list[Mapping[str, torch.Tensor]]]],
    epochs: int,
    lr: float,
    *,
    optimizer: str = "sgd",
    weight_decay: float = 1e-4,
    warmup_steps: int = 50,
    on_epoch_end: EpochCallback | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> list[dict[str, float]]:
    """Train a torchvision-style detector in place.

    Each step sums the loss dict that ``model(images, targets)`` returns in train mode. The learning
    rate warms up linearly over ``warmup_steps`` steps, then decays by a cosine to 0 at the last step
    (per step). Gradients are clipped to norm 10.

    Args:
        model: the detector (left in eval mode afterwards).
        data: ``(images (B, C, H, W), [target, ...])`` batches (a ``DataLoader`` with
            :func:`~netzip_mlflow.data.detection.detection_collate`).
        epochs: passes over ``data`` (0: nothing is trained).
        lr: peak learning rate.
        optimizer: ``"sgd"`` (momentum 0.9) or ``"adam"``.
        on_epoch_end: called as ``on_epoch_end(epoch, {"loss": mean summed loss per batch, ...each
            loss term's mean})`` after each epoch (epoch from 0).
        progress: show a tqdm bar per epoch.

    Returns:
        One metrics dict per epoch (as passed to ``on_epoch_end``).

    Raises:
        ConfigError: bad ``epochs``, ``lr`` or ``optimizer``.
        DataError: ``data`` yields no batch.
        ModelError: the model does not return a loss dict in train mode, or the loss is not finite.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ConfigError("epochs", f"must be an integer >= 0, got {epochs!r}")
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ConfigError("lr", f"must be a number > 0, got {lr!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    elif optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    else:
        raise ConfigError("optimizer", f"must be one of: sgd, adam, got {optimizer!r}")
    model.to(device)
    steps_per_epoch = len(data) if hasattr(data, "__len__") else None
    total = (steps_per_epoch or 1) * epochs
    history: list[dict[str, float]] = []
    step = 0
    for epoch in range(epochs):
        model.train()
        sums: dict[str, float] = {}
        batches = 0
        bar = tqdm(data, desc=f"detector epoch {epoch + 1}/{epochs}", total=steps_per_epoch,
                   disable=not progress, leave=False)
        for images, targets in bar:
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, total, lr, min(warmup_steps, total // 2 or 1))
            images = images.to(device)
            targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
            try:
                losses = model(images, targets)
            except TypeError as exc:
                raise ModelError(
                    f"the detector cannot be called as model(images, targets) in train mode ({exc}); "
                    "use a torchvision detection model or one with the same contract"
                ) from exc
            if not isinstance(losses, Mapping):
                raise ModelError(
                    f"in train mode a detector must return a dict of losses, got {type(losses).__name__}; "
                    "use a torchvision detection model or one with the same contract"
                )
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise ModelError(f"the detection loss became {loss.item()} at epoch {epoch}; lower the learning rate (lr)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            step += 1
            batches += 1
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            bar.set_postfix(loss=f"{sums['loss'] / batches:.3f}")
        if batches == 0:
            raise DataError("the detection training data yields no batch; pass a non-empty DataLoader")
        metrics = {name: value / batches for name, value in sums.items()}
        history.append(metrics)
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)
    model.eval()
    return history
