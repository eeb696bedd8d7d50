"""The offline face pipeline on real face photos: MTCNN, alignment, classic swap, paste-back."""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from ffray.errors import FFrayError
from ffray.faces.align import ARCFACE_112, align_matrix, similarity, template
from ffray.faces.blend import BlendOptions, face_mask, paste_back
from ffray.faces.classic import ClassicSwapper
from ffray.faces.mtcnn import MTCNN
from ffray.faces.select import select_faces
from ffray.video.sample import astronaut_face, faces_image


@pytest.fixture(scope="module")
def mtcnn():
    return MTCNN(lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]))


def _inside(pt, box, margin=0.0):
    return box[0] - margin <= pt[0] <= box[2] + margin and box[1] - margin <= pt[1] <= box[3] + margin


def _check_face(f):
    assert all(_inside(p, f.box) for p in f.kps)
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = f.kps
    assert lx < rx and mlx < mrx  # left before right
    assert max(ly, ry) < ny < min(mly, mry)  # eyes above nose above mouth


def test_mtcnn_finds_the_six_faces_of_t1(mtcnn):
    faces = mtcnn.detect([faces_image()])[0]
    assert len(faces) == 6
    for f in faces:
        assert f.score > 0.9 and 80 < f.box[2] - f.box[0] < 160
        _check_face(f)
    centres = sorted(((f.box[0] + f.box[2]) / 2) for f in faces)
    assert np.diff(centres).min() > 80  # six different people, not duplicates


def test_mtcnn_finds_the_astronaut_and_batches_frames(mtcnn):
    a = astronaut_face()
    single = mtcnn.detect([a])[0]
    assert len(single) == 1
    _check_face(single[0])
    flipped = a[:, ::-1].copy()
    both = mtcnn.detect([a, flipped, np.zeros_like(a)])
    assert [len(x) for x in both] == [1, 1, 0]
    np.testing.assert_allclose(both[0][0].box, single[0].box, atol=1e-3)
    w = a.shape[1]
    side = single[0].box[2] - single[0].box[0]
    assert abs((w - both[1][0].box[2]) - single[0].box[0]) < 0.12 * side  # mirrored face and box


def test_similarity_recovers_a_known_transform():
    ang, s, t = np.deg2rad(20), 1.7, np.array([30.0, -12.0])
    r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = (s * ARCFACE_112 @ r.T) + t
    m = similarity(ARCFACE_112, dst)
    np.testing.assert_allclose(m, np.hstack([s * r, t[:, None]]), atol=1e-4)
    np.testing.assert_allclose(align_matrix(dst, 112) @ np.append(dst[0], 1), ARCFACE_112[0], atol=1e-3)


def test_paste_back_changes_only_the_face_region():
    frame = np.full((300, 400, 3), 90, np.uint8)
    kps = template(112) * 0.9 + [150, 90]
    m = align_matrix(kps, 128)
    face = np.full((128, 128, 3), 200, np.uint8)
    before = frame.copy()
    x0, y0, x1, y1 = paste_back(frame, face, m, face_mask(128))
    changed = np.any(frame != before, axis=2)
    ys, xs = np.nonzero(changed)
    assert changed.any() and xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1
    assert (x1 - x0) < 160 and (y1 - y0) < 160  # a face-sized region, not the frame
    centre = frame[int(kps[2, 1]), int(kps[2, 0])]
    assert centre.min() > 190  # the nose tip is the pasted face
    # an independent reference: alpha-blend with the mask warped by OpenCV over the whole frame
    ref = before.astype(np.float32)
    minv = cv2.invertAffineTransform(m)
    a = cv2.warpAffine(face_mask(128), minv, (400, 300))[..., None]
    f = cv2.warpAffine(face, minv, (400, 300)).astype(np.float32)
    ref = np.clip(a * f + (1 - a) * ref + 0.5, 0, 255).astype(np.uint8)
    assert np.abs(ref.astype(int) - frame.astype(int)).max() <= 2


def test_classic_swap_of_astronaut_onto_t1_changes_faces_only(mtcnn):
    src = astronaut_face()
    target = faces_image()
    faces = mtcnn.detect([target])[0]
    sw = ClassicSwapper(src, mtcnn.detect([src])[0][0], BlendOptions())
    out = target.copy()
    rois = [sw.swap(out, f) for f in faces]
    inside = np.zeros(target.shape[:2], bool)
    for x0, y0, x1, y1 in rois:
        inside[y0:y1, x0:x1] = True
    diff = np.any(out != target, axis=2)
    assert not diff[~inside].any()  # nothing outside the face regions moved
    for f in faces:  # and every face changed
        x0, y0, x1, y1 = f.box.astype(int)
        assert np.abs(out[y0:y1, x0:x1].astype(int) - target[y0:y1, x0:x1]).mean() > 8
    assert len(mtcnn.detect([out])[0]) == 6  # still six faces


def test_selection_modes():
    from ffray.faces.align import Face

    def face(x, size, score):
        return Face(np.array([x, 0, x + size, size], np.float32), score, np.zeros((5, 2), np.float32))

    fs = [face(100, 50, 0.9), face(10, 80, 0.8), face(300, 20, 0.99)]
    assert select_faces(fs, "one", "largest")[0] is fs[1]
    assert select_faces(fs, "one", "left-right")[0] is fs[1]
    assert select_faces(fs, "one", "best")[0] is fs[2]
    assert len(select_faces(fs, "many")) == 3
    with pytest.raises(FFrayError):
        select_faces(fs, "everyone")


def test_faceswap_processor_over_a_multi_actor_ray_run(cluster, media, data_dir, tmp_path):
    from tests.media import frames, swap

    out = tmp_path / "swapped.mp4"
    ledger, res = swap(media.faces_video, out, data_dir, processor="faceswap",
                       sources=[str(media.face)], actors=2, gpu_per_actor=1, chunk_seconds=0.4)
    a, b = frames(media.faces_video), frames(out)
    assert len(a) == len(b) == 30 and [t for t, _ in a] == [t for t, _ in b]
    stats = ledger.chunk_stats()
    assert len({s["actor_id"] for s in stats}) == 2
    det = [n for s in stats for n in s["stages"]["per_frame"]["faces_detected"]]
    swapped = [n for s in stats for n in s["stages"]["per_frame"]["faces_swapped"]]
    assert len(det) == 30 and min(det) >= 3 and swapped == det
    assert all(s["stages"]["detect_s"] > 0 and s["stages"]["swap_s"] > 0 for s in stats)
    mt = MTCNN(lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]))
    f0 = mt.detect([a[0][1]])[0]
    for f in f0:  # the faces changed (the default dense swap leaves forehead and hair in the box)...
        x0, y0, x1, y1 = f.box.astype(int)
        assert np.abs(b[0][1][y0:y1, x0:x1].astype(int) - a[0][1][y0:y1, x0:x1]).mean() > 3
    far = np.ones(a[0][1].shape[:2], bool)  # ...and what is far from every face did not
    for f in f0:
        x0, y0, x1, y1 = f.box.astype(int)
        w, h = x1 - x0, y1 - y0
        far[max(0, y0 - h):y1 + h, max(0, x0 - w):x1 + w] = False
    assert np.abs(b[0][1][far].astype(int) - a[0][1][far]).mean() < 3


def test_source_without_a_face_is_refused_before_any_work(media, data_dir, tmp_path):
    from ffray.cluster.jobs import SwapRequest, prepare_swap
    from ffray.processors import ProcessorSpec

    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 120, np.uint8))
    with pytest.raises(FFrayError, match="no face found in source image wall.png"):
        prepare_swap(SwapRequest(input=str(media.faces_video), output=str(tmp_path / "o.mp4"),
                                 sources=[str(blank)], processor=ProcessorSpec(kind="faceswap")),
                     data_dir)
    assert not (data_dir / "jobs").exists()
