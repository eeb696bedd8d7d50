"""GPU-seconds of chunks that share a worker's GPU at the same time.

A worker runs several chunks at once on its GPU share ``gpus``; while n chunks run, each is
charged ``gpus / n`` of the device. The integral over a chunk's lifetime is its GPU-seconds, so
the chunks of a worker add up to the worker's wall time on the device, not n times it. A chunk's
span then records its mean share (GPU-seconds / duration), which the analytics multiply back.
"""

from __future__ import annotations

import threading
import time


class ShareClock:
    def __init__(self, gpus: float, clock=time.monotonic):
        self.gpus = float(gpus)
        self._clock = clock
        self._lock = threading.Lock()
        self._active: dict[int, float] = {}  # chunk key -> GPU-seconds so far
        self._last = clock()
        self._key = 0

    def _advance(self, now: float) -> None:
        n = len(self._active)
        if n:
            dt = (now - self._last) * self.gpus / n
            for k in self._active:
                self._active[k] += dt
        self._last = now

    def start(self) -> int:
        with self._lock:
            self._advance(self._clock())
            self._key += 1
            self._active[self._key] = 0.0
            return self._key

    def stop(self, key: int) -> float:
        """The chunk's GPU-seconds."""
        with self._lock:
            self._advance(self._clock())
            return self._active.pop(key, 0.0)
