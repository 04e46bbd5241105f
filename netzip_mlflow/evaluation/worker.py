"""The isolated runtime-measurement worker:
``python -m netzip_mlflow.evaluation.worker IN OUT PARENT_PID [MODULE ...]``.

First it ties its life to its parent's (:func:`die_with_parent`): the kernel kills it if the parent
process dies (``PR_SET_PDEATHSIG`` on Linux, a polling thread elsewhere), so a killed study leaves no
worker behind. The parent also kills the worker's process group on a timeout or an error.

Imports the modules that define the model's classes (``MODULE ...``, named by the parent process),
reads its anonymous memory with its libraries imported, then loads the payload (model, sample, settings) that its parent process wrote to a
private temporary file a moment ago, measures, and writes metrics and tags as JSON to ``OUT``. When
the payload names a baseline file, the baseline is loaded only after that measurement and the two
models are timed interleaved (paired ratios).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import torch

from netzip_mlflow.evaluation.resources import current_anon_bytes
from netzip_mlflow.evaluation.runtime import measure_pair, measure_runtime


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Have this process killed (SIGKILL) when ``parent_pid`` dies; exit now if it already has."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except OSError:
            armed = False
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)
    if not armed:
        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="netzip-parent-watch", daemon=True).start()


def main(argv: list[str]) -> int:
    """Run one measurement; returns the exit code."""
    payload_path, out_path = Path(argv[0]), Path(argv[1])
    die_with_parent(int(argv[2]))
    for name in argv[3:]:
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
