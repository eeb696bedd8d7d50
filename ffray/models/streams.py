"""CUDA streams for CuPy work: one non-blocking stream per thread and device.

Every CuPy operation of the worker runs on its thread's stream and ends synchronised before its
result is handed on (to another stage's thread, or to ONNX Runtime, whose CUDA stream is its
own). Work on CuPy's default (legacy null) stream would not be ordered against these
non-blocking streams: a kernel could read a buffer another stream had not finished writing.
"""

from __future__ import annotations

import threading

_local = threading.local()


def thread_stream(cp, device_id: int):
    streams = getattr(_local, "streams", None)
    if streams is None:
        streams = _local.streams = {}
    s = streams.get(device_id)
    if s is None:
        with cp.cuda.Device(device_id):
            s = streams[device_id] = cp.cuda.Stream(non_blocking=True)
    return s
