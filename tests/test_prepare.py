"""Model graphs prepared for the GPU, checked on the CPU: the batch edit gives the batch-1 graph's
outputs, fp16 stays within tolerance of fp32 on real face crops, and a variant that does not
match falls back (the node cache records why)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ffray.faces.align import FFHQ_512, crop, insightface_template, similarity
from ffray.models import prepare
from ffray.models.gpu_loader import FP16_TOL, DeviceLoader, trim
from ffray.models.manifest import MODELS
from scripts.make_test_models import write_all

CPU = ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cm")
    write_all(d)
    return d


@pytest.fixture(scope="module")
def real_faces():
    """Face crops of real photos: the six faces of t1.jpg (MTCNN, real weights) and the astronaut."""
    from ffray.faces.mtcnn import MTCNN
    from ffray.video.sample import astronaut_face, faces_image

    det = MTCNN(lambda p: ort.InferenceSession(str(p), providers=CPU))
    out = []
    for img in (faces_image(), astronaut_face()):
        out += [(img, f) for f in det.detect([img])[0]]
    assert len(out) >= 6
    return out


def _sess(model) -> ort.InferenceSession:
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, providers=CPU)


def _inputs(name: str, faces, n: int) -> dict[str, np.ndarray]:
    """Model inputs built from real photos: aligned crops (and the t1 frame for the detector)."""
    from ffray.video.sample import faces_image

    rgb = []
    if name == "det_10g":
        import cv2

        img = cv2.resize(faces_image(), (640, 640))
        x = ((img[:, :, ::-1].astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        return {"input.1": np.repeat(x, n, axis=0)}
    size = {"inswapper_128": 128, "gfpgan_1.4": 512, "w600k_r50": 112}[name]
    tmpl = FFHQ_512 * 512 if name == "gfpgan_1.4" else insightface_template(size)
    for img, f in faces[:n]:
        rgb.append(crop(img, similarity(f.kps, tmpl), size)[:, :, ::-1].astype(np.float32))
    x = np.stack(rgb).transpose(0, 3, 1, 2)
    if name == "inswapper_128":
        lat = np.random.default_rng(0).standard_normal((n, 512)).astype(np.float32)
        return {"target": x / 255.0, "source": lat / np.linalg.norm(lat, axis=1, keepdims=True)}
    key = "input" if name == "gfpgan_1.4" else "input.1"
    return {key: (x - 127.5) / 127.5}


def _each(sess, feeds, n):
    return [sess.run(None, {k: v[i:i + 1] for k, v in feeds.items()}) for i in range(n)]


@pytest.mark.parametrize("name", ["det_10g", "inswapper_128", "gfpgan_1.4"])
def test_batch_edit_gives_the_batch_1_graphs_outputs(models, real_faces, name):
    original = onnx.load(str(models / MODELS[name].file))
    assert prepare.fixed_batch(original)
    edited = prepare.dynamic_batch(original)
    assert not prepare.fixed_batch(edited)
    n = 3
    feeds = _inputs(name, real_faces, n)
    if name == "det_10g":  # three different frames: shift the picture
        feeds["input.1"] = np.stack([np.roll(feeds["input.1"][0], 37 * i, axis=2) for i in range(n)])
    one = _each(_sess(original), feeds, n)
    many = _sess(edited).run(None, feeds)
    for j, out in enumerate(many):
        per = out.reshape(n, -1, *out.shape[1:]) if out.shape[0] != n else out
        for i in range(n):
            np.testing.assert_allclose(per[i].reshape(one[i][j].shape), one[i][j], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["det_10g", "inswapper_128", "gfpgan_1.4", "w600k_r50"])
def test_fp16_stays_close_to_fp32_on_real_face_crops(models, real_faces, name, record_property):
    original = onnx.load(str(models / MODELS[name].file))
    n = 4
    feeds = _inputs(name, real_faces, n)
    ref = _each(_sess(original), feeds, n)
    half = _each(_sess(prepare.to_fp16(original)), feeds, n)
    worst_abs = max(float(np.abs(a - b).max()) for r, h in zip(ref, half) for a, b in zip(r, h))
    rel = max(prepare.compare(r, h) for r, h in zip(ref, half))
    record_property(f"{name}_fp16_max_abs_diff", worst_abs)
    print(f"{name}: fp16 vs fp32 max |diff| {worst_abs:.2e}, relative {rel:.2e}")
    assert rel <= FP16_TOL
    assert rel > 0  # it really ran in half precision (a no-op conversion would be exact)


def test_loader_prepares_checks_caches_and_falls_back(models, tmp_path):
    data = {n: (models / MODELS[n].file).read_bytes() for n in ("inswapper_128", "det_10g")}
    sha = {"inswapper_128": "a" * 64, "det_10g": "b" * 64}
    loader = DeviceLoader(data, sha, 0, CPU, "auto", cache=tmp_path)
    path, v = loader._prepared("inswapper_128", 8, fp16=True)
    assert v["batch"] == 8 and v["fp16"] and v["edited"] and not v["cached"]
    assert v["tries"][0]["ok"] and 0 < v["tries"][0]["rel_err"] <= FP16_TOL
    s = _sess(path)
    assert s.get_inputs()[0].shape[0] == "batch"
    path2, v2 = loader._prepared("inswapper_128", 8, fp16=True)
    assert path2 == path and v2["cached"]  # the node's cache: no second conversion
    # a graph whose batch the edit cannot carry (it reduces over the batch axis) falls back to 1
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    g = helper.make_graph([helper.make_node("ReduceSum", ["x", "axes"], ["e"], keepdims=1),
                           helper.make_node("Relu", ["e"], ["y"])], "g", [x], [y],
                          [numpy_helper.from_array(np.array([0], np.int64), "axes")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    loader2 = DeviceLoader({"w600k_r50": m.SerializeToString()}, {"w600k_r50": "c" * 64}, 0, CPU,
                           "fp32", cache=tmp_path)
    _, v3 = loader2._prepared("w600k_r50", 4, fp16=False)
    assert v3["batch"] == 1 and not v3["tries"][0]["ok"] and v3["tries"][-1]["ok"]


def test_loader_keeps_the_emap_in_the_nodes_cache(models, tmp_path):
    """A later worker on the node gets inswapper's emap from the cache: it neither fetches the
    model's bytes from the object store nor parses the graph."""
    from ffray.faces.models import read_emap

    data = (models / MODELS["inswapper_128"].file).read_bytes()
    calls = []

    def fetch(ref):
        calls.append(ref)
        return data

    sha = {"inswapper_128": "d" * 64}
    first = DeviceLoader({"inswapper_128": "ref"}, sha, 0, CPU, cache=tmp_path, fetch=fetch)
    emap = first.derived("inswapper_128", "emap", read_emap)
    assert calls == ["ref"] and emap.shape == (512, 512)
    np.testing.assert_array_equal(emap, read_emap(data))

    def refuse(ref):
        raise AssertionError("fetched the model although its emap was cached")

    later = DeviceLoader({"inswapper_128": "ref"}, sha, 0, CPU, cache=tmp_path, fetch=refuse)
    np.testing.assert_array_equal(later.derived("inswapper_128", "emap", read_emap), emap)
    # another model (digest) does not share the entry
    other = DeviceLoader({"inswapper_128": data}, {"inswapper_128": "e" * 64}, 0, CPU, cache=tmp_path)
    np.testing.assert_array_equal(other.derived("inswapper_128", "emap", lambda b: read_emap(b) * 2),
                                  emap * 2)
    # the cache's trim keeps a model's arrays while one of its prepared graphs is kept
    (tmp_path / ("d" * 20 + "-b8-h.onnx")).write_bytes(b"x")
    trim(tmp_path, 1 << 20)
    assert sorted(p.name for p in tmp_path.glob("*.npy")) == ["d" * 20 + "-emap.npy"]


def test_model_digests_are_remembered_in_ffrays_cache_and_follow_changes(tmp_path):
    import hashlib
    import os

    from ffray.models.store import file_digest

    f = tmp_path / "models" / "m.onnx"
    f.parent.mkdir()
    f.write_bytes(b"one")
    memo = tmp_path / "cache" / "digests.json"
    assert file_digest(f, memo) == hashlib.sha256(b"one").hexdigest()
    assert memo.is_file() and [p.name for p in f.parent.iterdir()] == ["m.onnx"]  # nothing beside it
    f.write_bytes(b"two!")
    os.utime(f, ns=(1, 2))
    assert file_digest(f, memo) == hashlib.sha256(b"two!").hexdigest()
    assert len(__import__("json").loads(memo.read_text())) == 1  # the stale entry went
