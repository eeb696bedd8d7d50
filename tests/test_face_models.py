"""The learned-model paths on test-contract ONNX models: SCRFD decoding, ArcFace, inswapper latent
and paste-back against numpy references, GFPGAN, the manifest and the model store."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from ffray.errors import FFrayError
from ffray.faces.align import FFHQ_512, Face, insightface_template, similarity, similarity_many
from ffray.faces.blend import face_mask, paste_back
from ffray.faces.models import GFPGAN, ArcFace, InSwapper, normed, read_emap
from ffray.faces.scrfd import SCRFD
from ffray.models import store
from ffray.models.manifest import check_contract, get
from scripts.make_test_models import KPS_OFFSETS, write_all


@pytest.fixture(scope="session")
def contract_models(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("models")
    write_all(d)
    return d


def sess(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_contract_models_have_exactly_the_real_contracts(contract_models):
    for name in ("det_10g", "w600k_r50", "inswapper_128", "gfpgan_1.4"):
        check_contract(sess(contract_models / get(name).file), get(name))  # raises if not


def test_scrfd_decodes_known_outputs(contract_models):
    det = SCRFD(sess(contract_models / "det_10g.onnx"), input_size=(640, 640))
    img = np.zeros((480, 640, 3), np.uint8)
    img[200:208, 296:304] = 255  # one stride-8 cell at (x=37, y=25) lights up
    faces = det.detect([img])[0]
    assert len(faces) == 1
    f = faces[0]
    cx, cy = 37 * 8, 25 * 8
    np.testing.assert_allclose(f.box, [cx - 8, cy - 8, cx + 8, cy + 8], atol=1e-4)
    np.testing.assert_allclose(f.kps, KPS_OFFSETS.reshape(5, 2) * 8 + [cx, cy], atol=1e-4)
    assert f.score > 0.99
    # a frame twice as large is scaled into the input: boxes come back in frame pixels
    big = cv2.resize(img, (1280, 960), interpolation=cv2.INTER_NEAREST)
    g = det.detect([big])[0]
    assert len(g) == 1
    np.testing.assert_allclose(g[0].box, f.box * 2, atol=1e-3)
    assert det.detect([np.zeros((480, 640, 3), np.uint8)]) == [[]]


def test_scrfd_decoder_caps_candidates_of_an_uncalibrated_model():
    """Every anchor above threshold (random weights do that) must not make NMS quadratic in 33,600
    anchors: the best PRE_NMS_TOP_K enter NMS, so the best-scoring box survives."""
    from ffray.faces import scrfd

    rng = np.random.default_rng(0)
    outs = {}
    for s, (sn, bn, kn) in scrfd.STRIDES.items():
        n = (640 // s) ** 2 * 2
        outs[sn] = rng.uniform(0.6, 0.99, (n, 1)).astype(np.float32)
        outs[bn] = rng.uniform(0, 0.2, (n, 4)).astype(np.float32)  # tiny boxes: little suppression
        outs[kn] = rng.uniform(-1, 1, (n, 10)).astype(np.float32)
    best = max(float(o.max()) for k, o in outs.items() if k in [v[0] for v in scrfd.STRIDES.values()])
    boxes, scores, kps = scrfd.decode(outs, (640, 640), 0.5)
    assert 0 < len(scores) <= scrfd.PRE_NMS_TOP_K and scores.max() == pytest.approx(best)
    assert boxes.shape == (len(scores), 4) and kps.shape == (len(scores), 5, 2)


def test_batched_alignment_matrices_have_the_per_face_bits():
    """The swap and enhance stages align a whole batch of faces in one call: each matrix must be
    the one the per-face call gives (bit for bit: the output video must not change with the batch),
    mirrored point sets (the reflection branch) included."""
    rng = np.random.default_rng(7)
    for dst in (insightface_template(128), FFHQ_512 * 512):
        pts = dst * rng.uniform(0.3, 5, (300, 1, 1)) + rng.uniform(0, 1800, (300, 1, 2))
        pts = (pts + rng.normal(0, 4, pts.shape)).astype(np.float32)
        pts[::5] = pts[::5, ::-1]
        many = similarity_many(pts, dst)
        assert many.shape == (300, 2, 3) and many.dtype == np.float32
        assert all(np.array_equal(m, similarity(p, dst)) for m, p in zip(many, pts))
    faces = [Face(box=np.zeros(4, np.float32), kps=p, score=1.0) for p in pts[:7]]
    assert similarity_many(pts[:0], dst).shape == (0, 2, 3)
    for model in (GFPGAN.__new__(GFPGAN), InSwapper.__new__(InSwapper)):
        assert all(np.array_equal(a, model.matrix(f)) for a, f in zip(model.matrices(faces), faces))
        assert model.matrices([]) == []


def test_arcface_embeddings_are_normed_and_discriminate(contract_models):
    from ffray.video.sample import astronaut_face, faces_image

    rec = ArcFace(sess(contract_models / "w600k_r50.onnx"))
    kps = insightface_template(112) * 1.5 + [100, 60]
    face = Face(np.zeros(4, np.float32), 1.0, kps.astype(np.float32))
    a, t = astronaut_face(), faces_image()
    e = rec.embed([(a, face), (a, face), (t, face)])
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert e[0] @ e[1] > 0.999 and e[0] @ e[2] < 0.95


def test_inswapper_latent_and_swap_against_numpy(contract_models):
    path = contract_models / "inswapper_128.onnx"
    emap = read_emap(str(path))
    model = onnx.load(str(path))
    assert np.array_equal(emap, onnx.numpy_helper.to_array(model.graph.initializer[-1]))
    sw = InSwapper(sess(path), emap)
    rng = np.random.default_rng(0)
    e1, e2 = normed(rng.standard_normal(512)), normed(rng.standard_normal(512))
    ident = (e1 + e2) / 2  # mean of normed embeddings
    lat = sw.latent(ident)
    ref = ident @ emap
    np.testing.assert_allclose(lat[0], ref / np.linalg.norm(ref), rtol=1e-5, atol=1e-6)
    # the swap: the contract computes 0.5 * target + 0.5 * sigmoid(latent @ W)
    frame = rng.integers(0, 255, (240, 320, 3), np.uint8)
    kps = (insightface_template(128) * 0.8 + [100, 50]).astype(np.float32)
    f = Face(np.array([100, 50, 200, 160], np.float32), 1.0, kps)
    out = sw.swap([(frame, f, lat)])[0]
    to_rgb = onnx.numpy_helper.to_array([i for i in model.graph.initializer if i.name == "to_rgb"][0])
    colour = 1 / (1 + np.exp(-(lat @ to_rgb)))[0]  # RGB
    m = similarity(kps, insightface_template(128))
    crop = cv2.warpAffine(frame, m, (128, 128), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)[..., ::-1] / 255.0
    expect = np.clip(0.5 * crop + 0.5 * colour, 0, 1)[..., ::-1] * 255
    assert np.abs(out.astype(float) - expect).max() <= 1.0
    # paste-back: outside the region nothing moves, inside the face the colour moved
    before = frame.copy()
    x0, y0, x1, y1 = paste_back(frame, out, m, face_mask(128, pts=insightface_template(128)))
    moved = np.any(frame != before, axis=2)
    outside = np.ones_like(moved)
    outside[y0:y1, x0:x1] = False
    assert moved.any() and not moved[outside].any()
    nose = kps[2].astype(int)
    assert np.abs(frame[nose[1], nose[0]].astype(int) - before[nose[1], nose[0]]).sum() > 10


def test_gfpgan_contract_path(contract_models):
    enh = GFPGAN(sess(contract_models / "GFPGANv1.4.onnx"))
    img = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 255, (600, 600, 3), np.uint8), (5, 5), 0)
    kps = np.array([[250, 280], [350, 280], [300, 340], [260, 390], [340, 390]], np.float32)
    out = enh.enhance([(img, Face(np.zeros(4, np.float32), 1.0, kps))])[0]
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8
    crop = cv2.warpAffine(img, enh.matrix(Face(np.zeros(4), 1, kps)), (512, 512))
    assert 0 < np.abs(out.astype(int) - crop).mean() < 20  # sharpened, not replaced


def test_wrong_contract_is_refused(contract_models, tmp_path):
    from ffray.faces.setup import check_contract_file

    bad = tmp_path / "inswapper_128.onnx"
    bad.write_bytes((contract_models / "GFPGANv1.4.onnx").read_bytes())
    with pytest.raises(FFrayError, match="inswapper_128.*does not match its contract"):
        check_contract_file(bad, get("inswapper_128"))
    with pytest.raises(FFrayError, match="does not match its contract"):
        store.load("inswapper_128", [tmp_path])


def test_missing_model_names_the_fetch_command(tmp_path, capsys):
    from ffray.cli import main

    with pytest.raises(FFrayError, match="ffray models fetch inswapper_128"):
        store.locate("inswapper_128", [tmp_path])
    rc = main(["models", "path", "w600k_r50", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "ffray models fetch w600k_r50" in err[0]


def test_models_list_names_the_offline_pipeline_and_what_auto_picks(tmp_path, capsys):
    from ffray.cli import main
    from scripts.make_test_models import write_all

    assert main(["models", "list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "mtcnn" in out and "pnet.onnx" in out and "classic" in out
    assert "auto picks: mtcnn detector + classic swapper (dense 68-point warp)" in out
    assert "dlib68" in out and "shape_predictor_68_face_landmarks.dat" in out  # the dense model
    write_all(tmp_path / "m")
    assert main(["models", "list", "--data-dir", str(tmp_path), "--model-dir", str(tmp_path / "m")]) == 0
    assert "auto picks: scrfd detector + inswapper swapper" in capsys.readouterr().out


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with HTTP Range support (for resumed downloads)."""

    def log_message(self, *a):
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            data = data[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def http_dir(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **k: _RangeHandler(*a, directory=str(root), **k)  # noqa: E731
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_fetch_refuses_a_hash_mismatch_and_deletes_it(http_dir, contract_models, tmp_path):
    root, base = http_dir
    (root / "det_10g.onnx").write_bytes((contract_models / "det_10g.onnx").read_bytes())
    cache = tmp_path / "cache"
    with pytest.raises(FFrayError, match="SHA-256 .* does not match the manifest.*deleted"):
        store.fetch("det_10g", cache, url=f"{base}/det_10g.onnx")
    assert not any(cache.iterdir())  # nothing left behind


def test_fetch_resumes_a_partial_download(http_dir, contract_models, tmp_path, monkeypatch):
    from dataclasses import replace

    from ffray.models import manifest

    root, base = http_dir
    data = (contract_models / "w600k_r50.onnx").read_bytes()
    (root / "w600k_r50.onnx").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    entry = replace(manifest.MODELS["w600k_r50"], sha256=digest, size=len(data))
    monkeypatch.setitem(manifest.MODELS, "w600k_r50", entry)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / ".w600k_r50.onnx.part").write_bytes(data[:1000])  # an interrupted earlier fetch
    seen = []
    path = store.fetch("w600k_r50", cache, url=f"{base}/w600k_r50.onnx",
                       progress=lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == data
    assert seen[0][0] > 1000 and seen[-1] == (len(data), len(data))  # continued, not restarted
    _, ok, msg = store.verify("w600k_r50", [cache], cache)
    assert ok and msg == "ok"


def _square_scene(path: Path) -> Path:
    """Two 'people' for the contract detector (bright in red): a white and a red square, moving."""
    from ffray.video.sample import write_video

    def frames():
        for i in range(20):
            f = np.zeros((240, 320, 3), np.uint8)
            f[96:144, 40 + 2 * i:88 + 2 * i] = (255, 255, 255)
            f[96:144, 200 - 2 * i:248 - 2 * i] = (0, 0, 255)
            yield f
    return write_video(path, frames(), fps=20, gop=10, audio=False, crf=10)


def _square_image(path: Path, bgr) -> str:
    img = np.zeros((200, 200, 3), np.uint8)
    img[68:132, 68:132] = bgr
    cv2.imwrite(str(path), img)
    return str(path)


def test_swap_with_contract_models_and_per_person_mapping(cluster, contract_models, data_dir,
                                                          tmp_path):
    from ffray.cluster.jobs import SwapRequest, prepare_swap, run_job
    from ffray.processors import ProcessorSpec
    from tests.media import frames

    video = _square_scene(tmp_path / "people.mp4")
    white_t = _square_image(tmp_path / "t_white.png", (255, 255, 255))
    red_t = _square_image(tmp_path / "t_red.png", (0, 0, 255))
    s1 = _square_image(tmp_path / "s1.png", (0, 255, 255))
    s2 = _square_image(tmp_path / "s2.png", (255, 0, 255))

    def run(named, sources, out):
        params = {"detector": "auto", "swapper": "auto", "mapping": len(named) // 2,
                  "distance": 0.2, "blend": "feather"}
        ledger = prepare_swap(SwapRequest(
            input=str(video), output=str(out), sources=sources, chunk_seconds=0.3, actors=2,
            gpu_per_actor=1, model_dirs=[str(contract_models)], named=named,
            processor=ProcessorSpec(kind="faceswap", params=params, batch_size=4)), data_dir)
        return ledger, run_job(ledger)

    out = tmp_path / "mapped.mp4"
    ledger, res = run({"map_target_0": white_t, "map_source_0": s1, "map_target_1": red_t,
                       "map_source_1": s2}, [s1], out)
    assert ledger.spec["pipeline"].startswith("scrfd detector + inswapper swapper")
    for w in ledger.spec["startup"]["workers"]:  # where each worker's set-up time went
        phases = {**w["setup_phases"], **w["notes"]["setup"]}
        assert {"context_s", "codecs_start_s", "engine_s", "rings_s", "imports_s", "backend_s",
                "stages_s"} <= set(phases) and min(phases.values()) >= 0
        # the phases fit inside the driver's wait from the workers' creation to their readiness
        assert sum(w["setup_phases"].values()) <= ledger.spec["startup"]["workers_ready_s"] + 0.01
        assert w["notes"]["setup"]["stages_s"] <= w["setup_phases"]["engine_s"]
    a, b = frames(video), frames(out)
    assert len(b) == len(a) == 20 and res.chunks >= 3
    stats = ledger.chunk_stats()
    assert len({s["actor_id"] for s in stats}) == 2
    by_id = [x for s in stats for x in s["stages"]["per_frame"]["faces_by_identity"]]
    assert len(by_id) == 20 and all(n0 > 0 and n1 > 0 for n0, n1 in by_id)
    assert all(s["stages"]["swap_s"] > 0 and s["stages"]["embed_s"] > 0 for s in stats)

    def pushed_colour(inp, outp, x):  # 2 * out - in = the colour the swapper pushed towards
        return (2 * outp[110:130, x:x + 8].astype(float) - inp[110:130, x:x + 8]).mean((0, 1))

    ca = pushed_colour(a[0][1], b[0][1], 60)
    cb = pushed_colour(a[0][1], b[0][1], 220)
    assert np.abs(ca - cb).max() > 40  # two people, two identities

    out1 = tmp_path / "one.mp4"  # no mapping, through the CLI
    from ffray.cli import main

    assert main(["swap", str(video), "-s", s1, "-o", str(out1), "--model-dir", str(contract_models),
                 "--chunk-seconds", "0.5", "--actors", "2", "--gpu-per-actor", "1",
                 "--data-dir", str(tmp_path / "cli-data")]) == 0
    job = next((tmp_path / "cli-data" / "jobs").iterdir())
    import json

    spec = json.loads((job / "job.json").read_text())
    assert spec["pipeline"] == "scrfd detector + inswapper swapper"
    c = frames(out1)
    ua = pushed_colour(a[0][1], c[0][1], 60)
    ub = pushed_colour(a[0][1], c[0][1], 220)
    assert np.abs(ua - ub).max() < 40  # one identity for both people


def test_reference_selection_swaps_only_the_matching_person(contract_models, tmp_path):
    from ffray.faces.pipeline import FaceSwap
    from ffray.models.manifest import MODELS
    from ffray.processors import BatchInfo, WorkerContext

    models = {n: (contract_models / MODELS[n].file).read_bytes()
              for n in ("det_10g", "w600k_r50", "inswapper_128")}
    s1 = Path(_square_image(tmp_path / "s1.png", (0, 255, 255))).read_bytes()
    ref = Path(_square_image(tmp_path / "ref.png", (0, 0, 255))).read_bytes()  # the red person
    ctx = WorkerContext(sources=(s1,), named={"reference": ref}, models=models)
    proc = FaceSwap(ctx, detector="scrfd", swapper="inswapper", select="reference", distance=0.2,
                    providers=["CPUExecutionProvider"])
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[96:144, 40:88] = (255, 255, 255)
    frame[96:144, 200:248] = (0, 0, 255)
    out = proc.process([frame], BatchInfo(0, (0,), (0,)))[0]
    stats = proc.stats()
    assert 0 < stats["faces_swapped"] < stats["faces_detected"]
    assert np.array_equal(out[100:140, 44:84], frame[100:140, 44:84])  # white person untouched
    assert np.abs(out[110:130, 210:238].astype(int) - frame[110:130, 210:238]).mean() > 20


def test_mapping_without_a_recognizer_says_so(tmp_path, contract_models, capsys):
    import shutil

    from ffray.cli import main

    only_det = tmp_path / "models"
    only_det.mkdir()
    shutil.copy(contract_models / "det_10g.onnx", only_det)
    video = _square_scene(tmp_path / "v.mp4")
    a = _square_image(tmp_path / "a.png", (255, 255, 255))
    rc = main(["swap", str(video), "-s", a, "-o", str(tmp_path / "o.mp4"), "--model-dir",
               str(only_det), "--map", f"{a}={a}", "--data-dir", str(tmp_path / "d")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "--map needs a face recognizer (w600k_r50)" in err[0] and "ffray models fetch" in err[0]



def test_enhancer_runs_after_the_swap(contract_models, tmp_path):
    from ffray.faces.pipeline import FaceSwap
    from ffray.models.manifest import MODELS
    from ffray.processors import BatchInfo, WorkerContext

    models = {n: (contract_models / MODELS[n].file).read_bytes()
              for n in ("det_10g", "w600k_r50", "inswapper_128", "gfpgan_1.4")}
    s1 = Path(_square_image(tmp_path / "s1.png", (0, 255, 255))).read_bytes()
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[80:160, 100:180] = cv2.GaussianBlur(
        np.random.default_rng(2).integers(0, 255, (80, 80, 3), np.uint8), (5, 5), 0)
    frame[80:160, 100:180, 2] = 255
    outs = {}
    for enhance in (None, "gfpgan"):
        proc = FaceSwap(WorkerContext(sources=(s1,), models=models), detector="scrfd",
                        swapper="inswapper", select="one", enhance=enhance,
                        providers=["CPUExecutionProvider"])
        outs[enhance] = proc.process([frame], BatchInfo(0, (0,), (0,)))[0]
        st = proc.stats()
        assert st["faces_swapped"] == 1
        assert (st.get("enhance_s", 0) > 0) == (enhance == "gfpgan")
    diff = np.any(outs[None] != outs["gfpgan"], axis=2)
    assert diff.any() and diff.mean() < 0.5  # the enhancer changed the face region only
