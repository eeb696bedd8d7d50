"""The face-swap frame processor (``--processor faceswap``): detect, select, swap, paste back.

Offline default: MTCNN detection + the classic swapper (no downloaded weights needed).
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from ffray.errors import FFrayError
from ffray.faces.align import Face
from ffray.faces.blend import BlendOptions
from ffray.faces.classic import ClassicSwapper
from ffray.faces.mtcnn import MTCNN
from ffray.faces.select import select_faces
from ffray.models.sessions import choose_providers, make_session
from ffray.processors import BatchInfo, WorkerContext, _Timed


def largest_face(detector, img: np.ndarray, what: str) -> Face:
    faces = detector.detect([img])[0]
    if not faces:
        raise FFrayError(f"no face found in {what}")
    return max(faces, key=lambda f: f.area)


def decode_image(data: bytes, what: str) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise FFrayError(f"{what} is not a readable image")
    return img


class FaceSwap(_Timed):
    name = "faceswap"
    needs_sources = True

    def __init__(self, ctx: WorkerContext, detector: str = "mtcnn", swapper: str = "classic",
                 select: str = "many", order: str = "largest", det_threshold: float | None = None,
                 min_face: int = 20, blend: str = "feather", mask_blur: float = 0.12,
                 mask_padding: float = 0.0, providers: list[str] | None = None):
        super().__init__()
        self._per_frame: dict[str, list[int]] = {}
        if detector != "mtcnn":
            raise FFrayError(f"unknown detector {detector!r} (available: mtcnn)")
        if swapper != "classic":
            raise FFrayError(f"unknown swapper {swapper!r} (available: classic)")
        if blend not in ("feather", "poisson"):
            raise FFrayError(f"unknown blend {blend!r}; choose feather or poisson")
        device = int(ctx.gpu_ids[0]) if ctx.gpu_ids and str(ctx.gpu_ids[0]).isdigit() else 0
        prov = choose_providers(providers, device_id=device)
        self.detector = MTCNN(lambda p: make_session(p, prov), min_face=min_face)
        self.threshold = det_threshold
        self.select, self.order = select, order
        select_faces([], select, order)  # validates the options
        opts = BlendOptions(blur=mask_blur, padding=mask_padding, mode=blend)
        if not ctx.sources:
            raise FFrayError("the faceswap processor needs a source face: -s FACE")
        imgs = [decode_image(s, f"source image {i + 1}") for i, s in enumerate(ctx.sources)]
        faces = [largest_face(self.detector, img, f"source image {i + 1}") for i, img in enumerate(imgs)]
        # classic has no identity model: it uses the first source image's face
        self.swapper = ClassicSwapper(imgs[0], faces[0], opts)
        self.pipeline = f"{detector} + {swapper}"

    @staticmethod
    def check_sources(sources: list[bytes], params: dict, names: list[str]) -> None:
        """Driver-side check before any work: every source image decodes and shows a face."""
        det = MTCNN(lambda p: make_session(p, ["CPUExecutionProvider"]),
                    min_face=params.get("min_face", 20))
        for data, name in zip(sources, names):
            largest_face(det, decode_image(data, f"source image {name}"), f"source image {name}")

    def process(self, frames: list[np.ndarray], info: BatchInfo) -> list[np.ndarray]:
        t = time.perf_counter()
        detected = self.detector.detect(frames, self.threshold)
        self.add("detect_s", time.perf_counter() - t)
        out, n_det, n_swap = [], [], []
        for frame, faces in zip(frames, detected):
            chosen = select_faces(faces, self.select, self.order)
            img = np.array(frame, copy=True)  # object-store arrays are read-only
            t = time.perf_counter()
            for f in chosen:
                self.swapper.swap(img, f)
            self.add("swap_s", time.perf_counter() - t)
            out.append(img)
            n_det.append(len(faces))
            n_swap.append(len(chosen))
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
