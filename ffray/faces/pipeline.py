"""The face-swap processor (``--processor faceswap``): its stages, built once per worker.

``FacePipeline`` loads the models (through a loader: host sessions, or prepared GPU sessions with
IO binding), finds the source faces and identities, and returns the worker's stages: upload ->
detect -> select -> swap -> paste (-> enhance) -> download. ``FaceSwap`` runs the same stages
inline on BGR images, as a frame processor (tests, and code that wants the old interface).

Pipelines: ``scrfd`` + ``inswapper`` (insightface models, found with ``--model-dir`` or fetched with
``ffray models fetch``), and the offline default ``mtcnn`` + ``classic`` (no downloaded weights;
``--classic-warp`` dense: dlib's 68 landmarks and a mesh warp, or 5point: a similarity warp).
Model bytes travel with the actors (through Ray's object store), so nodes need no model files.
"""

from __future__ import annotations

import numpy as np

from ffray.engine.api import BatchInfo, Timed, WorkerContext
from ffray.engine.colour import Matrix
from ffray.engine.frames import Frame, Layout, planes
from ffray.engine.ops_cpu import CpuOps
from ffray.engine.pipeline import ChunkRun, Item, run_inline
from ffray.engine.stages.detect import DetectStage
from ffray.engine.stages.enhance import EnhanceStage
from ffray.engine.stages.paste import PasteStage
from ffray.engine.stages.select import SelectStage
from ffray.engine.stages.swap import ClassicSwapStage, SwapStage
from ffray.engine.stages.transfer import DownloadStage, UploadStage
from ffray.errors import FFrayError
from ffray.faces.align import FFHQ_512, Face, insightface_template, map_face
from ffray.faces.blend import BlendOptions
from ffray.faces.classic import ClassicSwapper
from ffray.faces.dense import DenseSwapper
from ffray.faces.images import decode_image, largest_face
from ffray.faces.landmarks import SIZE as DENSE_SIZE
from ffray.faces.landmarks import Landmarks68, choose_warp, unavailable
from ffray.faces.loader import HostLoader
from ffray.faces.masks import load_occluder, static_mask
from ffray.faces.models import GFPGAN, ArcFace, InSwapper, read_emap
from ffray.faces.mtcnn import MTCNN
from ffray.faces.params import FaceSwapParams
from ffray.faces.scrfd import SCRFD
from ffray.faces.track import Smoothing
from ffray.models.sessions import make_session

MODEL_FOR = {"scrfd": "det_10g", "inswapper": "inswapper_128", "arcface": "w600k_r50",
             "gfpgan": "gfpgan_1.4"}


class Downscaled:
    """MTCNN on frames shrunk so their longer side is at most ``max_side`` (its pyramid cost grows
    with the frame area; faces in HD video are large), results scaled back."""

    def __init__(self, detector: MTCNN, max_side: int):
        self.detector, self.max_side = detector, max_side

    def detect(self, images: list[np.ndarray], threshold: float | None = None) -> list[list[Face]]:
        import cv2

        out = []
        for img in images:
            h, w = img.shape[:2]
            s = min(1.0, self.max_side / max(h, w))
            small = img if s >= 1.0 else cv2.resize(
                img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
            out += [[_scaled(f, s) for f in faces] for faces in self.detector.detect([small], threshold)]
        return out

    def detect_frames(self, ops, frames: list, threshold: float | None = None) -> list[list[Face]]:
        small, back = ops.small_bgr(frames, self.max_side)
        return [[map_face(f, back) for f in faces] for faces in self.detector.detect(small, threshold)]


def _scaled(f: Face, s: float) -> Face:
    return f if s >= 1.0 else Face(box=f.box / s, score=f.score, kps=f.kps / s)


class FacePipeline:
    """Models, identities and stages of one worker's face swap. ``ops``: the frame backend;
    ``loader``: where model runners come from (``HostLoader`` or the GPU loader)."""

    def __init__(self, ctx: WorkerContext, params: FaceSwapParams, ops, loader,
                 gpu_batches: dict[str, int] | None = None, threads: dict[str, int] | None = None,
                 sessions: dict[str, int] | None = None):
        p = params
        self.params, self.ops, self.loader = p, ops, loader
        b = {"det": 1, "swap": 8, "embed": 8, "enhance": 4, **(gpu_batches or {})}
        self.batches = b
        gpu = ops.name == "gpu"
        # threads of the model stages; on a GPU each thread runs its own session of the model
        self.threads = {"det": 2 if gpu else 1, "swap": 2 if gpu else 1, "enhance": 2 if gpu else 1,
                        **(threads or {})}
        t = {**self.threads, **(sessions or {})}  # sessions per model (default: one per thread)
        detector = "mtcnn" if p.detector == "auto" else p.detector
        swapper = "classic" if p.swapper == "auto" else p.swapper
        self.opts = BlendOptions(blur=p.mask_blur, padding=0.0, mode=p.blend)  # the classic swapper's
        self.occluder = load_occluder(p.mask_occluder) if p.mask_occluder else None
        if detector == "mtcnn":
            self.detector = Downscaled(MTCNN(lambda path: loader.session(path), min_face=p.min_face),
                                       p.det_size)
        else:
            self.detector = SCRFD(loader.runner("det_10g", flat_outputs=True, batch=b["det"],
                                                sessions=t["det"]),
                                  input_size=(p.det_size, p.det_size))
        needs_ids = p.select == "reference" or p.mapping > 0 or swapper == "inswapper"
        self.recognizer = ArcFace(loader.runner("w600k_r50", batch=b["embed"])) if needs_ids else None
        if not ctx.sources:
            raise FFrayError("the faceswap processor needs a source face: -s FACE")
        srcs = [decode_image(s, f"source image {i + 1}") for i, s in enumerate(ctx.sources)]
        src_faces = [largest_face(self.detector, img, f"source image {i + 1}") for i, img in enumerate(srcs)]
        self.swapper_name = swapper
        self.landmarks = None
        if swapper == "classic":
            self.warp, _ = choose_warp(p.classic_warp, unavailable())
            self.landmarks = Landmarks68() if self.warp == "dense" else None
        if swapper == "inswapper":
            self.inswapper = InSwapper(loader.runner("inswapper_128", batch=b["swap"], sessions=t["swap"]),
                                       loader.derived("inswapper_128", "emap", read_emap))
        named = dict(ctx.named)
        self.targets = None
        if p.mapping:
            t_imgs, t_faces = self._role_faces(named, "map_target", "--map target", p.mapping)
            self.targets = self.recognizer.embed(list(zip(t_imgs, t_faces)))
            m_srcs, m_faces = self._role_faces(named, "map_source", "--map source", p.mapping)
            self.identities = [self._identity([im], [f]) for im, f in zip(m_srcs, m_faces)]
        else:
            self.identities = [self._identity(srcs, src_faces)]
        self.reference = None
        if p.select == "reference":
            if "reference" not in named:
                raise FFrayError("--select reference needs --reference IMG or --reference-frame N")
            ref_img = decode_image(named["reference"], "the reference image")
            self.reference = self.recognizer.embed(
                [(ref_img, largest_face(self.detector, ref_img, "the reference image"))])[0]
        self.enhancer = None
        if p.enhance == "gfpgan":
            self.enhancer = GFPGAN(loader.runner("gfpgan_1.4", batch=b["enhance"], sessions=t["enhance"]))
        self.description = f"{detector} + {swapper}" + (f" ({self.warp})" if swapper == "classic" else "") \
            + (" + gfpgan" if self.enhancer else "")

    def _role_faces(self, named: dict, role: str, what: str, n: int):
        imgs = [decode_image(named[f"{role}_{i}"], f"{what} {i + 1}") for i in range(n)]
        return imgs, [largest_face(self.detector, im, f"{what} {i + 1}") for i, im in enumerate(imgs)]

    def _identity(self, imgs: list[np.ndarray], faces: list[Face]):
        if self.swapper_name == "inswapper":
            emb = self.recognizer.embed(list(zip(imgs, faces)))
            return self.inswapper.latent(emb.mean(axis=0))  # mean of the normed embeddings
        if self.landmarks is not None:  # classic, dense: the first image's face
            return DenseSwapper(imgs[0], faces[0], self.landmarks, poisson=self.params.blend == "poisson")
        return ClassicSwapper(imgs[0], faces[0], self.opts)  # classic: the first image's face

    def stages(self, upload_threads: int = 1, host_threads: int = 1, fps: float = 30.0) -> list:
        """The stages in order. ``host_threads``: threads of stages that work on the host; ``fps``:
        the stream's nominal rate (face tracks' filters run on frame number / fps)."""
        ops, b = self.ops, self.batches
        gpu = ops.name == "gpu"
        pt = 2 if gpu else host_threads  # paste: two threads never share a frame (items differ)
        poisson = self.params.blend == "poisson"  # the engine keeps such jobs on host frames
        out = [UploadStage(ops, threads=upload_threads, batch=4),
               DetectStage(self.detector, ops, self.params.det_threshold, batch=max(1, b["det"]),
                           threads=self.threads["det"])]
        p = self.params
        tracking = Smoothing(min_cutoff=p.smooth_cutoff, beta=p.smooth_beta) if p.track else None
        sel = SelectStage(p.select, p.order, ops, self.recognizer, self.targets, self.reference,
                          p.distance, batch=8, tracking=tracking, fps=fps)
        if sel.needs_embeddings:
            sel.name = "embed"
        out.append(sel)
        if self.swapper_name == "inswapper":
            out.append(SwapStage(self.inswapper, self.identities, ops, batch=8, threads=self.threads["swap"],
                                 occluder=self.occluder))
            mask = static_mask(self.params.mask_spec(), InSwapper.size, insightface_template(InSwapper.size))
            out.append(PasteStage(ops, self.inswapper.matrix, mask, InSwapper.out_scale,
                                  InSwapper.out_offset, batch=8, threads=pt, poisson=poisson))
        elif self.landmarks is not None:  # dense: per-face masks; Poisson (if asked) in the crop
            out.append(ClassicSwapStage(self.identities, ops, batch=4, threads=pt, landmarks=self.landmarks))
            out.append(PasteStage(ops, DenseSwapper.matrix, np.ones((DENSE_SIZE,) * 2, np.float32), 255.0,
                                  0.0, batch=8, threads=pt))
        else:
            out.append(ClassicSwapStage(self.identities, ops, batch=4, threads=pt))
            out.append(PasteStage(ops, ClassicSwapper.matrix, self.identities[0].mask, 255.0, 0.0,
                                  batch=8, threads=pt, poisson=poisson))
        if self.enhancer is not None:
            mask = static_mask(self.params.mask_spec(), GFPGAN.size, FFHQ_512 * GFPGAN.size)
            out.append(EnhanceStage(self.enhancer, ops, mask, self.params.enhance_blend, batch=4,
                                    threads=self.threads["enhance"], occluder=self.occluder))
        out.append(DownloadStage(ops, threads=upload_threads, batch=4))
        return out


class FaceSwap(Timed):
    """The face swap as a frame processor on BGR images, built on the same stages (host frames,
    lossless: the planes hold B, G, R as they are)."""

    name = "faceswap"
    needs_sources = True

    def __init__(self, ctx: WorkerContext, **params):
        super().__init__()
        self.params = FaceSwapParams.from_dict(params)
        self._loader = HostLoader(ctx.models, self.params.providers)
        self._ctx = ctx
        self._ops: dict[tuple[int, int], tuple] = {}
        self._per_frame: dict[str, list] = {}

    @staticmethod
    def check_params(params: dict) -> None:
        FaceSwapParams.from_dict(params)

    def _pipeline(self, w: int, h: int):
        if (w, h) not in self._ops:
            lay = Layout(w, h, "yuv444p", 1, 1, "bgr24")
            ops = CpuOps(lay, Matrix.identity())
            pipe = FacePipeline(self._ctx, self.params, ops, self._loader)
            self._ops[(w, h)] = (lay, ops, pipe, pipe.stages())
        return self._ops[(w, h)]

    def process(self, frames: list[np.ndarray], info: BatchInfo) -> list[np.ndarray]:
        if not frames:
            return []
        h, w = frames[0].shape[:2]
        lay, ops, pipe, stages = self._pipeline(w, h)
        run = ChunkRun(info.chunk, len(frames), len(frames))
        items = []
        for i, img in enumerate(frames):
            buf = np.empty(lay.nbytes, np.uint8)
            y, u, v = planes(buf, lay)
            y[...], u[...], v[...] = img[:, :, 1], img[:, :, 0], img[:, :, 2]
            items.append(Item(run=run, seq=i, number=info.frame_numbers[i], pts=info.pts[i],
                              frame=Frame(decoded=None, host=buf)))
        run_inline(stages, items)
        out = []
        for it in items:
            y, u, v = planes(it.frame.host, lay)
            out.append(np.dstack([u, y, v]))
        for name, s in run.stage_s.items():
            self.add(f"{name}_s", s)
        self.add("frames", len(frames))
        self.add("faces_detected", sum(len(it.faces) for it in items))
        self.add("faces_swapped", sum(len(it.targets) for it in items))
        self._per_frame.setdefault("faces_detected", []).extend(len(it.faces) for it in items)
        self._per_frame.setdefault("faces_swapped", []).extend(len(it.targets) for it in items)
        return out

    def stats(self) -> dict:
        s = super().stats()
        s["per_frame"], self._per_frame = self._per_frame, {}
        return s

    @staticmethod
    def check_sources(sources: list[bytes], params: dict, names: list[str]) -> None:
        """Driver-side check before any work: every source image decodes and shows a face."""
        p = FaceSwapParams.from_dict(params)
        cpu = ["CPUExecutionProvider"]
        if p.detector == "scrfd":
            det = SCRFD(make_session(p.model_paths["det_10g"], cpu), input_size=(p.det_size,) * 2)
        else:
            det = MTCNN(lambda path: make_session(path, cpu), min_face=p.min_face)
        for data, name in zip(sources, names):
            largest_face(det, decode_image(data, f"source image {name}"), f"source image {name}")
