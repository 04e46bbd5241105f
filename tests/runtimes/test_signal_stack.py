"""The thread's alternate signal stack survives OpenVINO (whose CPU plugin swaps it), so a later
signal — the recipe watchdog's SIGALRM, a Ctrl-C — is delivered instead of killing the process."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap

import pytest

from netzip_mlflow.runtimes import signal_stack
from netzip_mlflow.runtimes.signal_stack import current_signal_stack, kept_signal_stack

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sigaltstack via glibc")


@linux_only
def test_a_stack_installed_inside_is_taken_back_outside():
    before = current_signal_stack()
    buffer = ctypes.create_string_buffer(64 * 1024)
    with kept_signal_stack():
        mine = signal_stack._StackT(ctypes.cast(buffer, ctypes.c_void_p), 0, len(buffer))
        assert signal_stack._LIBC.sigaltstack(ctypes.byref(mine), None) == 0
        assert current_signal_stack() == (ctypes.addressof(buffer), 0, len(buffer))
    assert current_signal_stack() == before


@linux_only
def test_it_is_restored_when_the_body_raises():
    before = current_signal_stack()
    buffer = ctypes.create_string_buffer(64 * 1024)
    with pytest.raises(RuntimeError), kept_signal_stack():
        mine = signal_stack._StackT(ctypes.cast(buffer, ctypes.c_void_p), 0, len(buffer))
        signal_stack._LIBC.sigaltstack(ctypes.byref(mine), None)
        raise RuntimeError("native call failed")
    assert current_signal_stack() == before


CHILD = textwrap.dedent(
    """
    import copy, faulthandler, gc, time
    import torch
    faulthandler.enable()  # as pytest does: Python's own alternate stack
    from netzip_mlflow.compression.registry import compress
    from netzip_mlflow.models.zoo import build_model
    from netzip_mlflow.runtimes.signal_stack import current_signal_stack
    from netzip_mlflow.study.watchdog import RecipeTimeout, Watchdog

    before = current_signal_stack()
    model = build_model("tiny_cnn", 10, (1, 8, 8), seed=0).eval()
    first = compress(model, "openvino", {}, example_inputs=torch.randn(2, 1, 8, 8), progress=False).model
    x = torch.randn(4, 1, 8, 8)
    first(x)
    second = copy.deepcopy(first)
    second(x)
    third = copy.deepcopy(second)
    third(x)
    del second  # released out of the order they were made
    gc.collect()
    third(x)
    del first, third
    gc.collect()
    assert current_signal_stack() == before, (before, current_signal_stack())
    try:
        with Watchdog(0.2):
            time.sleep(30)
    except RecipeTimeout:
        print("delivered")
    """
)


@linux_only
def test_openvino_models_leave_the_stack_and_a_later_signal_is_delivered():
    pytest.importorskip("openvino")
    pytest.importorskip("onnx")
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
    assert done.stdout.strip().endswith("delivered")
