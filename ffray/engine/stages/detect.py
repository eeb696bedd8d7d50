"""Face detection on a batch of frames (frames of several chunks may share a batch)."""

from __future__ import annotations

from ffray.engine.pipeline import Item


class DetectStage:
    name = "detect"
    pure = True  # sets item fields only: a failed mixed batch is retried per chunk

    def __init__(self, detector, ops, threshold: float | None = None, batch: int = 4,
                 threads: int = 1):
        self.detector, self.ops, self.threshold = detector, ops, threshold
        self.batch, self.threads = batch, threads

    def warm(self) -> None:
        """Before frames flow, in each of the stage's threads (CUDA graphs are per thread)."""
        w = getattr(self.detector, "warm", None)
        if w is not None:
            w()

    def process(self, items: list[Item]) -> None:
        found = self.detector.detect_frames(self.ops, [it.frame for it in items], self.threshold)
        for it, faces in zip(items, found):
            it.faces = faces
