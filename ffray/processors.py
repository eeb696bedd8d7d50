"""The frame-processor interface that workers run, and the built-in processors.

A processor is built once per worker actor from a picklable :class:`ProcessorSpec` and then
called with batches: a list of BGR uint8 frames in, a list of frames of the same size out. It
reports per-stage seconds and counters through :meth:`FrameProcessor.stats`, which the worker
returns with every chunk.

Built-ins: ``identity`` (frames unchanged), ``stamp`` (writes each frame's source frame number as
a machine-readable bit pattern, so tests can prove each output frame came from the right input
frame), ``standin`` (a visible placeholder for the face pipeline: the source face pasted into a
corner with a caption). Third-party processors load with ``module:attribute`` names.
"""

from __future__ import annotations

import importlib
import inspect
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from ffray.engine.api import BatchInfo, FrameProcessor, Timed, WorkerContext
from ffray.errors import FFrayError

__all__ = ["BatchInfo", "FrameProcessor", "ProcessorSpec", "Timed", "WorkerContext", "build",
           "resolve", "check_params", "read_stamp", "stamp_frame"]


@dataclass(frozen=True)
class ProcessorSpec:
    kind: str = "identity"
    params: dict = field(default_factory=dict)
    batch_size: int = 8


_Timed = Timed  # the name third-party processors (and tests) used before


class Identity(_Timed):
    name = "identity"

    def __init__(self, ctx: WorkerContext):
        super().__init__()

    def process(self, frames, info):
        self.add("frames", len(frames))
        return frames


STAMP_BITS = 20
STAMP_CELL = 8


def stamp_frame(frame: np.ndarray, number: int, cell: int = STAMP_CELL) -> np.ndarray:
    """Write ``number`` as STAMP_BITS black/white cells along the top-left edge (MSB first)."""
    out = frame.copy()
    for b in range(STAMP_BITS):
        bit = (number >> (STAMP_BITS - 1 - b)) & 1
        out[0:cell, b * cell:(b + 1) * cell] = 255 if bit else 0
    return out


def read_stamp(frame: np.ndarray, cell: int = STAMP_CELL) -> int:
    """Read back a number written by :func:`stamp_frame` (robust to lossy encoding)."""
    gray = frame.mean(axis=2) if frame.ndim == 3 else frame
    value = 0
    for b in range(STAMP_BITS):
        m = gray[cell // 4: cell - cell // 4, b * cell + cell // 4:(b + 1) * cell - cell // 4].mean()
        value = (value << 1) | int(m > 127)
    return value


class Stamp(_Timed):
    name = "stamp"

    def __init__(self, ctx: WorkerContext):
        super().__init__()

    def process(self, frames, info):
        t = time.perf_counter()
        out = [stamp_frame(f, n) for f, n in zip(frames, info.frame_numbers)]
        self.add("stamp_s", time.perf_counter() - t)
        self.add("frames", len(frames))
        return out


class StandIn(_Timed):
    """A visible stand-in for the face pipeline: the first source face in a corner, captioned."""

    name = "standin"
    needs_sources = True

    def __init__(self, ctx: WorkerContext):
        super().__init__()
        self._thumb = None
        if ctx.sources:
            img = cv2.imdecode(np.frombuffer(ctx.sources[0], np.uint8), cv2.IMREAD_COLOR)
            if img is not None:
                self._thumb = img

    def process(self, frames, info):
        t = time.perf_counter()
        out = []
        for f, n in zip(frames, info.frame_numbers):
            g = f.copy()
            h, w = g.shape[:2]
            side = max(16, min(h, w) // 4)
            if self._thumb is not None:
                g[8:8 + side, 8:8 + side] = cv2.resize(self._thumb, (side, side),
                                                       interpolation=cv2.INTER_AREA)
            cv2.putText(g, f"ffray stand-in  frame {n}", (8, min(h - 8, side + 32)),
                        cv2.FONT_HERSHEY_SIMPLEX, max(0.4, h / 900), (0, 255, 255), 2, cv2.LINE_AA)
            out.append(g)
        self.add("standin_s", time.perf_counter() - t)
        self.add("frames", len(frames))
        return out


BUILTIN = {"identity": Identity, "stamp": Stamp, "standin": StandIn}


def resolve(kind: str):
    """The processor class for a built-in name or a ``module:attribute`` path."""
    if kind == "faceswap":
        from ffray.faces.pipeline import FaceSwap

        return FaceSwap
    if kind in BUILTIN:
        return BUILTIN[kind]
    if ":" in kind:
        mod, _, attr = kind.partition(":")
        try:
            return getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            raise FFrayError(f"cannot load processor {kind!r}: {e}") from None
    raise FFrayError(f"unknown processor {kind!r}; built-ins: faceswap, {', '.join(BUILTIN)}, "
                     "or give module:attribute")


def check_params(spec: ProcessorSpec) -> None:
    """Before any work: the processor accepts these parameters (a misspelt one is an error)."""
    cls = resolve(spec.kind)
    checker = getattr(cls, "check_params", None)
    if checker is not None:
        checker(spec.params)
        return
    try:
        inspect.signature(cls).bind(WorkerContext(), **spec.params)
    except TypeError as e:
        raise FFrayError(f"processor {spec.kind!r}: {e}") from None


def build(spec: ProcessorSpec, ctx: WorkerContext) -> FrameProcessor:
    proc = resolve(spec.kind)(ctx, **spec.params)
    if not isinstance(proc, FrameProcessor):
        raise FFrayError(f"processor {spec.kind!r} lacks process()/stats()")
    return proc
