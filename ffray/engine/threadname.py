"""Native (OS) names for the worker's threads, so ``top -H``, ``ps -L`` and profilers show which
stage uses the CPU: before Python 3.14 a ``threading.Thread`` name stays inside Python, and every
thread of a Ray worker shows as ``ray::ChunkWorker``."""

from __future__ import annotations

import ctypes
import functools
import sys
import threading

_PR_SET_NAME = 15  # prctl(2): the calling thread's name, at most 15 bytes


@functools.cache
def _libc():
    return ctypes.CDLL(None, use_errno=True)


def name_this_thread(name: str | None = None) -> None:
    """Give the calling thread's OS thread ``name`` (default: its Python name), cut to 15 bytes.
    Linux only; never raises (a name is a diagnostic, not a requirement)."""
    if not sys.platform.startswith("linux"):
        return
    text = (name or threading.current_thread().name).encode("ascii", "replace")[:15]
    try:
        _libc().prctl(_PR_SET_NAME, ctypes.c_char_p(text), 0, 0, 0)
    except (OSError, AttributeError):
        pass
