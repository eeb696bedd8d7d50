"""The face-swap frame processor (``--processor faceswap``): detect, select, embed, swap, enhance,
paste back; batched over the frames of a batch and over all their faces.

Pipelines: ``scrfd`` + ``inswapper`` (insightface models, found with ``--model-dir`` or fetched with
``ffray models fetch``), and the offline default ``mtcnn`` + ``classic`` (no downloaded weights).
Model bytes travel with the actors (through Ray's object store), so nodes need no model files.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from ffray.errors import FFrayError
from ffray.faces.align import FFHQ_512, Face, insightface_template
from ffray.faces.blend import BlendOptions, face_mask, paste_back
from ffray.faces.classic import ClassicSwapper
from ffray.faces.models import GFPGAN, ArcFace, InSwapper, read_emap
from ffray.faces.mtcnn import MTCNN
from ffray.faces.scrfd import SCRFD
from ffray.faces.select import order_faces, select_faces
from ffray.models.manifest import check_contract, get
from ffray.models.sessions import choose_providers, make_session
from ffray.processors import BatchInfo, WorkerContext, _Timed

MODEL_FOR = {"scrfd": "det_10g", "inswapper": "inswapper_128", "arcface": "w600k_r50",
             "gfpgan": "gfpgan_1.4"}


def decode_image(data: bytes, what: str) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise FFrayError(f"{what} is not a readable image")
    return img


def largest_face(detector, img: np.ndarray, what: str) -> Face:
    faces = detector.detect([img])[0]
    if not faces:
        raise FFrayError(f"no face found in {what}")
    return order_faces(faces, "largest")[0]


class Downscaled:
    """Runs a detector on frames shrunk so their longer side is at most ``max_side`` (MTCNN's
    pyramid cost grows with the frame area; faces in HD video are large), scaling results back."""

    def __init__(self, detector, max_side: int):
        self.detector, self.max_side = detector, max_side

    def detect(self, frames: list[np.ndarray], threshold: float | None = None) -> list[list[Face]]:
        if not frames:
            return []
        h, w = frames[0].shape[:2]
        s = min(1.0, self.max_side / max(h, w))
        if s >= 1.0:
            return self.detector.detect(frames, threshold)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        small = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
        return [[Face(box=f.box / s, score=f.score, kps=f.kps / s) for f in faces]
                for faces in self.detector.detect(small, threshold)]


class FaceSwap(_Timed):
    name = "faceswap"
    needs_sources = True

    def __init__(self, ctx: WorkerContext, detector: str = "mtcnn", swapper: str = "classic",
                 enhance: str | None = None, enhance_blend: float = 0.8, select: str = "many",
                 order: str = "largest", distance: float = 0.6, det_threshold: float | None = None,
                 det_size: int = 640, min_face: int = 20, blend: str = "feather",
                 mask_blur: float = 0.12, mask_padding: float = 0.0,
                 providers: list[str] | None = None, mapping: int = 0, **_ignored):
        super().__init__()
        self._per_frame: dict[str, list[int]] = {}
        if blend not in ("feather", "poisson"):
            raise FFrayError(f"unknown blend {blend!r}; choose feather or poisson")
        if select not in ("many", "one", "reference"):
            raise FFrayError(f"unknown --select {select!r}; choose many, one or reference")
        order_faces([], order)
        device = int(ctx.gpu_ids[0]) if ctx.gpu_ids and str(ctx.gpu_ids[0]).isdigit() else 0
        self.providers = choose_providers(providers, device_id=device)
        self.models = dict(ctx.models)
        self.detector = self._detector(detector, det_size, min_face)
        self.threshold, self.select, self.order, self.distance = det_threshold, select, order, distance
        self.opts = BlendOptions(blur=mask_blur, padding=mask_padding, mode=blend)
        needs_ids = select == "reference" or mapping > 0 or swapper == "inswapper"
        self.recognizer = ArcFace(self._session("arcface")) if needs_ids else None
        named = dict(ctx.named)
        if not ctx.sources:
            raise FFrayError("the faceswap processor needs a source face: -s FACE")
        srcs = [decode_image(s, f"source image {i + 1}") for i, s in enumerate(ctx.sources)]
        src_faces = [largest_face(self.detector, img, f"source image {i + 1}")
                     for i, img in enumerate(srcs)]
        self.swapper_name = swapper
        if swapper == "inswapper":
            data = self.models.get("inswapper_128")
            if data is None:
                raise FFrayError("the inswapper swapper needs inswapper_128: run `ffray models "
                                 "fetch inswapper_128` or pass --model-dir")
            self.inswapper = InSwapper(self._session("inswapper"), read_emap(data))
            self.mask = face_mask(InSwapper.size, opts=self.opts,
                                  pts=insightface_template(InSwapper.size))
        elif swapper != "classic":
            raise FFrayError(f"unknown swapper {swapper!r}; choose classic or inswapper")
        # identities: one for every face (plain), or one per mapped target person
        self.targets = None
        if mapping:
            t_imgs = [decode_image(named[f"map_target_{i}"], f"--map target {i + 1}")
                      for i in range(mapping)]
            t_faces = [largest_face(self.detector, im, f"--map target {i + 1}")
                       for i, im in enumerate(t_imgs)]
            self.targets = self.recognizer.embed(list(zip(t_imgs, t_faces)))
            m_srcs = [decode_image(named[f"map_source_{i}"], f"--map source {i + 1}")
                      for i in range(mapping)]
            m_faces = [largest_face(self.detector, im, f"--map source {i + 1}")
                       for i, im in enumerate(m_srcs)]
            self.identities = [self._identity([im], [f]) for im, f in zip(m_srcs, m_faces)]
        else:
            self.identities = [self._identity(srcs, src_faces)]
        self.reference = None
        if select == "reference":
            if "reference" not in named:
                raise FFrayError("--select reference needs --reference IMG or --reference-frame N")
            ref_img = decode_image(named["reference"], "the reference image")
            self.reference = self.recognizer.embed([(ref_img, largest_face(
                self.detector, ref_img, "the reference image"))])[0]
        self.enhancer = GFPGAN(self._session("gfpgan")) if enhance == "gfpgan" else None
        if enhance not in (None, "", "gfpgan"):
            raise FFrayError(f"unknown enhancer {enhance!r}; choose gfpgan")
        self.enhance_blend = float(enhance_blend)
        self.enh_mask = face_mask(GFPGAN.size, opts=self.opts, pts=FFHQ_512 * GFPGAN.size) \
            if self.enhancer else None
        self.pipeline = f"{detector} + {swapper}" + (" + gfpgan" if self.enhancer else "")

    # --- setup helpers
    def _session(self, role: str):
        name = MODEL_FOR[role]
        data = self.models.get(name)
        if data is None:
            raise FFrayError(f"{role} needs the {name} model: run `ffray models fetch {name}` or "
                             "pass --model-dir")
        session = make_session(data, self.providers)
        check_contract(session, get(name))
        return session

    def _detector(self, kind: str, det_size: int, min_face: int):
        if kind == "mtcnn":
            return Downscaled(MTCNN(lambda p: make_session(p, self.providers), min_face=min_face),
                              det_size)
        if kind == "scrfd":
            return SCRFD(self._session("scrfd"), input_size=(det_size, det_size))
        raise FFrayError(f"unknown detector {kind!r}; choose mtcnn or scrfd")

    def _identity(self, imgs: list[np.ndarray], faces: list[Face]):
        if self.swapper_name == "inswapper":
            emb = self.recognizer.embed(list(zip(imgs, faces)))
            return self.inswapper.latent(emb.mean(axis=0))  # mean of the normed embeddings
        return ClassicSwapper(imgs[0], faces[0], self.opts)  # classic: the first image's face

    @staticmethod
    def check_sources(sources: list[bytes], params: dict, names: list[str]) -> None:
        """Driver-side check before any work: every source image decodes and shows a face."""
        cpu = ["CPUExecutionProvider"]
        if params.get("detector") == "scrfd":
            session = make_session(params["model_paths"]["det_10g"], cpu)
            det = SCRFD(session, input_size=(params.get("det_size", 640),) * 2)
        else:
            det = MTCNN(lambda p: make_session(p, cpu), min_face=params.get("min_face", 20))
        for data, name in zip(sources, names):
            largest_face(det, decode_image(data, f"source image {name}"), f"source image {name}")

    # --- per batch
    def _assign(self, frame_faces: list[list[Face]], frames) -> list[list[tuple[Face, int]]]:
        """(face, identity index) to swap in each frame."""
        if self.targets is None and self.reference is None:
            return [[(f, 0) for f in select_faces(faces, "one" if self.select == "one" else "many",
                                                  self.order)] for faces in frame_faces]
        t = time.perf_counter()
        items = [(frames[i], f) for i, faces in enumerate(frame_faces) for f in faces]
        embs = self.recognizer.embed(items)
        self.add("embed_s", time.perf_counter() - t)
        out, k = [], 0
        for faces in frame_faces:
            chosen = []
            for f in faces:
                e = embs[k]
                k += 1
                if self.targets is not None:
                    d = 1.0 - self.targets @ e
                    j = int(np.argmin(d))
                    if d[j] < self.distance:
                        chosen.append((f, j))
                elif 1.0 - float(self.reference @ e) < self.distance:
                    chosen.append((f, 0))
            out.append(chosen)
        return out

    def process(self, frames: list[np.ndarray], info: BatchInfo) -> list[np.ndarray]:
        t = time.perf_counter()
        detected = self.detector.detect(frames, self.threshold)
        self.add("detect_s", time.perf_counter() - t)
        assigned = self._assign(detected, frames)
        out = [np.array(f, copy=True) for f in frames]  # object-store arrays are read-only
        todo = [(i, f, j) for i, fs in enumerate(assigned) for f, j in fs]
        t = time.perf_counter()
        if self.swapper_name == "inswapper":
            swapped = self.inswapper.swap([(frames[i], f, self.identities[j]) for i, f, j in todo])
            self.add("swap_s", time.perf_counter() - t)
            t = time.perf_counter()
            for (i, f, _), face in zip(todo, swapped):
                paste_back(out[i], face, self.inswapper.matrix(f), self.mask, self.opts)
            self.add("paste_s", time.perf_counter() - t)
        else:
            for i, f, j in todo:
                self.identities[j].swap(out[i], f)
            self.add("swap_s", time.perf_counter() - t)
        if self.enhancer is not None and todo:
            t = time.perf_counter()
            enhanced = self.enhancer.enhance([(out[i], f) for i, f, _ in todo])
            mask = self.enh_mask * self.enhance_blend
            for (i, f, _), face in zip(todo, enhanced):
                paste_back(out[i], face, self.enhancer.matrix(f), mask, BlendOptions(mode="feather"))
            self.add("enhance_s", time.perf_counter() - t)
        n_det = [len(x) for x in detected]
        n_swap = [len(x) for x in assigned]
        ids = [[sum(1 for _, j in fs if j == k) for k in range(len(self.identities))]
               for fs in assigned]
        self._per_frame.setdefault("faces_by_identity", []).extend(ids)
        self.add("frames", len(frames))
        self.add("faces_detected", sum(n_det))
        self.add("faces_swapped", sum(n_swap))
        self._per_frame.setdefault("faces_detected", []).extend(n_det)
        self._per_frame.setdefault("faces_swapped", []).extend(n_swap)
        return out

    def stats(self) -> dict:
        s = super().stats()
        s["per_frame"], self._per_frame = self._per_frame, {}
        return s
