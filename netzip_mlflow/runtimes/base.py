"""The runtime interface and :class:`RuntimeModel`, a model that runs in a deployment runtime.

A :class:`Runtime` says, for a folder of files it wrote (``model.onnx``; ``model.xml`` +
``model.bin``): which files ship (:meth:`Runtime.files`), how to open a session with a fixed number
of threads (:meth:`Runtime.load`, the session runs one batch and reads back its thread setting), the
bit-width of each weighted op as the runtime graph holds it (:meth:`Runtime.layer_bits`) and the
library's version. Other code (the evaluator, the isolated worker, paired timing) needs nothing else.

:class:`RuntimeModel` wraps one runtime, its files and facts of the torch model it was exported
from (per-layer MACs, parameter counts). Its ``forward`` runs a batch through the session (CPU,
float32 in, float32 out), opened lazily with :meth:`RuntimeModel.set_threads`' count. Pickled (the
isolated worker's payload, ``copy.deepcopy``) it carries its files' bytes, written back to a private
temporary folder when unpickled; the session is never pickled.

MACs and CHATS (DESIGN.md section 5): MACs are the source model's, per layer; each layer's bits are
those of its op in the runtime graph (an int8 QDQ Conv/Gemm/MatMul counts 8), found by the graph's
node names, which ``torch.onnx`` derives from the module path (``/layer1/layer1.0/conv1/Conv`` is
layer ``layer1.0.conv1``). A layer with no weighted op in the graph keeps 32 bits (float32
runtime).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from netzip_mlflow.errors import ConfigError, ModelError
from netzip_mlflow.evaluation.ops import OpsReport
from netzip_mlflow.evaluation.size import SizeReport

FLOAT_BITS = 32


class Session(Protocol):
    """An open inference session of one runtime."""

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """Run one float32 batch (N, ...) and return the float32 output (N, ...)."""

    def threads(self) -> int:
        """The intra-op thread count the session uses, read back from the runtime."""


class Runtime(ABC):
    """A deployment runtime: how to open, describe and size the files a technique wrote."""

    #: tag value of ``netzip.runtime`` (e.g. ``onnxruntime``).
    name: str = ""
    #: the distribution whose version is recorded as ``netzip.sw.<name>``.
    distribution: str = ""
    #: the runtime's own option that fixes its threads (recorded in the README and docs).
    thread_option: str = ""
    #: the library's importable module (the isolated worker imports it before its memory baseline).
    module: str = ""

    def version(self) -> str:
        """The installed version of the runtime's library."""
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    @abstractmethod
    def files(self, folder: Path) -> list[Path]:
        """The files that ship (what a deployment copies), all inside ``folder``."""

    @abstractmethod
    def load(self, folder: Path, threads: int) -> Session:
        """Open a CPU session on the files in ``folder`` with ``threads`` intra-op threads."""

    @abstractmethod
    def layer_bits(self, folder: Path) -> dict[str, int]:
        """Graph node name -> bit-width of the weights of every weighted op (conv, matmul)."""


def module_name_for_node(node_name: str, layers: set[str]) -> str | None:
    """The module (one of ``layers``) a ``torch.onnx`` node name belongs to, or ``None``.

    ``torch.onnx`` scopes node names by module: ``/layer2/layer2.0/downsample/downsample.0/Conv``
    -> segments ``layer2``, ``layer2.0`` (a container's child repeats the parent's segment),
    ``downsample``, ``downsample.0``: module ``layer2.0.downsample.0``. The
    deepest prefix of the segments that names a known layer wins; trailing segments (the op type,
    a runtime's suffix such as ``/WithoutBiases``) are ignored.
    """
    best, path, last = None, "", ""
    for segment in node_name.strip("/").split("/"):
        if last and segment.startswith(last + "."):  # a container's child: "<parent>.<child>"
            path += segment[len(last):]
        else:
            path = f"{path}.{segment}" if path else segment
        last = segment
        if path in layers:
            best = path
    return best


@dataclasses.dataclass(frozen=True)
class SourceFacts:
    """What the runtime model keeps of the torch model it was exported from.

    Attributes:
        ops: per-layer MACs of one sample (the evaluator's :func:`count_ops` on the source).
        params, params_nonzero: weight and bias elements of the source, and those not zero.
        input_shape: one sample's shape, without the batch dimension.
    """

    ops: OpsReport
    params: int
    params_nonzero: int
    input_shape: tuple[int, ...]


class RuntimeModel(nn.Module):
    """A classifier that runs in a deployment runtime; see the module docstring.

    Implements :class:`~netzip_mlflow.evaluation.deployed.DeployedModel`.

    Args:
        runtime: the runtime that opens ``folder``.
        folder: the runtime's files; the model copies them into a private folder it owns.
        source: facts of the torch model it was exported from (``None`` for a model loaded back
            from MLflow: it runs, but cannot be measured for MACs).
        threads: intra-op threads of the session (``set_threads`` changes it).
    """

    def __init__(self, runtime: Runtime, folder: Path, source: SourceFacts | None, threads: int = 1) -> None:
        super().__init__()
        self.runtime = runtime
        self.source = source
        self._threads = int(threads)
        self._session: Session | None = None
        self._holder = tempfile.TemporaryDirectory(prefix="netzip-runtime-")  # removed with the model
        self._folder = Path(self._holder.name)
        for path in runtime.files(Path(folder)):
            target = self._folder / path.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)

    # -- running --------------------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        """The private folder holding the runtime's files."""
        return self._folder

    def files(self) -> list[Path]:
        """The files that ship."""
        return self.runtime.files(self._folder)

    def set_threads(self, threads: int) -> None:
        """Use ``threads`` intra-op threads from the next call on (reopens the session if needed)."""
        if int(threads) != self._threads:
            self._threads, self._session = int(threads), None

    def session(self) -> Session:
        """The open session (opened on first use)."""
        if self._session is None:
            self._session = self.runtime.load(self._folder, self._threads)
        return self._session

    def runtime_facts(self) -> tuple[str, str, str]:
        """``(runtime name, library version, the runtime's thread option)``."""
        return self.runtime.name, self.runtime.version(), self.runtime.thread_option

    def runtime_code_modules(self) -> list[str]:
        """Modules the isolated worker imports before reading its memory baseline: the runtime's
        library is code, not the model's footprint."""
        return [type(self.runtime).__module__, self.runtime.module]

    def session_threads(self) -> int:
        """Intra-op threads of the session, as the runtime reports them."""
        return self.session().threads()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Run ``inputs`` (N, ...) through the runtime session; float32 logits on the CPU."""
        array = inputs.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(np.ascontiguousarray(self.session().run(array)))

    def _apply(self, fn: Any, recurse: bool = True) -> RuntimeModel:  # model.to(...), .float()
        probe = fn(torch.zeros(()))
        if probe.device.type != "cpu":
            raise ConfigError(
                "evaluation.device",
                f"a {self.runtime.name} model runs on the CPU, not on {probe.device}",
                "evaluate runtime models with evaluation.device: cpu",
            )
        return self

    # -- measuring ------------------------------------------------------------------------------
    def ops_report(self) -> OpsReport:
        """The source's per-layer MACs with each layer's bits from the runtime graph."""
        if self.source is None:
            raise ModelError(
                f"this {self.runtime.name} model was loaded without its source model's facts, so its "
                "MACs are unknown; evaluate the model the onnx/openvino technique returns"
            )
        layers = {layer.name for layer in self.source.ops.per_layer}
        bits: dict[str, int] = {}
        for node, width in self.runtime.layer_bits(self._folder).items():
            name = module_name_for_node(node, layers)
            if name is not None:
                bits[name] = min(bits.get(name, FLOAT_BITS), width)
        per_layer = [
            dataclasses.replace(layer, bits=bits.get(layer.name, FLOAT_BITS))
            for layer in self.source.ops.per_layer
        ]
        return OpsReport.from_layers(per_layer)

    def size_report(self) -> SizeReport:
        """Disk size of the files that ship (plain, and gzip -9 of their concatenation)."""
        data = b"".join(path.read_bytes() for path in sorted(self.files()))
        if self.source is None:
            return SizeReport.of(data, 0, 0)
        return SizeReport.of(data, self.source.params, self.source.params_nonzero)

    # -- pickling and copying -------------------------------------------------------------------
    def __reduce__(self) -> tuple[Any, ...]:
        files = {path.relative_to(self._folder).as_posix(): path.read_bytes() for path in self.files()}
        return _rebuild, (self.runtime, files, self.source, self._threads, self.training)

    def __deepcopy__(self, memo: dict[int, Any]) -> RuntimeModel:
        return RuntimeModel(self.runtime, self._folder, self.source, self._threads).train(self.training)

    def extra_repr(self) -> str:
        return f"runtime={self.runtime.name}, files={[p.name for p in self.files()]}"


def _rebuild(
    runtime: Runtime, files: dict[str, bytes], source: SourceFacts | None, threads: int, training: bool
) -> RuntimeModel:
    with tempfile.TemporaryDirectory(prefix="netzip-runtime-in-") as folder:
        for name, data in files.items():
            path = Path(folder) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        files.clear()  # the bytes are not kept: they would count as the session's memory
        return RuntimeModel(runtime, Path(folder), source, threads).train(training)
