"""Face enhancement after the swap: GFPGAN on crops of the swapped frame, pasted back with the
enhancer's mask scaled by ``--enhance-blend``."""

from __future__ import annotations

import numpy as np

from ffray.engine.pipeline import Item
from ffray.engine.stages.swap import occluder_masks


class EnhanceStage:
    name = "enhance"

    def __init__(self, enhancer, ops, mask: np.ndarray, strength: float, batch: int = 4,
                 threads: int = 1, occluder=None):
        self.enhancer, self.ops, self.strength = enhancer, ops, float(strength)
        self.occluder = occluder
        self.mask = ops.to_device(np.ascontiguousarray(mask, np.float32))
        self.batch, self.threads = batch, threads

    def warm(self) -> None:
        self.enhancer.warm()

    def process(self, items: list[Item]) -> None:
        frames = [it.frame for it in items for _ in it.targets]
        if not frames:
            return
        mats = self.enhancer.matrices([t.face for it in items for t in it.targets])
        masks = occluder_masks(self.occluder, self.ops, frames, mats, self.enhancer.size)
        out = self.enhancer.enhance_frames(self.ops, frames, mats)
        mask = self.mask if masks is None else self.ops.per_face_masks(self.mask, [masks], [len(frames)])
        self.ops.paste(frames, out, mats, mask, self.enhancer.out_scale,
                       self.enhancer.out_offset, strength=self.strength)
