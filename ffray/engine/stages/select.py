"""Which detected faces to swap, and with which identity: every face, the one face by an order,
faces matching a reference person, or per-person mapping (embedding distance).

With tracking (the default) the stage sees each chunk's frames in order and keeps the chunk's face
tracks (``ffray.faces.track``): landmarks are smoothed over time, ``--select one`` stays on the
face it chose until that face's track ends, and reference/map decisions use the mean embedding of
the track so far, so a face near the distance threshold does not flicker in and out."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import cv2
import numpy as np

from ffray.engine.pipeline import Item
from ffray.faces.align import Face, map_face
from ffray.faces.select import select_faces
from ffray.faces.track import Smoothing, Tracker


@dataclass
class Target:
    face: Face
    identity: int  # index into the pipeline's identities


class SelectStage:
    name = "select"
    pure = True  # sets item fields only: a failed mixed batch is retried per chunk

    def __init__(self, mode: str, order: str, ops, recognizer=None, targets: np.ndarray | None = None,
                 reference: np.ndarray | None = None, distance: float = 0.6, batch: int = 8,
                 threads: int = 1, tracking: Smoothing | None = None, fps: float = 30.0):
        self.mode, self.order, self.ops = mode, order, ops
        self.recognizer, self.targets, self.reference = recognizer, targets, reference
        self.distance, self.batch, self.threads = distance, batch, threads
        self.tracking, self.fps = tracking, float(fps) if fps and fps > 0 else 30.0
        self.ordered = tracking is not None  # per-chunk tracks need the frames in order
        self.pure = tracking is None  # a re-run would feed the tracks twice
        self._chunks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # run -> _Chunk

    def _select(self, faces: list[Face]) -> list[Face]:
        """Faces to swap, ordered as seen upright (left-right means the viewer's left and right
        in a rotated phone video, not the stored frame's)."""
        mode = "one" if self.mode == "one" else "many"
        if not getattr(self.ops, "rotation", 0) or not faces:
            return select_faces(faces, mode, self.order)
        inv = cv2.invertAffineTransform(self.ops.to_stored.astype(np.float32))
        seen = [map_face(f, inv) for f in faces]
        index = {id(s): f for s, f in zip(seen, faces)}
        return [index[id(s)] for s in select_faces(seen, mode, self.order)]

    @property
    def needs_embeddings(self) -> bool:
        return self.targets is not None or self.reference is not None

    def warm(self) -> None:
        if self.needs_embeddings:
            self.recognizer.warm()

    def process(self, items: list[Item]) -> None:
        embs: list = [None] * len(items)
        if self.needs_embeddings:
            frames = [it.frame for it in items for _ in it.faces]
            flat = self.recognizer.embed_frames(self.ops, frames, [f for it in items for f in it.faces])
            k = 0
            for i, it in enumerate(items):
                embs[i] = flat[k:k + len(it.faces)]
                k += len(it.faces)
        for it, e in zip(items, embs):
            chunk = None
            if self.tracking is not None:
                chunk = self._chunks.get(it.run)
                if chunk is None:
                    chunk = self._chunks[it.run] = _Chunk(Tracker(self.tracking))
                pairs = chunk.tracker.update(it.faces, it.number / self.fps)
                it.tracks = [tid for tid, _ in pairs]
                it.faces = [f for _, f in pairs]
                if e is not None:
                    e = [chunk.identity(tid, v) for tid, v in zip(it.tracks, e)]
            targets = self._choose(it, e, chunk)
            it.targets = [] if it.context else targets  # context frames only feed the tracks

    def _choose(self, it: Item, embs, chunk) -> list[Target]:
        if embs is None:
            chosen = self._select(it.faces)
            if self.mode == "one" and chunk is not None and it.faces:
                track_of = {id(f): t for f, t in zip(it.faces, it.tracks)}
                if chunk.chosen in it.tracks:  # stay on the face chosen before
                    chosen = [it.faces[it.tracks.index(chunk.chosen)]]
                elif chosen:
                    chunk.chosen = track_of[id(chosen[0])]
            return [Target(f, 0) for f in chosen]
        out = []
        for f, e in zip(it.faces, embs):
            if self.targets is not None:
                d = 1.0 - self.targets @ e
                j = int(np.argmin(d))
                if d[j] < self.distance:
                    out.append(Target(f, j))
            elif 1.0 - float(self.reference @ e) < self.distance:
                out.append(Target(f, 0))
        return out


class _Chunk:
    """A chunk's tracks, the track ``--select one`` follows, and each track's embedding sum."""

    def __init__(self, tracker: Tracker):
        self.tracker = tracker
        self.chosen: int | None = None
        self._sums: dict[int, np.ndarray] = {}

    def identity(self, track: int, emb: np.ndarray) -> np.ndarray:
        """The track's identity so far: its embeddings' normalised mean (this frame's included)."""
        s = self._sums.get(track)
        s = np.asarray(emb, np.float64) if s is None else s + emb
        self._sums[track] = s
        return (s / max(float(np.linalg.norm(s)), 1e-12)).astype(np.float32)
