"""``netzip techniques`` lists every technique with every parameter, its default and its help."""

from __future__ import annotations

import pytest
from rich.console import Console

from netzip_mlflow.cli import main as cli
from netzip_mlflow.compression.registry import list_techniques
from netzip_mlflow.compression.spec import ParamSpec


def test_every_technique_and_parameter_is_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    console = Console(record=True, width=400)
    monkeypatch.setattr(cli, "console", console)
    assert cli.main(["techniques"]) == 0
    text = console.export_text()
    flat = " ".join(text.split())
    for spec in list_techniques():
        assert spec.name in text
        for param in spec.params:
            assert f"{param.name}:" in text, (spec.name, param.name)
    for name in ("ptq", "ptq_dynamic", "fp16", "qat", "prune_unstructured", "prune_structured",
                 "finetune", "distill", "bnn", "nni", "pipeline"):
        assert name in text
    assert "default 0.75" in flat


def test_describe_states_allowed_values_default_and_help() -> None:
    amount = ParamSpec("amount", float, 0.75, "fraction removed", low=0.0, high=1.0,
                       low_inclusive=False, high_inclusive=False)
    assert amount.describe() == "amount: a number in (0, 1), default 0.75 - fraction removed"
    backend = ParamSpec("backend", str, "x86", "kernels", choices=("x86", "qnnpack"))
    assert backend.describe() == "backend: one of: x86, qnnpack, default 'x86' - kernels"
    flag = ParamSpec("fuse", bool, True, "fuse modules")
    assert flag.describe() == "fuse: a boolean, default true - fuse modules"
    count = ParamSpec("n", int, 10, "batches", low=1)
    assert count.describe() == "n: an integer in [1, inf), default 10 - batches"
