"""Face enhancement after the swap: GFPGAN on crops of the swapped frame, pasted back with the
enhancer's mask scaled by ``--enhance-blend``."""

from __future__ import annotations

import numpy as np

from ffray.engine.pipeline import Item


class EnhanceStage:
    name = "enhance"

    def __init__(self, enhancer, ops, mask: np.ndarray, strength: float, batch: int = 4,
                 threads: int = 1):
        self.enhancer, self.ops, self.strength = enhancer, ops, float(strength)
        self.mask = ops.to_device(np.ascontiguousarray(mask, np.float32))
        self.batch, self.threads = batch, threads

    def process(self, items: list[Item]) -> None:
        frames = [it.frame for it in items for _ in it.targets]
        if not frames:
            return
        mats = [self.enhancer.matrix(t.face) for it in items for t in it.targets]
        out = self.enhancer.enhance_frames(self.ops, frames, mats)
        self.ops.paste(frames, out, mats, self.mask, self.enhancer.out_scale,
                       self.enhancer.out_offset, strength=self.strength)
