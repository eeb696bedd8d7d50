"""BGR frame processors (``process(frames, info) -> frames``: stamp, standin, third-party ones)
as a stage: each chunk's frames of the batch go to the processor together, as BGR uint8; an error
fails that chunk only, not the other chunks whose frames shared the batch."""

from __future__ import annotations

from ffray.engine.api import BatchInfo
from ffray.engine.pipeline import Item, StageError


class ProcessorStage:
    name = "process"
    threads = 1  # processors are not assumed thread-safe

    def __init__(self, processor, to_bgr, batch: int = 8):
        self.processor, self.to_bgr, self.batch = processor, to_bgr, batch

    def process(self, items: list[Item]) -> None:
        by_chunk: dict[int, list[Item]] = {}
        for it in items:
            by_chunk.setdefault(id(it.run), []).append(it)
        for group in by_chunk.values():
            try:
                self._chunk(group)
            except Exception as e:  # noqa: BLE001 - this chunk fails; the others in the batch go on
                group[0].run.fail(StageError.of(self.name, e))

    def _chunk(self, group: list[Item]) -> None:
        group.sort(key=lambda it: it.seq)
        frames = [self.to_bgr(it.frame) for it in group]
        info = BatchInfo(group[0].run.index, tuple(it.number for it in group),
                         tuple(it.pts for it in group))
        out = self.processor.process(frames, info)
        group[0].run.add_counts(self.processor.stats())
        if len(out) != len(group):
            raise RuntimeError(f"processor returned {len(out)} frames for {len(group)}")
        for it, img in zip(group, out):
            it.frame.bgr = img
            it.frame.dirty = True
