"""The isolated runtime-measurement worker:
``python -m netzip_mlflow.evaluation.worker IN OUT [MODULE ...]``.

Imports the modules that define the model's classes (``MODULE ...``, named by the parent process),
reads its anonymous memory with its libraries imported, then loads the payload (model, sample, settings) that its parent process wrote to a
private temporary file a moment ago, measures, and writes metrics and tags as JSON to ``OUT``. When
the payload names a baseline file, the baseline is loaded only after that measurement and the two
models are timed interleaved (paired ratios).
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import torch

from netzip_mlflow.evaluation.resources import current_anon_bytes
from netzip_mlflow.evaluation.runtime import measure_pair, measure_runtime


def main(argv: list[str]) -> int:
    """Run one measurement; returns the exit code."""
    payload_path, out_path = Path(argv[0]), Path(argv[1])
    for name in argv[2:]:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # unpickling will import it (its memory then counts) or fail with a clear error
    anon_before = current_anon_bytes()  # libraries and model code loaded, model not yet
    # Written by our own parent process from its in-memory model, in a private temp dir: trusted.
    payload = torch.load(payload_path, weights_only=False)
    settings = payload["settings"]
    model = payload["model"].to(settings.device).eval()
    sample = payload["sample"].to(settings.device)
    result = measure_runtime(model, sample, settings, anon_before_bytes=anon_before)
    if payload.get("baseline_path"):  # paired timing, after this model's own RAM and footprint
        base = torch.load(payload["baseline_path"], weights_only=False)  # also written by our parent
        baseline = base["model"].to(settings.device).eval()
        paired = measure_pair(model, baseline, sample, base["sample"].to(settings.device), settings)
        result.metrics.update(paired.metrics)
        result.tags.update(paired.tags)
    out_path.write_text(json.dumps({"metrics": result.metrics, "tags": result.tags}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
