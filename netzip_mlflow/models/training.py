"""The one classification training loop of netzip-mlflow.

Quantization-aware training and the fine-tuning after pruning both use :func:`train`, so every
technique trains the same way. The loop is plain supervised classification: cross-entropy by
default, SGD (momentum 0.9, weight decay 5e-4) or Adam, and a per-epoch cosine learning-rate
schedule (epoch ``e`` of ``E`` uses ``lr * 0.5 * (1 + cos(pi * e / E))``: the first epoch trains at
the full ``lr``) or a constant one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset
from tqdm.auto import tqdm

from netzip_mlflow.errors import ConfigError, DataError, ModelError

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``loss(student_outputs, targets, teacher_outputs) -> scalar`` (knowledge distillation).
TeacherLossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
EpochCallback = Callable[[int, dict[str, float]], None]

#: Batch size used when a map-style ``Dataset`` is passed where batches are expected.
DEFAULT_BATCH_SIZE = 32


def iter_batches(data: Iterable[Any] | Dataset, limit: int | None = None) -> Iterator[Batch]:
    """Yield ``(inputs, targets)`` batches from ``data``.

    Args:
        data: an iterable of ``(inputs, targets)`` batches (a ``DataLoader``), or a map-style
            ``Dataset`` of ``(input, target)`` samples, which is batched ``DEFAULT_BATCH_SIZE`` at a
            time in order.
        limit: stop after this many batches (``None``: all of them).

    Raises:
        DataError: an item is not an ``(inputs, targets)`` pair of tensors.
    """
    if isinstance(data, Dataset) and not isinstance(data, IterableDataset | DataLoader):
        data = DataLoader(data, batch_size=DEFAULT_BATCH_SIZE, shuffle=False)
    for index, item in enumerate(islice(data, limit)):
        if not isinstance(item, list | tuple) or len(item) < 2:
            raise DataError(
                f"batch {index} is a {type(item).__name__}, expected an (inputs, targets) pair; "
                "pass a DataLoader over a dataset of (input, label) samples"
            )
        inputs, targets = item[0], item[1]
        if not isinstance(inputs, torch.Tensor):
            raise DataError(
                f"batch {index}: inputs are a {type(inputs).__name__}, expected a tensor; "
                "add a ToTensor transform to the dataset"
            )
        yield inputs, torch.as_tensor(targets)


def first_inputs(data: Iterable[Any] | Dataset) -> torch.Tensor:
    """The inputs of the first batch of ``data`` (used as example inputs for tracing).

    Raises:
        DataError: ``data`` yields no batch.
    """
    for inputs, _ in iter_batches(data, limit=1):
        return inputs
    raise DataError("the data yields no batch; pass a non-empty DataLoader")


def train(
    model: nn.Module,
    data: Iterable[Any] | Dataset,
    epochs: int,
    lr: float,
    *,
    optimizer: Literal["sgd", "adam"] = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    schedule: Literal["cosine", "constant"] = "cosine",
    loss_fn: LossFn | TeacherLossFn | None = None,
    on_epoch_end: EpochCallback | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
    teacher: nn.Module | None = None,
    system_metrics: bool = False,
) -> list[dict[str, float]]:
    """Train ``model`` in place for ``epochs`` passes over ``data``.

    Args:
        model: the model to train; it is moved to ``device`` and left in ``train()`` mode.
        data: ``(inputs, targets)`` batches (see :func:`iter_batches`); iterated once per epoch,
            so a shuffling ``DataLoader`` reshuffles every epoch.
        epochs: number of passes over ``data`` (0 trains nothing and returns ``[]``).
        lr: initial learning rate (> 0).
        optimizer: ``"sgd"`` (with ``momentum``) or ``"adam"``.
        momentum: SGD momentum (ignored by Adam).
        weight_decay: L2 penalty of the optimizer.
        schedule: ``"cosine"`` (per-epoch cosine decay from ``lr``, see the module docstring) or
            ``"constant"``.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``; cross-entropy when ``None``. With a
            ``teacher``, ``loss_fn(outputs, targets, teacher_outputs) -> scalar`` (required).
        on_epoch_end: called as ``on_epoch_end(epoch, metrics)`` after each epoch (epoch from 0).
        progress: show a tqdm progress bar per epoch.
        device: where to train.
        teacher: a frozen model run (eval mode, no gradients) on every batch; its outputs are
            the third argument of ``loss_fn`` (knowledge distillation).
        system_metrics: when an MLflow run is active, sample MLflow system metrics (CPU, memory,
            disk, network, GPU: ``system/*``) into it while training (see
            :func:`log_system_metrics`). Off by default: a study switches it on around training.

    Returns:
        One dict per epoch: ``"loss"`` (mean loss per sample) and, when the targets are class
        indices, ``"accuracy"`` (training top-1 accuracy, fraction 0-1, measured while training).

    Raises:
        ConfigError: a bad ``epochs``, ``lr``, ``optimizer`` or ``schedule``.
        DataError: ``data`` yields no batch or malformed batches.
        ModelError: the loss became NaN or infinite (lower ``lr``).
    """
    _check_settings(epochs, lr, schedule)
    if teacher is not None and loss_fn is None:
        raise ConfigError(
            "loss_fn", "training with a teacher needs loss_fn(outputs, targets, teacher_outputs)"
        )
    model.to(device)
    if teacher is not None:
        teacher.to(device).eval()
    opt = _make_optimizer(model, optimizer, lr, momentum, weight_decay)
    loss_fn = loss_fn or nn.functional.cross_entropy
    history: list[dict[str, float]] = []
    monitor = log_system_metrics() if system_metrics and epochs else contextlib.nullcontext()
    with monitor:
        for epoch in range(epochs):
            _set_lr(opt, epoch_lr(lr, epoch, epochs, schedule))
            metrics = _train_epoch(
                model, data, opt, loss_fn, device, epoch, epochs, progress, teacher
            )
            history.append(metrics)
            if on_epoch_end is not None:
                on_epoch_end(epoch, metrics)
    return history


@contextlib.contextmanager
def log_system_metrics(
    run_id: str | None = None, interval_s: float = 2.0
) -> Iterator[bool]:
    """Log MLflow system metrics (``system/cpu_utilization_percentage``, memory, disk, network,
    GPU) into an MLflow run while the block runs.

    Works on a run that is already open (unlike ``mlflow.start_run(log_system_metrics=True)``,
    which must be decided when the run starts): it starts MLflow's ``SystemMetricsMonitor`` for
    the run and stops it when the block ends. Without ``run_id`` it uses the active run; with no
    active run (or when MLflow was never imported, so no run can be active) it does nothing.

    Args:
        run_id: the run to log into (default: the active run).
        interval_s: seconds between samples (each sample is logged at once).

    Yields:
        Whether a monitor was started.
    """
    mlflow = sys.modules.get("mlflow")
    if run_id is None and mlflow is not None:
        active = mlflow.active_run()
        run_id = active.info.run_id if active is not None else None
    if run_id is None:
        yield False
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(
        run_id, sampling_interval=interval_s, samples_before_logging=1, resume_logging=True
    )
    monitor.sampling_interval = interval_s  # MLflow's environment variable must not override it
    monitor.start()
    try:
        yield True
    finally:
        monitor.finish()
        _closing_sample(monitor)


def _closing_sample(monitor: Any) -> None:
    """Log one last sample when the block ends, so a block shorter than the interval has one too.

    MLflow's monitor publishes only after each full interval; after ``finish`` its thread is joined,
    so sampling here cannot race with it.
    """
    try:
        monitor.collect_metrics()
        monitor.publish_metrics(monitor.aggregate_metrics())
        monitor.mlflow_logger.flush()
    except Exception as exc:  # noqa: BLE001 - optional telemetry must never fail training
        log.warning("closing system-metrics sample not logged: %s", exc)


def _check_settings(epochs: int, lr: float, schedule: str) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ConfigError("epochs", f"must be an integer >= 0, got {epochs!r}")
    if not isinstance(lr, int | float) or not math.isfinite(lr) or lr <= 0:
        raise ConfigError("lr", f"must be a number > 0, got {lr!r}")
    if schedule not in ("cosine", "constant"):
        raise ConfigError("schedule", f"must be one of: cosine, constant, got {schedule!r}")


def _make_optimizer(
    model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ModelError("the model has no trainable parameters; nothing to train")
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError("optimizer", f"must be one of: sgd, adam, got {name!r}")


def epoch_lr(lr: float, epoch: int, epochs: int, schedule: str = "cosine") -> float:
    """The learning rate of ``epoch`` (from 0) of ``epochs``: constant or cosine-decayed from lr."""
    if schedule == "constant":
        return lr
    return lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def _train_epoch(
    model: nn.Module,
    data: Iterable[Any] | Dataset,
    opt: torch.optim.Optimizer,
    loss_fn: LossFn,
    device: str | torch.device,
    epoch: int,
    epochs: int,
    progress: bool,
    teacher: nn.Module | None = None,
) -> dict[str, float]:
    model.train()
    total_loss, seen, correct, counted = 0.0, 0, 0, 0
    bar = tqdm(
        iter_batches(data),
        desc=f"epoch {epoch + 1}/{epochs}",
        total=len(data) if hasattr(data, "__len__") and not isinstance(data, Dataset) else None,
        disable=not progress,
        leave=False,
    )
    for step, (inputs, targets) in enumerate(bar):
        inputs, targets = inputs.to(device), targets.to(device)
        opt.zero_grad(set_to_none=True)
        outputs = model(inputs)
        if teacher is None:
            loss = loss_fn(outputs, targets)
        else:
            with torch.no_grad():
                teacher_outputs = teacher(inputs)
            loss = loss_fn(outputs, targets, teacher_outputs)
        if not torch.isfinite(loss):
            raise ModelError(
                f"the training loss became {loss.item()} at epoch {epoch}, batch {step}; "
                "lower the learning rate (lr)"
            )
        loss.backward()
        opt.step()
        batch = targets.shape[0]
        total_loss += loss.item() * batch
        seen += batch
        hits = _correct(outputs, targets)
        if hits is not None:
            correct += hits
            counted += batch
        bar.set_postfix(loss=f"{total_loss / seen:.4f}")
    if seen == 0:
        raise DataError("the training data yields no batch; pass a non-empty DataLoader")
    metrics = {"loss": total_loss / seen}
    if counted == seen:
        metrics["accuracy"] = correct / counted
    return metrics


def _correct(outputs: torch.Tensor, targets: torch.Tensor) -> int | None:
    """Top-1 hits in a batch, or ``None`` when the targets are not class indices."""
    is_classes = (
        outputs.dim() == 2 and targets.dim() == 1 and not targets.dtype.is_floating_point
    )
    if not is_classes:
        return None
    return int((outputs.detach().argmax(dim=1) == targets).sum().item())
