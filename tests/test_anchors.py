"""The anchor-grid decoding that the GPU backend runs for a whole batch (``engine.anchors.hits_cp``)
must give, frame by frame, exactly the host's rows (``hits_np``): the same candidates in the same
order, bit for bit, so NMS keeps the same faces on either backend. Checked here with NumPy standing
in for CuPy (the same array API), and with CuPy itself where a GPU is present."""

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


def _numpy_as_cupy():
    cp = types.SimpleNamespace(**{k: getattr(np, k) for k in (
        "concatenate", "nonzero", "stack", "float32", "asarray")})
    cp.asnumpy = lambda x, stream=None: np.asarray(x)
    return cp, types.SimpleNamespace(synchronize=lambda: None)


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
    grid = anchors.DeviceGrid(cp, (640, 640), STRIDES, scrfd.ANCHORS)
    _check_same(anchors.hits_cp(cp, scores, boxes, kps, grid, 5, 0.5, stream), want)
    # no candidate anywhere: one empty row block per frame
    none = anchors.hits_cp(cp, [s * 0 for s in scores], boxes, kps, grid, 5, 0.5, stream)
    assert [r.shape for r in none] == [(0, anchors.ROW)] * 5


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
