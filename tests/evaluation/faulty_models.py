"""Models that misbehave only in the isolated measurement worker (they work in the test process).

Their classes travel to the worker by value (cloudpickle), as the worker cannot import this module.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import cloudpickle
import torch
from torch import nn


class _InWorker(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.home_pid = os.getpid()

    def in_worker(self) -> bool:
        return os.getpid() != self.home_pid


class HangsInWorker(_InWorker):
    """Its forward pass sleeps forever in any process but the one that made it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        while self.in_worker():
            time.sleep(3600)
        return self.inner(x)


class SegfaultsInWorker(_InWorker):
    """Its forward pass kills its process with SIGSEGV in any process but the one that made it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_worker():
            os.kill(os.getpid(), signal.SIGSEGV)
        return self.inner(x)


cloudpickle.register_pickle_by_value(sys.modules[__name__])
