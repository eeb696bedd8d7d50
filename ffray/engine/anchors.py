"""Anchor-grid detector outputs (SCRFD's layout) -> candidate rows, on the host or the device.

Per stride ``s`` the detector gives, for every anchor of an ``(h/s) x (w/s)`` grid with ``per_cell``
anchors a cell, a score, a box as four distances (left, top, right, bottom) and five keypoints as
offsets, all in stride units. A candidate is an anchor whose score reaches the threshold; its row
is ``[score, x1, y1, x2, y2, kx0, ky0, ..., kx4, ky4]`` in detector-input pixels, in stride order
then anchor order (the order the greedy NMS sees, so both backends give the same faces).

The device version thresholds and gathers the whole batch with CuPy and copies back only the
candidates (a few KB) instead of every anchor's outputs (~0.8 MB a frame for a 640 input): the
detector stage then spends its time on the GPU, not in host copies and NumPy under the GIL. The
arithmetic is the host's, operation for operation, in float32 (products by a power of two and one
sum or difference each), so the rows are bit-identical.
"""

from __future__ import annotations

import numpy as np

ROW = 15  # score, box (4), keypoints (10)


def centers(h: int, w: int, stride: int, per_cell: int) -> np.ndarray:
    """Anchor centres (x, y) of a stride's h x w grid, ``per_cell`` per cell, row-major."""
    ys, xs = np.mgrid[:h, :w]
    c = np.stack([xs, ys], -1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(c, per_cell, axis=0)


def empty() -> np.ndarray:
    return np.zeros((0, ROW), np.float32)


def hits_np(scores: list, boxes: list, kps: list, grid: list[np.ndarray], strides: list[int],
            threshold: float) -> np.ndarray:
    """One image's candidate rows (K, ROW); ``grid``: each stride's anchor centres."""
    rows = []
    for sc, bb, kk, c, s in zip(scores, boxes, kps, grid, strides):
        sc = np.asarray(sc).reshape(-1)
        keep = np.flatnonzero(sc >= threshold)
        if len(keep) == 0:
            continue
        cc = c[keep]
        d = np.asarray(bb).reshape(-1, 4)[keep] * s
        k = np.asarray(kk).reshape(-1, 10)[keep] * s
        box = np.stack([cc[:, 0] - d[:, 0], cc[:, 1] - d[:, 1], cc[:, 0] + d[:, 2],
                        cc[:, 1] + d[:, 3]], 1)
        kp = (k.reshape(-1, 5, 2) + cc[:, None, :]).reshape(-1, 10)
        rows.append(np.concatenate([sc[keep][:, None], box, kp], 1).astype(np.float32))
    return np.concatenate(rows) if rows else empty()


class DeviceGrid:
    """The anchor centres and per-anchor strides of one input size, on the device, made once."""

    def __init__(self, cp, input_hw: tuple[int, int], strides: list[int], per_cell: int):
        ih, iw = input_hw
        c = np.concatenate([centers(ih // s, iw // s, s, per_cell) for s in strides])
        sv = np.concatenate([np.full((ih // s) * (iw // s) * per_cell, s, np.float32)
                             for s in strides])
        self.centers, self.strides = cp.asarray(c), cp.asarray(sv[:, None])
        self.count = len(sv)


def hits_cp(cp, scores: list, boxes: list, kps: list, grid: DeviceGrid, n: int,
            threshold: float, stream) -> list[np.ndarray]:
    """``n`` images' candidate rows from device outputs shaped (n, anchors_s, ...) per stride;
    runs on ``stream`` and synchronises it (the rows are on the host when it returns)."""
    sc = cp.concatenate([x.reshape(n, -1) for x in scores], 1)
    if sc.shape[1] != grid.count:
        raise ValueError(f"detector outputs have {sc.shape[1]} anchors, the grid {grid.count}")
    fi, ai = cp.nonzero(sc >= threshold)  # row-major: frame, then stride and anchor order
    if fi.size == 0:
        return [empty() for _ in range(n)]
    bb = cp.concatenate([x.reshape(n, -1, 4) for x in boxes], 1)
    kk = cp.concatenate([x.reshape(n, -1, 10) for x in kps], 1)
    cc, sv = grid.centers[ai], grid.strides[ai]
    d = bb[fi, ai] * sv
    k = kk[fi, ai] * sv
    box = cp.stack([cc[:, 0] - d[:, 0], cc[:, 1] - d[:, 1], cc[:, 0] + d[:, 2],
                    cc[:, 1] + d[:, 3]], 1)
    kp = (k.reshape(-1, 5, 2) + cc[:, None, :]).reshape(-1, 10)
    rows = cp.concatenate([fi.astype(cp.float32)[:, None], sc[fi, ai][:, None], box, kp], 1)
    host = cp.asnumpy(rows.astype(cp.float32), stream=stream)  # one copy: frame index + row
    stream.synchronize()
    cuts = np.searchsorted(host[:, 0], np.arange(1, n))
    return [np.ascontiguousarray(r[:, 1:]) for r in np.split(host, cuts)]
