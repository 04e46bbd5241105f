"""Test-only compression techniques that fail on purpose or stall; registered on import.

Imported by the study tests in-process, and put on PYTHONPATH of CLI subprocesses (see
``run_cli`` in the tests) to stall a recipe long enough to kill the process.
"""

from __future__ import annotations

import os
import sys
import time

import torch
from torch import nn

from netzip_mlflow.compression.registry import register_technique
from netzip_mlflow.compression.result import CompressionResult
from netzip_mlflow.compression.spec import ParamSpec, TechniqueSpec

SLEEP_ENV = "NETZIP_TEST_SLEEP_S"
WAIT_ENV = "NETZIP_TEST_WAIT_FILE"  # test_sleep first waits until this file exists (at most 600 s)
STALL_AFTER_ENV = "NETZIP_TEST_STALL_AFTER"  # test_stall_after: calls in this process before it stalls
_calls = {"test_stall_after": 0}


class NaNOutput(nn.Module):
    """Wraps a model and turns its outputs into NaN (a numerically broken compressed model)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * float("nan")


class HangsForever(nn.Module):
    """A model whose forward pass sleeps forever (a deadlocked custom op, a data-dependent loop)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        while True:
            time.sleep(3600)


class ExitInForward(nn.Module):
    """Wraps a model whose forward calls ``sys.exit(0)`` (user code that ends the process)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sys.exit(0)


def _hang(model, params, data, example, hooks):
    return CompressionResult(HangsForever(model), {})


def _exit(model, params, data, example, hooks):
    if params["where"] == "apply":
        sys.exit(0)
    return CompressionResult(ExitInForward(model), {})


def _interrupt(model, params, data, example, hooks):
    raise KeyboardInterrupt


def _raise(model, params, data, example, hooks):
    raise RuntimeError("boom from a test technique\nsecond line not in the tag")


def _nan(model, params, data, example, hooks):
    return CompressionResult(NaNOutput(model), {})


def _oom(model, params, data, example, hooks):
    if params["kind"] == "torch":
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    raise MemoryError("cannot allocate 20 GiB")


def _sleep(model, params, data, example, hooks):
    release = os.environ.get(WAIT_ENV)
    deadline = time.time() + 600
    while release and not os.path.exists(release) and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(float(os.environ.get(SLEEP_ENV, "0")))
    return CompressionResult(model, {"slept_s": float(os.environ.get(SLEEP_ENV, "0"))})


def _stall_after(model, params, data, example, hooks):
    """Returns the model unchanged for the first NETZIP_TEST_STALL_AFTER calls, then sleeps 300 s."""
    _calls["test_stall_after"] += 1
    limit = os.environ.get(STALL_AFTER_ENV)
    if limit is not None and _calls["test_stall_after"] > int(limit):
        time.sleep(300)
    return CompressionResult(model, {})


def _spec(name: str, apply, params=()) -> TechniqueSpec:
    return TechniqueSpec(name, f"test-only: {name}", tuple(params), False, False, "not used", apply)


TECHNIQUES = (
    _spec("test_raise", _raise),
    _spec("test_nan", _nan),
    _spec("test_oom", _oom, [ParamSpec("kind", str, "python", "which OOM", choices=("python", "torch"))]),
    _spec("test_sleep", _sleep),
    _spec("test_hang", _hang),
    _spec("test_exit", _exit, [ParamSpec("where", str, "forward", "where sys.exit(0) is called", choices=("forward", "apply"))]),
    _spec("test_interrupt", _interrupt),
    _spec("test_stall_after", _stall_after),
)

for _technique in TECHNIQUES:
    register_technique(_technique, replace=True)
