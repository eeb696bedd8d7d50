"""The offline swap's dense mode on real photos: dlib's 68 landmarks, the mesh warp of the astronaut
onto t1.jpg's faces (and onto a reshaped copy), what stays the target's (forehead, open mouth),
the 5-point fallback, and a job through the engine."""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from ffray.engine.api import BatchInfo, WorkerContext
from ffray.errors import FFrayError
from ffray.faces.align import similarity
from ffray.faces.dense import face_region, mesh_maps, triangulate
from ffray.faces.landmarks import BROWS, INNER_LIPS, Landmarks68, choose_warp
from ffray.faces.mtcnn import MTCNN
from ffray.faces.pipeline import FaceSwap
from ffray.video.sample import astronaut_face, faces_image


@pytest.fixture(scope="module")
def mtcnn():
    return MTCNN(lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]))


@pytest.fixture(scope="module")
def lm():
    return Landmarks68()


def _swap(img: np.ndarray, warp: str) -> np.ndarray:
    src = cv2.imencode(".png", astronaut_face())[1].tobytes()
    proc = FaceSwap(WorkerContext(sources=(src,)), detector="mtcnn", swapper="classic",
                    classic_warp=warp, track=False)
    return proc.process([img], BatchInfo(0, (0,), (0,)))[0]


def _shape_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance of two 68-point shapes after the best similarity of ``a`` onto ``b``, in
    eye distances of ``b`` (pose, scale and position removed: what is left is shape)."""
    m = similarity(a, b).astype(np.float64)
    moved = a @ m[:, :2].T + m[:, 2]
    eyes = np.linalg.norm(b[36:42].mean(0) - b[42:48].mean(0))
    return float(np.linalg.norm(moved - b, axis=1).mean() / eyes)


def _nearest(faces, box):
    c = (box[:2] + box[2:]) / 2
    return min(faces, key=lambda f: np.linalg.norm((f.box[:2] + f.box[2:]) / 2 - c))


def _reshaped(img: np.ndarray) -> np.ndarray:
    """t1.jpg with every face made narrower and longer (an affine no similarity can undo)."""
    h, w = img.shape[:2]
    m = np.array([[0.8, 0, 0.1 * w], [0, 1.15, -0.075 * h]], np.float32)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


@pytest.mark.parametrize("target_of", [faces_image, lambda: _reshaped(faces_image())],
                         ids=["t1", "t1-reshaped"])
def test_swapped_faces_take_the_targets_geometry(mtcnn, lm, target_of):
    target = target_of()
    src = astronaut_face()
    src_pts = lm.on_image(src, mtcnn.detect([src])[0][0])
    faces = mtcnn.detect([target])[0]
    assert len(faces) == 6
    outs = {w: _swap(target, w) for w in ("dense", "5point")}
    d = {"dense": [], "5point": [], "source": []}
    for f in faces:
        t_pts = lm.on_image(target, f)
        d["source"].append(_shape_distance(src_pts, t_pts))
        for w, out in outs.items():
            g = _nearest(mtcnn.detect([out])[0], f.box)  # re-detected on the output
            d[w].append(_shape_distance(lm.on_image(out, g), t_pts))
    dense, five, source = (np.array(d[k]) for k in ("dense", "5point", "source"))
    print("shape distances (eye distances): dense", dense.round(3), "5point", five.round(3),
          "source", source.round(3))
    # dense: every face's landmarks follow the target's, far closer than the source's shape is
    assert (dense < 0.6 * source).all(), (dense, source)
    # the 5-point warp keeps much of the source's shape (the fixed smile): the dense one does not
    assert dense.mean() < 0.6 * five.mean(), (dense, five)


def test_forehead_and_open_mouth_stay_the_targets(mtcnn, lm):
    target = faces_image()
    faces = mtcnn.detect([target])[0]
    outs = {w: _swap(target, w) for w in ("dense", "5point")}
    changed = {w: np.abs(o.astype(int) - target).max(axis=2) for w, o in outs.items()}
    mouths, painted = 0, []
    for f in faces:
        pts = lm.on_image(target, f)
        eyes = np.linalg.norm(pts[36:42].mean(0) - pts[42:48].mean(0))
        # the forehead: a band up to a third of an eye distance above the highest brow point
        brow = pts[BROWS]
        top = int(brow[:, 1].min())
        band = np.s_[int(top - 0.3 * eyes):top, int(brow[:, 0].min()):int(brow[:, 0].max())]
        assert (changed["dense"][band] == 0).mean() > 0.97  # no crescent of the source's fringe
        painted.append((changed["5point"][band] > 8).mean())
        # the face itself changed
        inner = np.zeros(target.shape[:2], np.uint8)
        cv2.fillConvexPoly(inner, cv2.convexHull(np.round(pts[17:]).astype(np.int32)), 1)
        assert changed["dense"][inner > 0].mean() > 6
        # an open mouth (teeth showing) keeps the target's teeth
        lips = np.zeros(target.shape[:2], np.uint8)
        cv2.fillPoly(lips, [np.round(pts[INNER_LIPS]).astype(np.int32)], 1)
        lips = cv2.erode(lips, np.ones((5, 5), np.uint8))
        if lips.sum() > 0.05 * eyes ** 2:
            mouths += 1
            assert (changed["dense"][lips > 0] <= 2).mean() > 0.9
    assert mouths >= 1  # t1.jpg has open smiles
    assert np.mean(painted) > 0.3  # (the 5-point swap paints the source's fringe there)


def test_mesh_maps_are_exact_on_an_affine_mesh(lm):
    """A mesh moved by one affine map gives exactly that map at every covered pixel."""
    pts = lm.predict([cv2.resize(astronaut_face(), (256, 256))])[0].astype(np.float64)
    tri = triangulate(pts)
    a = np.array([[0.9, 0.1, 5.0], [-0.05, 1.1, -3.0]])
    dst = pts @ a[:, :2].T + a[:, 2]
    mx, my, covered = mesh_maps(pts, dst, tri, 256)
    inv = cv2.invertAffineTransform(a)
    ys, xs = np.nonzero(covered)
    assert len(xs) > 0.2 * 256 * 256
    want = np.stack([xs, ys], 1) @ inv[:, :2].T + inv[:, 2]
    assert np.abs(np.stack([mx[ys, xs], my[ys, xs]], 1) - want).max() < 1e-3
    region = face_region(dst, 256)
    assert region.any() and not (region & ~covered).any()


def test_warp_choice_and_fallback(monkeypatch):
    assert choose_warp("auto", None) == ("dense", "dense 68-point warp")
    warp, note = choose_warp("auto", "dlib is not installed")
    assert warp == "5point" and "dense landmarks unavailable: dlib is not installed" in note
    assert choose_warp("5point", None)[0] == "5point"
    with pytest.raises(FFrayError, match="--classic-warp dense: gone"):
        choose_warp("dense", "gone")

    from ffray.faces import pipeline, setup

    monkeypatch.setattr(setup, "unavailable", lambda: "the weights are missing")
    params, _, desc = setup.resolve({}, [])
    assert params["swapper"] == "classic" and params["classic_warp"] == "5point"
    assert "5-point warp; dense landmarks unavailable: the weights are missing" in desc
    with pytest.raises(FFrayError, match="--classic-warp dense"):
        setup.resolve({"classic_warp": "dense"}, [])
    # a worker without the model falls back the same way: output as the 5-point swap's
    target = faces_image()[:300, :400]
    five = _swap(target, "5point")
    monkeypatch.setattr(pipeline, "unavailable", lambda: "the weights are missing")
    assert np.array_equal(_swap(target, "auto"), five)
    monkeypatch.undo()
    assert not np.array_equal(_swap(target, "auto"), five)  # (auto is dense when it is there)


def test_dense_offline_swap_through_a_ray_job(cluster, media, data_dir, tmp_path):
    from tests.media import frames, swap

    out = tmp_path / "dense.mp4"
    ledger, _ = swap(media.faces_video, out, data_dir, processor="faceswap",
                     params={"detector": "mtcnn", "swapper": "classic", "classic_warp": "dense"},
                     sources=[str(media.face)], actors=1, gpu_per_actor=1, chunk_seconds=0.6)
    assert "dense" in ledger.spec["pipeline"]
    a, b = frames(media.faces_video), frames(out)
    assert len(a) == len(b) == 30
    mt = MTCNN(lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]))
    lm = Landmarks68()
    src = astronaut_face()
    src_pts = lm.on_image(src, mt.detect([src])[0][0])
    for i in (0, 29):
        before, after = a[i][1], b[i][1]
        faces = [f for f in mt.detect([before])[0] if f.box[2] - f.box[0] > 40]
        assert len(faces) >= 3
        for f in faces:
            t_pts = lm.on_image(before, f)
            o_pts = lm.on_image(after, _nearest(mt.detect([after])[0], f.box))
            assert _shape_distance(o_pts, t_pts) < 0.6 * _shape_distance(src_pts, t_pts)
            x0, y0, x1, y1 = f.box.astype(int)
            assert np.abs(after[y0:y1, x0:x1].astype(int) - before[y0:y1, x0:x1]).mean() > 3
