"""Machine-readable output of the CLI (``--format json``) and its exit codes."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

#: Exit codes of ``netzip`` (documented in the README, "Command line").
EXIT_OK = 0
EXIT_RECIPES_FAILED = 1  # the study ran, some recipe's run ended FAILED (the others are logged)
EXIT_USAGE = 2  # bad flags, bad YAML, bad data/model, unreachable store: nothing was run or it stopped
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT): the interrupted run is marked KILLED, a rerun resumes


def _plain(value: Any) -> Any:
    """``value`` as JSON can hold it: NaN/Inf become ``null``, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def write_json(obj: Any) -> None:
    """Write ``obj`` to stdout as one JSON document (strict: no NaN), newline-terminated."""
    sys.stdout.write(json.dumps(_plain(obj), allow_nan=False, indent=2) + "\n")
    sys.stdout.flush()
