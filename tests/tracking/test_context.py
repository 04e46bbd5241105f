"""Hardware/software run tags and the MLflow run-context provider."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import re
import sys
import types

import pytest
from mlflow.tracking.context import registry as mlflow_registry

from netzip_mlflow.tracking import hardware as context
from netzip_mlflow.tracking.context import OPT_IN_ENV, NetzipRunContextProvider, own_runs, start_run
from netzip_mlflow.tracking.hardware import HardwareFacts, hardware_tags, software_tags

HW_KEYS = {"cpu", "cores_physical", "cores_logical", "ram_gb", "gpu", "machine", "id"}
SW_KEYS = {"os", "python", "torch", "torchvision", "mlflow", "netzip", "torch_threads"}
FACTS = HardwareFacts(
    cpu="Intel Xeon Gold 6248",
    cores_physical="20",
    cores_logical="40",
    ram_gb="192",
    gpu="none",
    machine="x86_64",
)


def test_all_tags_present_and_non_empty() -> None:
    tags = {**hardware_tags(), **software_tags()}
    expected = {f"netzip.hw.{k}" for k in HW_KEYS} | {f"netzip.sw.{k}" for k in SW_KEYS}
    assert set(tags) == expected
    assert all(isinstance(v, str) and v for v in tags.values())


def test_hardware_tags_of_this_machine_are_plausible() -> None:
    tags = hardware_tags()
    assert int(tags["netzip.hw.cores_logical"]) >= 1
    assert int(tags["netzip.hw.ram_gb"]) >= 1
    assert re.fullmatch(r"[0-9a-f]{12}", tags["netzip.hw.id"])
    assert tags["netzip.hw.machine"] != "unknown"


def test_hw_id_is_stable_and_follows_every_identifying_fact() -> None:
    assert hardware_tags()["netzip.hw.id"] == hardware_tags()["netzip.hw.id"]
    assert hardware_tags(FACTS)["netzip.hw.id"] == FACTS.hw_id == dataclasses.replace(FACTS).hw_id
    for field, other in [
        ("cpu", "AMD EPYC 7763"),
        ("cores_physical", "10"),
        ("cores_logical", "20"),
        ("ram_gb", "96"),
        ("gpu", "NVIDIA A100"),
    ]:
        assert dataclasses.replace(FACTS, **{field: other}).hw_id != FACTS.hw_id, field


def test_injected_facts_become_tags() -> None:
    tags = hardware_tags(FACTS)
    assert tags["netzip.hw.cpu"] == "Intel Xeon Gold 6248"
    assert tags["netzip.hw.ram_gb"] == "192"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7763 64-Core\n",
            "AMD EPYC 7763 64-Core",
        ),
        (
            "processor\t: 0\nBogoMIPS\t: 108.00\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n",
            "Raspberry Pi 4 Model B Rev 1.4",
        ),
        ("processor\t: 0\nflags\t: fpu\n", None),
    ],
)
def test_cpuinfo_parsing(text: str, expected: str | None) -> None:
    assert context._cpuinfo_field(text) == expected


def test_gpu_name_counting() -> None:
    assert context._count_names([]) == "none"
    assert context._count_names(["A", "A", "B"]) == "2 x A, B"


def test_a_failing_fact_reads_unknown() -> None:
    def broken() -> str:
        raise OSError("no /proc here")

    assert context._safe(broken) == "unknown"
    assert context._safe(lambda: "") == "unknown"
    assert context._safe(lambda: None) == "unknown"
    assert context._safe(lambda: 8) == "8"


def test_software_versions_match_installed_packages() -> None:
    tags = software_tags()
    assert tags["netzip.sw.mlflow"] == importlib.metadata.version("mlflow")
    assert tags["netzip.sw.python"] == ".".join(map(str, sys.version_info[:3]))


def test_torch_threads_read_live(monkeypatch: pytest.MonkeyPatch) -> None:
    threads = {"n": 3}
    fake_torch = types.SimpleNamespace(get_num_threads=lambda: threads["n"])
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    assert software_tags()["netzip.sw.torch_threads"] == "3"
    threads["n"] = 5
    assert software_tags()["netzip.sw.torch_threads"] == "5"
    monkeypatch.delitem(sys.modules, "torch")
    assert software_tags()["netzip.sw.torch_threads"] == "unknown"


def test_provider_is_in_context_only_for_netzip_runs_or_when_opted_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(OPT_IN_ENV, raising=False)
    provider = NetzipRunContextProvider()
    assert provider.in_context() is False
    with own_runs():
        assert provider.in_context() is True
    assert provider.in_context() is False
    monkeypatch.setenv(OPT_IN_ENV, "1")
    assert provider.in_context() is True
    monkeypatch.setenv(OPT_IN_ENV, "0")
    assert provider.in_context() is False


def test_a_plain_mlflow_run_gets_no_netzip_tag_and_ours_do(monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    monkeypatch.delenv(OPT_IN_ENV, raising=False)
    installed = [ep for ep in importlib.metadata.entry_points(group="mlflow.run_context_provider") if ep.name == "netzip"]
    if not installed:
        pytest.skip("netzip-mlflow is not installed (pip install -e .)")
    with mlflow.start_run() as plain:
        pass
    with start_run() as ours:
        pass
    plain_tags = mlflow.get_run(plain.info.run_id).data.tags
    assert not [k for k in plain_tags if k.startswith("netzip.")]
    assert mlflow.get_run(ours.info.run_id).data.tags["netzip.hw.id"] == hardware_tags()["netzip.hw.id"]


def test_provider_contract() -> None:
    provider = NetzipRunContextProvider()
    tags = provider.tags()
    assert tags["netzip.hw.id"] == hardware_tags()["netzip.hw.id"]
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())


def test_provider_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> dict[str, str]:
        raise RuntimeError("psutil exploded")

    monkeypatch.setattr(context, "hardware_tags", broken)
    tags = NetzipRunContextProvider().tags()
    assert "netzip.hw.id" not in tags
    assert "netzip.sw.python" in tags  # the other group still arrives


def test_provider_through_mlflow_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = mlflow_registry.RunContextProviderRegistry()
    registry.register(NetzipRunContextProvider)
    monkeypatch.setattr(mlflow_registry, "_run_context_provider_registry", registry)
    with own_runs():
        tags = mlflow_registry.resolve_tags({"user.tag": "kept"})
    assert tags["user.tag"] == "kept"
    assert tags["netzip.hw.id"] == hardware_tags()["netzip.hw.id"]


def test_installed_entry_point_is_ours() -> None:
    entry_points = importlib.metadata.entry_points(group="mlflow.run_context_provider")
    ours = [ep for ep in entry_points if ep.name == "netzip"]
    if not ours:
        pytest.skip("netzip-mlflow is not installed (pip install -e .)")
    assert ours[0].load() is NetzipRunContextProvider
