"""CUDA streams for CuPy work: one non-blocking stream per thread and device.

Every CuPy operation of the worker runs on its thread's stream and is synchronised before its
result is handed on (to another stage's thread, or to ONNX Runtime, whose CUDA stream is its
own); operations a thread chains on its own stream need no synchronisation between them. Work on
CuPy's default (legacy null) stream would not be ordered against these non-blocking streams: a
kernel could read a buffer another stream had not finished writing.

The streams have the device's highest priority: the frame kernels are small and on the path that
feeds the models, so the GPU schedules their blocks ahead of the models' long convolutions
(ONNX Runtime's stream has the default priority) instead of queueing them behind.
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
            try:
                _, greatest = cp.cuda.runtime.deviceGetStreamPriorityRange()
                s = cp.cuda.Stream(non_blocking=True, priority=greatest)
            except (AttributeError, TypeError):  # an older CuPy without stream priorities
                s = cp.cuda.Stream(non_blocking=True)
            streams[device_id] = s
    return s


def use_stream(device_id: int, stream) -> None:
    """Make ``stream`` this thread's stream on ``device_id``: a model stage thread whose ONNX
    Runtime session computes on that stream (``ffray.models.device``), so that its CuPy kernels
    and the model's are ordered on one stream with no synchronisation between them. Called before
    the thread's first frame; work left on a stream it had before is finished first."""
    streams = getattr(_local, "streams", None)
    if streams is None:
        streams = _local.streams = {}
    old = streams.get(device_id)
    if old is not None and old is not stream:
        old.synchronize()
    streams[device_id] = stream
