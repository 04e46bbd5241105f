"""The isolated worker under faults: a hang ends at its timeout, a crash is named by its signal, the
worker dies with its parent, and no process or payload file is left behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import torch
from torch import nn

from netzip_mlflow.errors import MeasurementError, WatchdogTimeout
from netzip_mlflow.evaluation.latency import LatencySettings
from netzip_mlflow.evaluation.runtime import RuntimeSettings, measure_runtime_isolated, worker_failure
from netzip_mlflow.tracking import keys

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # --import-mode=importlib puts no test folder on sys.path
from faulty_models import HangsInWorker, SegfaultsInWorker  # noqa: E402
QUICK = LatencySettings(warmup_s=0.0, min_warmup=2, budget_s=0.3, min_samples=10)
GENEROUS_S = 300.0
"""A bound on waiting for processes that only a broken implementation would reach."""


def _small() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 4)).eval()


def _workers() -> list[psutil.Process]:
    return [
        p for p in psutil.Process().children(recursive=True)
        if "netzip_mlflow.evaluation.worker" in " ".join(p.cmdline())
    ]


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """tempfile's folder redirected, to see what a measurement leaves there."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_a_hung_forward_is_killed_at_the_timeout(private_tmp):
    settings = RuntimeSettings(QUICK, idle_s=0.0, timeout_s=3.0)
    with pytest.raises(WatchdogTimeout, match=r"^timeout after 3 s in the isolated runtime measurement$"):
        measure_runtime_isolated(HangsInWorker(_small()), torch.randn(1, 16), settings)
    assert _workers() == []  # its process group was killed and reaped
    assert list(private_tmp.glob("netzip-worker-*")) == []  # payload removed


def test_a_segfault_is_reported_by_its_signal(private_tmp):
    settings = RuntimeSettings(QUICK, idle_s=0.0, timeout_s=GENEROUS_S)
    with pytest.raises(MeasurementError, match="process was killed by SIGSEGV — a crash in native code"):
        measure_runtime_isolated(SegfaultsInWorker(_small()), torch.randn(1, 16), settings)
    assert list(private_tmp.glob("netzip-worker-*")) == []


def test_the_worker_still_measures_a_healthy_model_under_the_watchdog():
    result = measure_runtime_isolated(_small(), torch.randn(1, 16), RuntimeSettings(QUICK, idle_s=0.0, timeout_s=GENEROUS_S))
    assert result.metrics[keys.LATENCY_MS] > 0


@pytest.mark.parametrize(
    ("code", "stderr", "expected"),
    [
        (-9, "MemoryError: unrelated line", "was killed by SIGKILL — out of memory?"),
        (-11, "", "was killed by SIGSEGV — a crash in native code"),
        (-15, "", "was killed by SIGTERM"),
        (1, "Traceback...\nValueError: bad model\n", "failed: ValueError: bad model; rerun with evaluation.isolate: false"),
        (3, "", "failed: exit code 3;"),
    ],
)
def test_failure_messages(code, stderr, expected):
    assert worker_failure(code, stderr).startswith(expected)


PARENT = textwrap.dedent(
    """
    import sys, torch
    sys.path.insert(0, {here!r})
    from faulty_models import HangsInWorker
    from netzip_mlflow.evaluation.latency import LatencySettings
    from netzip_mlflow.evaluation.runtime import RuntimeSettings, measure_runtime_isolated
    settings = RuntimeSettings(LatencySettings(warmup_s=0.0, budget_s=0.3, min_samples=5), idle_s=0.0, timeout_s=0)
    measure_runtime_isolated(HangsInWorker(torch.nn.Linear(16, 4)), torch.randn(1, 16), settings)
    """
)


def test_the_worker_dies_with_its_parent():
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(here=str(HERE))])
    worker = None
    try:
        deadline = time.monotonic() + GENEROUS_S
        while worker is None and time.monotonic() < deadline and parent.poll() is None:
            found = [p for p in psutil.Process(parent.pid).children() if "evaluation.worker" in " ".join(p.cmdline())]
            worker = found[0] if found else None
            time.sleep(0.2)
        assert worker is not None, "the parent never started its worker"
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=GENEROUS_S)
        gone, alive = psutil.wait_procs([worker], timeout=GENEROUS_S)
        assert alive == [], "the worker outlived its parent"
    finally:
        for proc in (worker, psutil.Process(parent.pid) if parent.poll() is None else None):
            if proc is not None and proc.is_running():
                proc.kill()
        parent.wait(timeout=GENEROUS_S)
