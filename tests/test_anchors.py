"""The anchor-grid decoding that the GPU backend runs for a whole batch (``engine.anchors.hits_cp``)
must give, frame by frame, exactly the host's rows (``hits_np``): the same candidates in the same
order, bit for bit, so NMS keeps the same faces on either backend. Checked here for the code around
the kernel with NumPy in CuPy's place and a stand-in for the kernel that returns rows in a random
order (as its atomics may), and with CuPy and the real kernel where a GPU is present."""

from __future__ import annotations

import types

import numpy as np
import pytest

from ffray.engine import anchors
from ffray.faces import scrfd

STRIDES = list(scrfd.STRIDES)


def _outputs(n: int, rng, hot: float = 0.002):
    """Per stride (n, anchors, c) outputs: a few anchors above 0.5, one frame with none."""
    scores, boxes, kps = [], [], []
    for s in STRIDES:
        a = (640 // s) ** 2 * scrfd.ANCHORS
        sc = rng.uniform(0, 0.45, (n, a, 1)).astype(np.float32)
        sc[rng.uniform(size=(n, a, 1)) < hot] = 0.9
        if n > 1:
            sc[1] = 0.1  # frame 1: no candidate at all
        scores.append(sc)
        boxes.append(rng.uniform(0, 4, (n, a, 4)).astype(np.float32))
        kps.append(rng.uniform(-3, 3, (n, a, 10)).astype(np.float32))
    return scores, boxes, kps


class _Arr(np.ndarray):
    """A NumPy array with CuPy's ``get``."""

    def get(self, stream=None):
        return np.asarray(self)


def _numpy_as_cupy():
    """NumPy in CuPy's place, for the code around the kernel (argument packing, the counter,
    the copies back, putting rows back in order)."""
    cp = types.SimpleNamespace(
        float32=np.float32, uint32=np.uint32,
        ascontiguousarray=lambda x, dtype=None: np.ascontiguousarray(x, dtype).view(_Arr),
        zeros=lambda shape, dtype: np.zeros(shape, dtype).view(_Arr),
        empty=lambda shape, dtype: np.full(shape, np.nan, dtype).view(_Arr))
    return cp, types.SimpleNamespace(synchronize=lambda: None)


def _kernel_stand_in(seed: int):
    """What the CUDA kernel does, in NumPy: every candidate claims a row in an arbitrary order
    (atomics), row = [image, anchor, score, box, keypoints]."""
    rng = np.random.default_rng(seed)

    def launch(grid, block, args):
        strides, (n, per_cell, thr, count, rows) = [args[i:i + 6] for i in range(0, 18, 6)], args[18:]
        found, base = [], 0
        for sc, bb, kk, a, w, st in strides:
            if a == 0:
                continue
            for f in range(int(n)):
                s = sc.reshape(int(n), -1)[f]
                for j in np.flatnonzero(s >= thr):
                    cell = j // per_cell
                    cx, cy = np.float32(cell % w) * st, np.float32(cell // w) * st
                    b = bb.reshape(int(n), -1, 4)[f, j] * st
                    k = kk.reshape(int(n), -1, 10)[f, j] * st
                    kp = k.reshape(5, 2) + np.float32([cx, cy])
                    found.append(np.concatenate([np.float32([f, base + j, s[j], cx - b[0], cy - b[1],
                                                             cx + b[2], cy + b[3]]), kp.ravel()]))
            base += int(a)
        for pos, i in enumerate(rng.permutation(len(found))):
            rows[pos] = found[i]
        count[0] = len(found)
    return launch


def _host_rows(scores, boxes, kps, thr):
    grid = [anchors.centers(640 // s, 640 // s, s, scrfd.ANCHORS) for s in STRIDES]
    return [anchors.hits_np([x[i] for x in scores], [x[i] for x in boxes], [x[i] for x in kps],
                            grid, STRIDES, thr) for i in range(len(scores[0]))]


def _check_same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == np.float32 and g.shape == w.shape
        assert np.array_equal(g, w)  # bit for bit, in the same order


def test_batched_device_decoding_equals_the_per_frame_host_decoding():
    rng = np.random.default_rng(3)
    scores, boxes, kps = _outputs(5, rng)
    want = _host_rows(scores, boxes, kps, 0.5)
    assert len(want[1]) == 0 and all(len(w) > 10 for i, w in enumerate(want) if i != 1)
    cp, stream = _numpy_as_cupy()

    def run(sc, seed=0):
        return anchors.hits_cp(cp, _kernel_stand_in(seed), sc, boxes, kps, (640, 640), STRIDES,
                               scrfd.ANCHORS, 0.5, stream)
    _check_same(run(scores), want)
    _check_same(run(scores, seed=1), want)  # whatever order the atomics gave
    # no candidate anywhere: one empty row block per frame
    assert [r.shape for r in run([s * 0 for s in scores])] == [(0, anchors.ROW)] * 5
    with pytest.raises(ValueError, match="grid"):  # outputs of another input size
        anchors.hits_cp(cp, _kernel_stand_in(0), scores, boxes, kps, (320, 320), STRIDES,
                        scrfd.ANCHORS, 0.5, stream)


def test_rows_decode_to_the_faces_the_reference_arithmetic_gives():
    """A hand-made anchor: stride 16, cell (x=3, y=2), second anchor of the cell; box distances
    (1, 2, 3, 4) and keypoint offsets in stride units."""
    scores, boxes, kps = _outputs(1, np.random.default_rng(0), hot=0.0)
    scores = [s * 0 for s in scores]
    a = (2 * 40 + 3) * 2 + 1
    scores[1][0, a, 0] = 0.8
    boxes[1][0, a] = [1, 2, 3, 4]
    kps[1][0, a] = np.arange(10) / 4
    rows = _host_rows(scores, boxes, kps, 0.5)[0]
    cx, cy = 3 * 16, 2 * 16
    np.testing.assert_array_equal(rows[0, :5], np.float32([0.8, cx - 16, cy - 32, cx + 48, cy + 64]))
    np.testing.assert_array_equal(rows[0, 5:].reshape(5, 2),
                                  (np.arange(10) / 4 * 16).reshape(5, 2) + [cx, cy])
    b, sc, k = scrfd.finish(rows, 2.0)  # an input at scale 2 of the image
    np.testing.assert_allclose(b[0], [cx - 16, cy - 32, cx + 48, cy + 64] / np.float32(2))


def test_cupy_decoding_is_bit_identical_when_a_gpu_is_here():
    from ffray.engine.ops_gpu import available

    why = available(0)
    if why:
        pytest.skip(f"no usable CUDA device here ({why})")
    import cupy as cp

    from ffray.engine.colour import Matrix
    from ffray.engine.frames import layout_for
    from ffray.engine.ops_gpu import GpuOps
    from ffray.video.probe import Color

    rng = np.random.default_rng(4)
    scores, boxes, kps = _outputs(8, rng)
    ops = GpuOps(layout_for("yuv420p", 1280, 720), Matrix.of(Color(1, 1, 1, 1), 720), 0)
    dev = [[cp.asarray(x) for x in group] for group in (scores, boxes, kps)]
    got = ops.anchor_hits(*dev, (640, 640), STRIDES, scrfd.ANCHORS, 0.5)
    _check_same(got, _host_rows(scores, boxes, kps, 0.5))
