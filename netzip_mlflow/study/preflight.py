"""Pre-flight checks of a validated study that need the machine: run before the store is touched.

The schema checks what a study says; these check that this machine can do it: the evaluation
device exists, the external power log can be read. Data and model are checked by loading them
(:func:`netzip_mlflow.study.context.load_data`, :func:`netzip_mlflow.study.runner.initial_model`).
"""

from __future__ import annotations

import torch

from netzip_mlflow.config.schema import StudySpec
from netzip_mlflow.errors import ConfigError


def check_device(device: str) -> None:
    """Raise :class:`ConfigError` (field ``evaluation.device``) if ``device`` is not on this machine."""
    if not device.startswith("cuda"):
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ConfigError(
            "evaluation.device", f"{device} is asked for but this machine has no CUDA GPU visible to torch",
            "use device: cpu, or run on a machine with a GPU",
        )
    index = torch.device(device).index or 0
    if index >= count:
        raise ConfigError(
            "evaluation.device", f"{device} does not exist: this machine has {count} CUDA GPU(s)",
            f"use cuda:0 to cuda:{count - 1}",
        )


def check_power_log(spec: StudySpec) -> None:
    """Raise :class:`ConfigError` (field ``evaluation.power_log``) if the log is missing or unreadable.

    Its rows are not checked here: a logger may still be writing the first ones.
    """
    path = spec.evaluation.power_log
    if path is None:
        return
    if not path.is_file():
        raise ConfigError(
            "evaluation.power_log", f"{path} does not exist",
            "start the power meter's logger first (a `timestamp,watts` CSV), or remove power_log",
        )
    try:
        with path.open("rb") as handle:
            head = handle.read(65536)
    except OSError as exc:
        raise ConfigError("evaluation.power_log", f"{path} cannot be read ({exc.strerror or exc})") from None
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.end < len(head) - 3:  # not just a character cut at the end of the sample
            raise ConfigError(
                "evaluation.power_log", f"{path} is not UTF-8 text (byte {exc.start} is {head[exc.start]:#04x})",
                "give the meter's `timestamp,watts` CSV",
            ) from None


def preflight(spec: StudySpec) -> None:
    """Every machine-dependent check of ``spec`` that needs neither data nor model."""
    check_device(spec.evaluation.device)
    check_power_log(spec)
