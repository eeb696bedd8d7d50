"""Anchor-grid detector outputs (SCRFD's layout) -> candidate rows, on the host or the device.

Per stride ``s`` the detector gives, for every anchor of an ``(h/s) x (w/s)`` grid with ``per_cell``
anchors a cell, a score, a box as four distances (left, top, right, bottom) and five keypoints as
offsets, all in stride units. A candidate is an anchor whose score reaches the threshold; its row
is ``[score, x1, y1, x2, y2, kx0, ky0, ..., kx4, ky4]`` in detector-input pixels, in stride order
then anchor order (the order the greedy NMS sees, so both backends give the same faces).

The device version is one kernel for the whole batch (a thread per anchor; a candidate claims a
row by an atomic counter), then two small copies (the count, the candidates: a few KB instead of
every anchor's outputs, ~0.8 MB a frame at a 640 input); the host sorts the rows back into order.
The arithmetic is the host's, operation for operation, in float32 (products by a power of two and
one sum or difference each, never fused), so the rows are bit-identical. (A first version chained
~20 CuPy operations: on the H200, inside a loaded worker, their launch and Python overhead cost
more than the copy they saved.)
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


# One thread per anchor of every image: a candidate takes a row by an atomic counter (rows come
# out in any order: the host sorts them by image and anchor). ``__fmul_rn``/``__fadd_rn`` keep the
# compiler from fusing a product and a sum (an FMA rounds once, NumPy twice): rows equal the host's.
KERNEL = r"""
extern "C" __global__ void anchor_hits(
    const float* s0, const float* b0, const float* k0, int a0, int w0, float st0,
    const float* s1, const float* b1, const float* k1, int a1, int w1, float st1,
    const float* s2, const float* b2, const float* k2, int a2, int w2, float st2,
    int n, int per_cell, float thr, unsigned int* count, float* rows) {
    int at = a0 + a1 + a2;
    long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (long long)n * at) return;
    int f = (int)(t / at), a = (int)(t % at);
    const float *s, *b, *k;
    int j, w, as;
    float st;
    if (a < a0) { s = s0; b = b0; k = k0; j = a; w = w0; as = a0; st = st0; }
    else if (a < a0 + a1) { s = s1; b = b1; k = k1; j = a - a0; w = w1; as = a1; st = st1; }
    else { s = s2; b = b2; k = k2; j = a - a0 - a1; w = w2; as = a2; st = st2; }
    size_t i = (size_t)f * as + j;
    float sc = s[i];
    if (!(sc >= thr)) return;
    unsigned int pos = atomicAdd(count, 1u);
    int cell = j / per_cell;
    float cx = (float)(cell % w) * st, cy = (float)(cell / w) * st;
    float* r = rows + (size_t)pos * 17;
    const float* bb = b + i * 4;
    const float* kk = k + i * 10;
    r[0] = (float)f; r[1] = (float)a; r[2] = sc;
    r[3] = __fsub_rn(cx, __fmul_rn(bb[0], st));
    r[4] = __fsub_rn(cy, __fmul_rn(bb[1], st));
    r[5] = __fadd_rn(cx, __fmul_rn(bb[2], st));
    r[6] = __fadd_rn(cy, __fmul_rn(bb[3], st));
    for (int q = 0; q < 5; ++q) {
        r[7 + 2 * q] = __fadd_rn(__fmul_rn(kk[2 * q], st), cx);
        r[8 + 2 * q] = __fadd_rn(__fmul_rn(kk[2 * q + 1], st), cy);
    }
}
"""
_BLOCK = 256


def hits_cp(cp, kernel, scores: list, boxes: list, kps: list, input_hw: tuple[int, int],
            strides: list[int], per_cell: int, threshold: float, stream) -> list[np.ndarray]:
    """``n`` images' candidate rows from device outputs shaped (n, anchors_s, ...) per stride
    (at most three strides), by ``kernel`` (``KERNEL`` compiled); runs on ``stream`` and
    synchronises it. Two launches and two small copies whatever the anchor count."""
    if not 1 <= len(strides) <= 3:
        raise ValueError("the anchor kernel takes one to three strides")
    n = len(scores[0])
    ih, iw = input_hw
    args, total = [], 0
    for sc, bb, kk, s in zip(scores, boxes, kps, strides):
        a = (ih // s) * (iw // s) * per_cell
        if sc.size != n * a or bb.size != n * a * 4 or kk.size != n * a * 10:
            raise ValueError(f"stride {s}: outputs do not match a {ih}x{iw} grid of {a} anchors")
        args += [cp.ascontiguousarray(sc, cp.float32), cp.ascontiguousarray(bb, cp.float32),
                 cp.ascontiguousarray(kk, cp.float32), np.int32(a), np.int32(iw // s), np.float32(s)]
        total += a
    while len(args) < 18:  # unused stride slots: no anchors
        args += [args[0], args[1], args[2], np.int32(0), np.int32(1), np.float32(1)]
    count = cp.zeros(1, cp.uint32)
    rows = cp.empty((max(1, n * total), 17), cp.float32)
    blocks = (n * total + _BLOCK - 1) // _BLOCK
    if blocks:
        kernel((blocks,), (_BLOCK,), (*args, np.int32(n), np.int32(per_cell),
                                      np.float32(threshold), count, rows))
    k = int(count.get(stream=stream)[0])
    host = rows[:k].get(stream=stream) if k else np.zeros((0, 17), np.float32)
    stream.synchronize()
    host = host[np.lexsort((host[:, 1], host[:, 0]))]  # image, then stride and anchor order
    cuts = np.searchsorted(host[:, 0], np.arange(1, n))
    return [np.ascontiguousarray(r[:, 2:]) for r in np.split(host, cuts)]
