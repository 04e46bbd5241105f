"""What the evaluator needs from a model that runs in a deployment runtime (ONNX Runtime,
OpenVINO) instead of torch: the protocol :class:`~netzip_mlflow.runtimes.base.RuntimeModel`
implements. Defined here so that evaluation does not import the runtimes (they import evaluation).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from netzip_mlflow.evaluation.ops import OpsReport
from netzip_mlflow.evaluation.size import SizeReport

#: ``netzip.runtime`` of a plain torch module, and the option that fixes its threads.
TORCH_RUNTIME = "torch"
TORCH_THREAD_OPTION = "torch.set_num_threads"


@runtime_checkable
class DeployedModel(Protocol):
    """A model measured through its runtime's session (it is also a callable ``nn.Module``)."""

    def runtime_facts(self) -> tuple[str, str, str]:
        """``(runtime name, library version, the runtime's thread option)``."""

    def ops_report(self) -> OpsReport:
        """Per-layer MACs of the source model with the runtime graph's bit-widths."""

    def size_report(self) -> SizeReport:
        """Disk size of the files that ship."""

    def set_threads(self, threads: int) -> None:
        """Fix the session's intra-op threads through the runtime's own option."""

    def session_threads(self) -> int:
        """The session's intra-op threads, read back from the runtime."""

    def runtime_code_modules(self) -> list[str]:
        """Modules the isolated worker imports before its memory baseline."""
