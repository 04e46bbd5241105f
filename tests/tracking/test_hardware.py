"""Hardware facts against psutil / platform, read once per process."""

from __future__ import annotations

import platform

import psutil
import pytest

from netzip_mlflow.tracking import hardware
from netzip_mlflow.tracking.hardware import hardware_facts, software_tags


def test_facts_agree_with_psutil_and_platform() -> None:
    facts = hardware_facts()
    assert facts.cores_logical == str(psutil.cpu_count(logical=True))
    assert facts.cores_physical == str(psutil.cpu_count(logical=False))
    assert facts.ram_gb == str(round(psutil.virtual_memory().total / 1e9))
    assert facts.machine == platform.machine()


def test_facts_are_read_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    first = hardware_facts()
    monkeypatch.setattr(hardware, "cpu_model_name", lambda: pytest.fail("facts were read again"))
    assert hardware_facts() is first


def test_os_and_versions_are_tagged() -> None:
    import mlflow
    import torch
    import torchvision

    tags = software_tags()
    assert tags["netzip.sw.os"] == platform.platform()
    assert tags["netzip.sw.torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert tags["netzip.sw.torchvision"].split("+")[0] == torchvision.__version__.split("+")[0]
    assert tags["netzip.sw.mlflow"] == mlflow.__version__
    assert tags["netzip.sw.torch_threads"] == str(torch.get_num_threads())
