"""Thread budgets for one worker, from the CPUs it may use (pure).

The encoders dominate the CPU: libx264 ``veryfast`` at 1080p costs tens of core-milliseconds per
frame, decoding a few. So a worker runs ``slots`` chunks at once, each with its own decoder and
encoder, enough to keep its CPUs busy with encoders; the shared stages get a few threads each.

The x264 thread count per encoder is *not* derived from the machine: x264's output depends on it,
and ffray's output must be byte-identical on any node and at any load. It is an option
(``--encoder-threads``, default ``ENCODER_THREADS``); the number of encoders running at once is
what adapts to the machine.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ffray.video.encode import DEFAULT_THREADS as ENCODER_THREADS

MIN_SLOTS = 2  # one chunk's encoder flush overlaps the next chunk's start even on 1-2 CPUs
WINDOW = 24  # frames per chunk between its decoder and its encoder (a 30-frame window: no gain)


@dataclass(frozen=True)
class Budget:
    cpus: float  # CPUs this worker may use
    slots: int  # chunks in flight in this worker
    encoder_threads: int  # per chunk encoder (fixed: determinism)
    decoder_threads: int  # per chunk decoder
    ort_threads: int  # intra-op threads per ONNX Runtime session (no spinning)
    window: int  # frames per chunk between its decoder and its encoder
    host_threads: int  # threads of CPU-heavy shared stages (CPU paste-back, BGR adapters)

    def to_json(self) -> dict:
        return dict(self.__dict__)


def node_cpus() -> int:
    """CPUs this process may run on (the affinity mask, else the CPU count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def plan_budget(cpus: float, gpu: bool, encoder_threads: int = ENCODER_THREADS,
                slots: int | None = None, window: int = WINDOW) -> Budget:
    """The worker's threads for ``cpus`` CPUs. ``gpu``: models and frame work run on a GPU (the
    CPU then only decodes and encodes); ``slots`` overrides the derived chunk count."""
    cpus = max(1.0, float(cpus))
    t = max(1, int(encoder_threads))
    # encoders fill the CPUs (a little over, since decode and the stages wait on I/O and the GPU)
    n = slots if slots else max(MIN_SLOTS, math.ceil(cpus * (1.0 if gpu else 0.75) / t))
    ort = 1 if gpu else max(1, int(cpus // 2))
    host = max(1, min(4, int(cpus // 4))) if not gpu else 2
    return Budget(cpus=cpus, slots=int(n), encoder_threads=t, decoder_threads=1, ort_threads=ort,
                  window=window, host_threads=host)
