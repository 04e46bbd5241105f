"""Keep the calling thread's alternate signal stack across calls into a native library.

OpenVINO's CPU plugin (``libopenvino_intel_cpu_plugin.so``, checked with 2025.x) installs an
alternate signal stack (``sigaltstack``) of its own on the thread that runs an inference, and puts
back *its* idea of the previous one when the compiled model is destroyed. With two models alive and
destroyed out of order, the thread is left pointing at a stack that has since been unmapped. Python
installs its signal handlers with ``SA_ONSTACK``, so the next signal the thread takes (the recipe
watchdog's ``SIGALRM``, a Ctrl-C) cannot be delivered and the kernel kills the process with
``SIGSEGV`` — no traceback, no FAILED run.

:func:`kept_signal_stack` records the thread's alternate stack before the native call and puts it
back afterwards, so no stack of the library outlives the call that set it. Linux only (the
``stack_t`` layout below is glibc's and musl's); elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class _StackT(ctypes.Structure):
    """``stack_t`` of Linux (glibc, musl): pointer, flags, size."""

    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.sigaltstack.argtypes = [ctypes.POINTER(_StackT), ctypes.POINTER(_StackT)]
        libc.sigaltstack.restype = ctypes.c_int
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def current_signal_stack() -> tuple[int, int, int] | None:
    """The calling thread's alternate signal stack as ``(address, flags, size in bytes)``, or
    ``None`` where it cannot be read (not Linux)."""
    if _LIBC is None:
        return None
    stack = _StackT()
    if _LIBC.sigaltstack(None, ctypes.byref(stack)) != 0:
        return None
    return int(stack.ss_sp or 0), int(stack.ss_flags), int(stack.ss_size)


@contextmanager
def kept_signal_stack() -> Iterator[None]:
    """Run the body, then give the calling thread back the alternate signal stack it had before."""
    if _LIBC is None:
        yield
        return
    before = _StackT()
    readable = _LIBC.sigaltstack(None, ctypes.byref(before)) == 0
    try:
        yield
    finally:
        if readable:
            # SS_ONSTACK is a read-only report, not a flag sigaltstack accepts back
            before.ss_flags &= ~1
            _LIBC.sigaltstack(ctypes.byref(before), None)
