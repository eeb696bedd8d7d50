"""Which detected faces to swap, and with which identity: every face, the one face by an order,
faces matching a reference person, or per-person mapping (embedding distance)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ffray.engine.pipeline import Item
from ffray.faces.align import Face, map_face
from ffray.faces.select import select_faces


@dataclass
class Target:
    face: Face
    identity: int  # index into the pipeline's identities


class SelectStage:
    name = "select"
    pure = True  # sets item fields only: a failed mixed batch is retried per chunk

    def __init__(self, mode: str, order: str, ops, recognizer=None, targets: np.ndarray | None = None,
                 reference: np.ndarray | None = None, distance: float = 0.6, batch: int = 8,
                 threads: int = 1):
        self.mode, self.order, self.ops = mode, order, ops
        self.recognizer, self.targets, self.reference = recognizer, targets, reference
        self.distance, self.batch, self.threads = distance, batch, threads

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

    def process(self, items: list[Item]) -> None:
        if not self.needs_embeddings:
            for it in items:
                it.targets = [Target(f, 0) for f in self._select(it.faces)]
            return
        frames = [it.frame for it in items for _ in it.faces]
        faces = [f for it in items for f in it.faces]
        embs = self.recognizer.embed_frames(self.ops, frames, faces)
        k = 0
        for it in items:
            chosen = []
            for f in it.faces:
                e = embs[k]
                k += 1
                if self.targets is not None:
                    d = 1.0 - self.targets @ e
                    j = int(np.argmin(d))
                    if d[j] < self.distance:
                        chosen.append(Target(f, j))
                elif 1.0 - float(self.reference @ e) < self.distance:
                    chosen.append(Target(f, 0))
            it.targets = chosen
