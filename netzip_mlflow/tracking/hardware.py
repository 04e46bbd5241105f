"""Hardware and software facts of the machine, as MLflow run tags (docs/architecture.md, "MLflow layout").

The run-context provider (``tracking/context.py``) adds these to every MLflow run started where
netzip-mlflow is installed. Because MLflow calls it for *every* run (not only netzip ones), this is
cheap: the static facts are read once per process and cached, nothing imports torch or
initialises CUDA, and a fact that cannot be read becomes ``"unknown"`` — the provider never raises.

``netzip.hw.id`` is a short hash of the CPU model, core counts, RAM and GPU: the leaderboard groups
by it so it never ranks results measured on different hardware against each other.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import logging
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from netzip_mlflow.tracking.keys import TAG_HW_PREFIX, TAG_SW_PREFIX

_log = logging.getLogger(__name__)

UNKNOWN = "unknown"
NO_GPU = "none"
_CPUINFO = Path("/proc/cpuinfo")
# /proc/cpuinfo fields naming the processor, most specific first ("Model" is a Raspberry Pi board).
_CPUINFO_FIELDS = ("model name", "Model", "Hardware", "Processor", "cpu model", "cpu")
_DISTRIBUTIONS = {
    "torch": "torch",
    "torchvision": "torchvision",
    "mlflow": "mlflow",
    "netzip": "netzip-mlflow",
}


@dataclass(frozen=True)
class HardwareFacts:
    """What identifies a machine's hardware; every field is a tag value (a string)."""

    cpu: str
    cores_physical: str
    cores_logical: str
    ram_gb: str
    gpu: str
    machine: str

    @property
    def hw_id(self) -> str:
        """12 hex digits hashing CPU, core counts, RAM and GPU; stable across runs and processes."""
        identity = "|".join(
            (self.cpu, self.cores_physical, self.cores_logical, self.ram_gb, self.gpu)
        )
        return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:12]


def _safe(read: Callable[[], object]) -> str:
    """``str(read())``, or ``"unknown"`` when reading fails or gives nothing."""
    try:
        value = read()
    except Exception as exc:  # a context provider must never break run creation
        _log.debug("netzip: could not read %s: %s", getattr(read, "__name__", read), exc)
        return UNKNOWN
    text = str(value).strip() if value is not None else ""
    return text or UNKNOWN


def _cpuinfo_field(text: str, fields: tuple[str, ...] = _CPUINFO_FIELDS) -> str | None:
    """The first of ``fields`` found in ``/proc/cpuinfo`` text, e.g. ``"AMD EPYC 7763 64-Core"``."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and value.strip():
            values.setdefault(name.strip(), value.strip())
    return next((values[f] for f in fields if f in values), None)


def cpu_model_name() -> str:
    """The processor's model name (``/proc/cpuinfo``, ``sysctl`` on macOS, else ``platform``)."""

    def read() -> str | None:
        if _CPUINFO.exists():
            found = _cpuinfo_field(_CPUINFO.read_text(encoding="utf-8", errors="replace"))
            if found:
                return found
        if sys.platform == "darwin":
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True,
                text=True,
                timeout=2,
                check=True,
            )
            return out.stdout
        return platform.processor() or platform.machine()

    return _safe(read)


def _gpu_names() -> str:
    """GPU names through NVML (no CUDA context is made), e.g. ``"2 x NVIDIA H100"``; else none."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return _torch_gpu_names()
    try:
        names = [
            _decode(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)))
            for i in range(pynvml.nvmlDeviceGetCount())
        ]
    finally:
        pynvml.nvmlShutdown()
    return _count_names(names)


def _torch_gpu_names() -> str:
    """GPU names from torch, only when torch is already imported and CUDA already initialised."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return NO_GPU
    return _count_names([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])


def _decode(name: str | bytes) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else name


def _count_names(names: list[str]) -> str:
    """``["A", "A", "B"]`` -> ``"2 x A, B"``; ``[]`` -> ``"none"``."""
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    parts = [name if n == 1 else f"{n} x {name}" for name, n in counts.items()]
    return ", ".join(parts) or NO_GPU


def _ram_gb() -> int:
    """Total RAM in GB (1e9 B), rounded to a whole number so boot-to-boot jitter keeps the id."""
    return round(psutil.virtual_memory().total / 1e9)


@functools.cache
def hardware_facts() -> HardwareFacts:
    """The machine's hardware facts, read once per process."""
    return HardwareFacts(
        cpu=cpu_model_name(),
        cores_physical=_safe(lambda: psutil.cpu_count(logical=False)),
        cores_logical=_safe(lambda: psutil.cpu_count(logical=True)),
        ram_gb=_safe(_ram_gb),
        gpu=_safe(_gpu_names),
        machine=_safe(platform.machine),
    )


def _package_version(distribution: str) -> str:
    return _safe(lambda: importlib.metadata.version(distribution))


@functools.cache
def _static_software_tags() -> dict[str, str]:
    tags = {
        "os": _safe(platform.platform),
        "python": _safe(platform.python_version),
    }
    tags.update({name: _package_version(dist) for name, dist in _DISTRIBUTIONS.items()})
    return tags


def _torch_threads() -> str:
    """``torch.get_num_threads()`` read now; ``"unknown"`` when torch is not imported (not imported
    here: MLflow calls this for every run, netzip or not, and importing torch takes seconds)."""
    torch = sys.modules.get("torch")
    return _safe(torch.get_num_threads) if torch is not None else UNKNOWN


def hardware_tags(facts: HardwareFacts | None = None) -> dict[str, str]:
    """The ``netzip.hw.*`` tags: cpu, cores_physical, cores_logical, ram_gb, gpu, machine and id.

    Args:
        facts: the facts to describe; by default this machine's (cached).
    """
    facts = facts or hardware_facts()
    tags = {TAG_HW_PREFIX + name: value for name, value in asdict(facts).items()}
    tags[TAG_HW_PREFIX + "id"] = facts.hw_id
    return tags


def software_tags() -> dict[str, str]:
    """The ``netzip.sw.*`` tags: os, python, torch, torchvision, mlflow, netzip, torch_threads."""
    tags = {TAG_SW_PREFIX + name: value for name, value in _static_software_tags().items()}
    tags[TAG_SW_PREFIX + "torch_threads"] = _torch_threads()
    return tags


def context_tags() -> dict[str, str]:
    """Hardware and software tags together; never raises (a group that fails is left out)."""
    tags: dict[str, str] = {}
    for group in (hardware_tags, software_tags):
        try:
            tags.update(group())
        except Exception as exc:  # a context provider must never break run creation
            _log.warning("netzip: %s unavailable: %s", group.__name__, exc)
    return tags
