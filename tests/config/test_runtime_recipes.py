"""Runtime techniques in a study YAML: refused where they cannot run, with the field named."""

from __future__ import annotations

import pytest

from netzip_mlflow.config.loader import validate_study
from netzip_mlflow.errors import ConfigError

BASE = {"study": "s", "data": {"builtin": "digits"}, "model": {"arch": "tiny_cnn"}}


def _study(recipes: list[dict], **changes: object) -> dict:
    return {**BASE, "recipes": recipes, **changes}


def test_runtime_recipes_validate_with_defaults() -> None:
    spec = validate_study(_study([{"name": "o", "technique": "openvino", "params": {"quantize": "int8"}}]))
    assert spec.recipes[0].params == {"quantize": "int8", "calibration_batches": 10, "opset": 17}


def test_detection_refuses_exports_at_load_time_with_the_reason() -> None:
    raw = _study([{"name": "o", "technique": "onnx"}], task="detection", data={"builtin": "shapes"})
    with pytest.raises(ConfigError, match=r"recipes\[0\].technique.*'onnx' does not apply to detection.*not implemented"):
        validate_study(raw)


def test_detection_refuses_an_export_inside_a_pipeline() -> None:
    steps = [{"technique": "prune_structured", "params": {"amount": 0.3}}, {"technique": "openvino"}]
    raw = _study([{"name": "p", "steps": steps}], task="detection", data={"builtin": "shapes"})
    with pytest.raises(ConfigError, match=r"recipes\[0\].steps\[1\].technique.*'openvino'"):
        validate_study(raw)


def test_a_gpu_evaluation_refuses_cpu_runtimes() -> None:
    raw = _study([{"name": "o", "technique": "onnx"}], evaluation={"device": "cuda"})
    with pytest.raises(ConfigError, match=r"recipes\[0\].technique.*CPU runtime.*evaluation.device: cpu"):
        validate_study(raw)
