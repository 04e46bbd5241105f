"""Runtime measurement of one model: latency, CPU, RAM and energy, optionally in a fresh process.

docs/architecture.md, "Measurement protocol": each model is measured in a freshly *spawned* process (``isolate=True``) so that
one model's memory, caches and allocator state do not leak into the next. The model travels to the
worker through a temporary ``torch.save`` file written by this process from the caller's in-memory
model (never a file a user handed us), and is loaded there only after the worker's anonymous memory
has been read, so ``resources/ram_mb_model`` is the model's own footprint.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from netzip_mlflow import model_pickle
from netzip_mlflow.errors import MeasurementError, WatchdogTimeout
from netzip_mlflow.evaluation.deployed import DeployedModel
from netzip_mlflow.evaluation.energy import EnergyWindow, best_meter, measure_idle_power
from netzip_mlflow.evaluation.latency import CudaEventTimer, LatencySettings, measure_latency
from netzip_mlflow.evaluation.paired import PairedSettings, measure_paired
from netzip_mlflow.evaluation.resources import ResourceMonitor
from netzip_mlflow.tracking import keys

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class RuntimeSettings:
    """What the runtime measurement needs besides the model and its sample input."""

    latency: LatencySettings
    threads: int = 1
    device: str = "cpu"
    idle_s: float = 1.0
    power_log: Path | None = None
    timeout_s: float | None = None  # the isolated worker's limit, s (None: no limit)
    paired: PairedSettings | None = None
    """Time against the baseline interleaved (:mod:`~netzip_mlflow.evaluation.paired`) when one is given."""


@dataclass
class RuntimeResult:
    """Metrics (contract keys) and tags from one runtime measurement."""

    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def measure_runtime(
    model: nn.Module, sample: torch.Tensor, settings: RuntimeSettings, anon_before_bytes: int | None = None
) -> RuntimeResult:
    """Time ``model(sample)`` by the latency protocol with CPU, RAM and energy measured around it.

    Order, all in this process: torch intra-op threads set to ``settings.threads`` (restored
    afterwards); idle power read for ``settings.idle_s`` seconds while sleeping; the machine's
    background CPU use read for 0.2 s; then one window holding the warm-up and the timed calls,
    around which the RSS is sampled at 100 Hz and the energy meter read. Energy covers the whole
    window (warm-up included) and is divided by every sample run in it. On CUDA, each timed call is
    timed with CUDA events and the GPU's NVML utilisation and peak allocated memory are recorded.

    Args:
        model: the model, in eval mode on ``settings.device``.
        sample: one real input batch, already on the device and in the model's dtype.
        settings: protocol settings.
        anon_before_bytes: anonymous memory of this process before the model was loaded
            (:func:`~netzip_mlflow.evaluation.resources.current_anon_bytes`; the isolated worker
            passes it). Without it ``resources/ram_mb_model`` is left out: in a process that
            already holds the model (and maybe earlier ones) no reading can isolate its footprint.
    """
    threads_before = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    if isinstance(model, DeployedModel):  # threads through the runtime's own option
        model.set_threads(settings.threads)
    try:
        return _measure(model, sample, settings, anon_before_bytes)
    finally:
        torch.set_num_threads(threads_before)


def _measure(
    model: nn.Module, sample: torch.Tensor, settings: RuntimeSettings, anon_before_bytes: int | None
) -> RuntimeResult:
    cuda = settings.device.startswith("cuda")
    gpu = (torch.device(settings.device).index or 0) if cuda else None
    meter = best_meter(cuda_device=gpu, power_log=settings.power_log)
    sync = torch.cuda.synchronize if cuda else None
    timer = CudaEventTimer(gpu) if gpu is not None else None
    batch = int(sample.shape[0])

    idle = measure_idle_power(meter, settings.idle_s) if meter is not None and settings.idle_s > 0 else None
    with torch.inference_mode():
        with ResourceMonitor(baseline_anon_bytes=anon_before_bytes, gpu_device=gpu) as monitor:
            window = EnergyWindow(meter) if meter is not None else contextlib.nullcontext()
            with window:
                latency = measure_latency(
                    lambda: model(sample), settings.latency, batch, synchronize=sync, timer=timer
                )
    result = RuntimeResult()
    result.metrics.update(latency.as_metrics())
    result.metrics.update(monitor.result().as_metrics())
    result.tags[keys.TAG_LATENCY_TARGET_MET] = str(latency.target_met).lower()
    result.tags[keys.TAG_LATENCY_TIMER] = "cuda-events" if timer is not None else "perf_counter"
    threads = model.session_threads() if isinstance(model, DeployedModel) else torch.get_num_threads()
    result.tags[keys.TAG_RUNTIME_THREADS] = str(threads)
    result.tags[keys.TAG_RUNTIME_ISOLATED] = "false"
    if meter is not None:
        energy = window.result(n_samples=latency.calls * batch, idle_power_w=idle)
        result.metrics.update(energy.as_metrics())
        result.tags[keys.TAG_ENERGY_METER] = energy.tag_value()
    else:
        result.tags[keys.TAG_ENERGY_METER] = "none (no energy meter readable on this machine)"
    return result


def measure_pair(
    model: nn.Module, baseline: nn.Module, sample: torch.Tensor, base_sample: torch.Tensor, settings: RuntimeSettings
) -> RuntimeResult:
    """``ratio/speedup_paired`` (and ``ratio/efficiency_paired`` where a meter reads windows) of
    ``model`` against ``baseline``, both in this process and timed interleaved.

    Run it *after* :func:`measure_runtime` of ``model``: RAM and footprint belong to the model's own
    measurement, and two models in one process would mix them. Idle power is read again here, with
    both models loaded, for the paired energy windows. A deployed (ONNX Runtime / OpenVINO) model
    is timed through its session like any module, its threads fixed by the runtime's own option.
    """
    if settings.paired is None:
        raise MeasurementError("measure_pair needs RuntimeSettings.paired (the paired protocol's settings)")
    threads_before = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    for timed in (model, baseline):
        if isinstance(timed, DeployedModel):
            timed.set_threads(settings.threads)
    try:
        cuda = settings.device.startswith("cuda")
        gpu = (torch.device(settings.device).index or 0) if cuda else None
        meter = best_meter(cuda_device=gpu, power_log=settings.power_log)
        idle = measure_idle_power(meter, settings.idle_s) if meter is not None and settings.idle_s > 0 else None
        with torch.inference_mode():
            paired = measure_paired(
                lambda: model(sample),
                lambda: baseline(base_sample),
                settings.paired,
                synchronize=torch.cuda.synchronize if cuda else None,
                meter=meter,
                idle_power_w=idle,
            )
    finally:
        torch.set_num_threads(threads_before)
    return RuntimeResult(metrics=paired.as_metrics(), tags=paired.as_tags())


def worker_environment(threads: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The isolated worker's environment: ``base`` (default ``os.environ``) with the OpenMP / MKL /
    OpenBLAS thread pools fixed to ``threads`` before torch starts, so no library of the worker
    opens a pool of another size."""
    env = dict(os.environ if base is None else base)
    for name in _THREAD_VARIABLES:
        env[name] = str(threads)
    return env


def code_modules(model: nn.Module) -> list[str]:
    """The importable modules defining the classes of ``model``'s modules (e.g.
    ``torchvision.models.resnet``), which the worker imports *before* it reads its baseline RSS:
    the memory of importing a model's code (torchvision alone is about 170 MB) is not the model's
    footprint (for a runtime model: the runtime's library, e.g. onnxruntime). Classes defined in
    ``__main__`` travel by value and are left out."""
    names = {type(module).__module__ for module in model.modules()}
    if isinstance(model, DeployedModel):
        names.update(model.runtime_code_modules())
    return sorted(name for name in names if name != "__main__" and name in sys.modules)


def measure_runtime_isolated(
    model: nn.Module,
    sample: torch.Tensor,
    settings: RuntimeSettings,
    baseline: nn.Module | None = None,
    base_sample: torch.Tensor | None = None,
) -> RuntimeResult:
    """:func:`measure_runtime` in a fresh Python process (``python -m netzip_mlflow.evaluation.worker``).

    With ``baseline`` (and ``settings.paired``), the worker then loads the baseline from its own
    file, after the model's measurement, and adds :func:`measure_pair`'s paired ratios.

    A plain subprocess rather than ``multiprocessing``: it needs no ``if __name__ == "__main__"``
    guard in the caller's script and starts with nothing but the worker's imports. Its thread pools
    are fixed through the environment (:func:`worker_environment`); it imports the model's code
    (:func:`code_modules`) and then reads its anonymous memory before loading the model, so
    ``resources/ram_mb_model`` is the model's own footprint (weights, activations, the sample,
    kernel workspaces) and nothing of its code, of the libraries' code pages its first call faults
    in, or of an earlier model measured by the caller.

    The worker runs under :func:`run_worker`: its own process group, killed after
    ``settings.timeout_s`` (:class:`~netzip_mlflow.errors.WatchdogTimeout`, ``timeout after N s in
    the isolated runtime measurement``) or when this call is interrupted; a worker killed by a signal
    is reported by the signal's name (``killed by SIGKILL — out of memory?``). The payload's
    temporary folder is removed in every case.
    """
    tmp = tempfile.mkdtemp(prefix="netzip-worker-")
    try:
        payload, out = Path(tmp) / "payload.pt", Path(tmp) / "result.json"
        content: dict[str, object] = {"model": model, "sample": sample.cpu(), "settings": settings}
        if baseline is not None and settings.paired is not None:
            base_path = Path(tmp) / "baseline.pt"  # loaded by the worker only after the model's measurement
            base_input = base_sample if base_sample is not None else sample
            torch.save({"model": baseline, "sample": base_input.cpu()}, base_path, pickle_module=model_pickle)
            content["baseline_path"] = str(base_path)
        torch.save(content, payload, pickle_module=model_pickle)
        command = [
            sys.executable, "-m", "netzip_mlflow.evaluation.worker", str(payload), str(out), str(os.getpid()),
            *code_modules(model),
        ]
        returncode, stderr = run_worker(command, worker_environment(settings.threads), settings.timeout_s)
        if returncode != 0 or not out.is_file():
            raise MeasurementError(f"the isolated measurement process {worker_failure(returncode, stderr)}")
        data = json.loads(out.read_text())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    tags = {**data["tags"], keys.TAG_RUNTIME_ISOLATED: "true"}
    return RuntimeResult(metrics=data["metrics"], tags=tags)


WORKER_PHASE = "the isolated runtime measurement"


def run_worker(command: list[str], env: Mapping[str, str], timeout_s: float | None) -> tuple[int, str]:
    """Run ``command`` in its own process group; returns ``(returncode, stderr)``.

    The group is killed (SIGKILL) when ``timeout_s`` passes (raising :class:`WatchdogTimeout`) and
    whenever this function leaves early (an exception, a recipe watchdog, Ctrl-C), so no worker
    outlives the call; the worker also asks the kernel to kill it if this process dies
    (``PR_SET_PDEATHSIG``, see :mod:`netzip_mlflow.evaluation.worker`).
    """
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(env), start_new_session=True
    )
    try:
        try:
            _, stderr = proc.communicate(timeout=timeout_s or None)
        except subprocess.TimeoutExpired:
            raise WatchdogTimeout(float(timeout_s or 0), WORKER_PHASE) from None
        return proc.returncode, stderr or ""
    finally:
        if proc.poll() is None:
            kill_group(proc)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group led by ``proc`` (started with ``start_new_session=True``) and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.kill()
        proc.communicate(timeout=30)


_SIGNAL_HINTS = {
    "SIGKILL": " — out of memory? (the kernel's OOM killer sends SIGKILL)",
    "SIGSEGV": " — a crash in native code (a custom op or C extension?)",
    "SIGBUS": " — a crash in native code (a custom op or C extension?)",
    "SIGABRT": " — a native library aborted",
}


def worker_failure(returncode: int, stderr: str) -> str:
    """How a worker failed, for the error message: its signal by name, else its last stderr line."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}{_SIGNAL_HINTS.get(name, '')}"
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    detail = lines[-1].strip()[:300] if lines else f"exit code {returncode}"
    return f"failed: {detail}; rerun with evaluation.isolate: false to see the error in this process"
def run_measurement(
    model: nn.Module,
    sample: torch.Tensor,
    settings: RuntimeSettings,
    isolate: bool,
    baseline: nn.Module | None = None,
    base_sample: torch.Tensor | None = None,
) -> RuntimeResult:
    """The runtime metrics of ``model`` (isolated or in this process), plus the paired ratios
    against ``baseline`` when one is given and ``settings.paired`` is set."""
    pair = baseline is not None and settings.paired is not None
    if isolate:
        result = measure_runtime_isolated(model, sample, settings, baseline if pair else None, base_sample)
    else:
        result = measure_runtime(model, sample, settings)
        if pair:
            extra = measure_pair(model, baseline, sample, base_sample if base_sample is not None else sample, settings)
            result.metrics.update(extra.metrics)
            result.tags.update(extra.tags)
    if not pair:
        why = "evaluation.paired is false" if settings.paired is None else "no baseline model to pair with"
        result.tags.setdefault(keys.TAG_PAIRED, f"false ({why})")
    return result
