"""Which detected faces to swap, and with which identity: every face, the one face by an order,
faces matching a reference person, or per-person mapping (embedding distance)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ffray.engine.pipeline import Item
from ffray.faces.align import Face
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

    @property
    def needs_embeddings(self) -> bool:
        return self.targets is not None or self.reference is not None

    def process(self, items: list[Item]) -> None:
        if not self.needs_embeddings:
            for it in items:
                chosen = select_faces(it.faces, "one" if self.mode == "one" else "many", self.order)
                it.targets = [Target(f, 0) for f in chosen]
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
