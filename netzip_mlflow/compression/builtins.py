"""The built-in compression techniques, registered into the store (:mod:`netzip_mlflow.compression.registry`).

The store imports this module by name on first use and calls :func:`register_builtins`; nothing
imports it statically, so the technique modules (which may use the store, as the pipeline does)
never import each other in a loop.
"""

from __future__ import annotations

from netzip_mlflow.compression import (
    bnn,
    distill,
    export,
    finetune,
    nni_adapter,
    pipeline,
    pruning,
    quantization,
    structured,
)
from netzip_mlflow.compression.registry import register_technique
from netzip_mlflow.compression.spec import TechniqueSpec

BUILTIN_TECHNIQUES: tuple[TechniqueSpec, ...] = (
    *quantization.TECHNIQUES,
    *pruning.TECHNIQUES,
    *structured.TECHNIQUES,
    *finetune.TECHNIQUES,
    *distill.TECHNIQUES,
    *bnn.TECHNIQUES,
    *nni_adapter.TECHNIQUES,
    *export.TECHNIQUES,
    pipeline.PIPELINE_SPEC,
)


def register_builtins() -> None:
    """Register every built-in technique (called once by the store)."""
    for spec in BUILTIN_TECHNIQUES:
        register_technique(spec)
