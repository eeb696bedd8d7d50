"""The face swap itself: every target face of the batch in one model batch (inswapper), or the
offline classic swapper face by face. Leaves each item's swapped crops in ``item.crops``."""

from __future__ import annotations

import numpy as np

from ffray.engine.pipeline import Item


class SwapStage:
    name = "swap"
    pure = True  # sets item fields only: a failed mixed batch is retried per chunk

    def __init__(self, swapper, latents: list[np.ndarray], ops, batch: int = 8, threads: int = 1,
                 occluder=None):
        self.swapper, self.ops, self.occluder = swapper, ops, occluder
        self.latents = np.concatenate([np.asarray(x, np.float32).reshape(1, -1) for x in latents])
        self.batch, self.threads = batch, threads

    def warm(self) -> None:
        self.swapper.warm()

    def process(self, items: list[Item]) -> None:
        frames = [it.frame for it in items for _ in it.targets]
        if not frames:
            return
        mats = self.swapper.matrices([t.face for it in items for t in it.targets])
        lat = self.latents[[t.identity for it in items for t in it.targets]]
        out = self.swapper.swap_frames(self.ops, frames, mats, lat)
        masks = occluder_masks(self.occluder, self.ops, frames, mats, self.swapper.size)
        k = 0
        for it in items:
            n = len(it.targets)
            it.crops = out[k:k + n] if n else None
            it.masks = masks[k:k + n] if n and masks is not None else None
            it.mats = mats[k:k + n] if n else None  # the paste stage reuses them
            k += n


def occluder_masks(occluder, ops, frames: list, mats: list, size: int):
    """Per-face masks of the target faces (before the swap) from an occluder, on the backend."""
    if occluder is None or not frames:
        return None
    from ffray.faces.masks import occluded

    return ops.to_device(occluded(occluder, ops.crops_bgr(frames, mats, size), size))


class ClassicSwapStage:
    """The offline swapper: the source face warped onto each target, colour-matched (no model).
    Dense swappers (``dense = True``) also get each target crop's 68 landmarks and leave a paste
    mask per face (the face region they drew) in ``item.masks``. The per-face work runs on the
    host: on a GPU backend the crops come down (``crops_bgr``) and the results go up."""

    name = "swap"
    pure = True  # sets item fields only: a failed mixed batch is retried per chunk

    def __init__(self, swappers: list, ops, batch: int = 4, threads: int = 1, landmarks=None):
        self.swappers, self.ops, self.landmarks = swappers, ops, landmarks
        self.batch, self.threads = batch, threads

    def process(self, items: list[Item]) -> None:
        for it in items:
            if not it.targets:
                it.crops = None
                continue
            mats = [self.swappers[t.identity].matrix(t.face) for t in it.targets]
            tgt = self.ops.crops_bgr([it.frame] * len(mats), mats, self.swappers[0].size)
            if self.landmarks is not None:
                pts = self.landmarks.predict(tgt)
                done = [self.swappers[t.identity].render(c, p) for t, c, p in zip(it.targets, tgt, pts)]
                faces = [f for f, _ in done]
                it.masks = self.ops.to_device(np.ascontiguousarray(np.stack([m for _, m in done])))
            else:
                faces = [self.swappers[t.identity].render(c) for t, c in zip(it.targets, tgt)]
            x = np.stack(faces)[..., ::-1].astype(np.float32).transpose(0, 3, 1, 2) / 255.0
            it.crops = self.ops.to_device(np.ascontiguousarray(x))
            it.mats = mats
