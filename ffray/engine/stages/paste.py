"""Paste-back: each swapped crop blended into its frame by its alignment matrix and the mask."""

from __future__ import annotations

import numpy as np

from ffray.engine.pipeline import Item


class PasteStage:
    name = "paste"

    def __init__(self, ops, matrix_of, mask: np.ndarray, scale: float, offset: float,
                 batch: int = 8, threads: int = 1, poisson: bool = False):
        """``matrix_of(face)``: the swapper's frame->crop matrix; crops hold RGB as
        ``value * scale + offset``; ``poisson``: seamless cloning first (host frames only)."""
        self.ops, self.matrix_of, self.scale, self.offset = ops, matrix_of, scale, offset
        self.extra = {"poisson": True} if poisson else {}
        self.mask = ops.to_device(np.ascontiguousarray(mask, np.float32))
        self.batch, self.threads = batch, threads

    def process(self, items: list[Item]) -> None:
        frames, crops, mats, masks = [], [], [], []
        for it in items:
            if it.crops is None or not it.targets:
                continue
            frames += [it.frame] * len(it.targets)
            mats += it.mats if it.mats is not None else [self.matrix_of(t.face) for t in it.targets]
            crops.append(it.crops)
            masks.append(it.masks)
        if frames:
            mask = self.mask
            if any(m is not None for m in masks):  # an occluder's masks join the static one per face
                mask = self.ops.per_face_masks(self.mask, masks, [len(c) for c in crops])
            self.ops.paste(frames, self.ops.concat(crops), mats, mask, self.scale, self.offset,
                           **self.extra)
        for it in items:
            it.crops = it.masks = it.mats = None  # pasted: free them now (device memory on the GPU)
