"""The frame-processor interface (what ``--processor module:attribute`` implements), kept apart
from the built-ins so that processors, the face pipeline and the worker share it without importing
each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class BatchInfo:
    """Where a batch sits in the job: its chunk and each frame's source frame number and pts."""

    chunk: int
    frame_numbers: tuple[int, ...]
    pts: tuple[int, ...]


@dataclass(frozen=True)
class WorkerContext:
    """What a processor may need to know about the worker it runs in."""

    gpu_ids: tuple = ()
    node_id: str = ""
    sources: tuple[bytes, ...] = ()  # encoded source face images (-s), shipped from the driver
    named: dict = field(default_factory=dict)  # other images by role (reference, map pairs)
    models: dict = field(default_factory=dict)  # model bytes by manifest name


@runtime_checkable
class FrameProcessor(Protocol):
    name: str

    def process(self, frames: list[np.ndarray], info: BatchInfo) -> list[np.ndarray]: ...

    def stats(self) -> dict: ...


class Timed:
    """Accumulates per-stage seconds and counters; ``stats()`` returns and resets them."""

    def __init__(self):
        self._stats: dict[str, float] = {}

    def add(self, key: str, value: float) -> None:
        self._stats[key] = self._stats.get(key, 0.0) + value

    def stats(self) -> dict:
        out, self._stats = self._stats, {}
        return out
