"""Cheap checks that a model can do the study's task, run before anything long or logged.

One forward pass on a real batch catches an input shape that does not match the data, an output
that is not (batch, classes) logits, labels beyond the model's classes and non-finite (NaN/Inf)
outputs, each with a one-line error that says what to do.
"""

from __future__ import annotations

import torch
from torch import nn

from netzip_mlflow.errors import DataError, ModelError
from netzip_mlflow.evaluation.accuracy import check_logits, model_input


@torch.inference_mode()
def check_model_outputs(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, num_classes: int, what: str) -> None:
    """Run ``model`` on one batch and check its output fits a ``num_classes``-way classification.

    Args:
        model: the model to check (put in eval mode; its training flag is restored).
        inputs, labels: one real batch of the study's data.
        num_classes: the number of classes of the dataset.
        what: how to name the model in messages (``"baseline model"``, ``"recipe 'ptq_int8'"``).

    Raises:
        ModelError: the model fails on the inputs, does not return (batch, classes) logits, has
            fewer outputs than the dataset has classes, or returns NaN/Inf.
        DataError: labels out of range for the model's outputs.
    """
    was_training = model.training
    model.eval()
    try:
        try:
            out = model(model_input(inputs, model, _device(model)))
        except SystemExit as exc:  # user model code must not end the study
            raise ModelError(
                f"{what} called sys.exit({str(exc.code)[:40]}) when run on one batch; model code must return "
                "logits, not end the process"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - any failure of user model code
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ModelError(
                f"{what} fails on data of shape {tuple(inputs.shape)} ({first}); "
                "make the model's expected input (channels, size) match data.channels and data.image_size"
            ) from exc
        if isinstance(out, torch.Tensor) and out.ndim == 2 and out.shape[1] < num_classes:
            raise ModelError(
                f"{what} has {out.shape[1]} outputs but the data has {num_classes} classes; "
                "build the model with num_classes matching the dataset's classes"
            )
        try:
            logits = check_logits(out, labels)
        except ModelError as exc:
            raise ModelError(f"{what}: {exc}") from None
        except DataError as exc:
            raise DataError(f"{what}: {exc}") from None
        if not bool(torch.isfinite(logits).all()):
            bad = int((~torch.isfinite(logits)).any(dim=1).sum())
            raise ModelError(
                f"{what} returns non-finite outputs (NaN/Inf) for {bad} of {logits.shape[0]} inputs; "
                "the model is numerically broken: lower the learning rate, or try other parameters"
            )
    finally:
        model.train(was_training)


def _device(model: nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")
