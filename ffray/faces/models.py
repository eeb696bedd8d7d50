"""Learned face models around runners: ArcFace embeddings, inswapper_128, GFPGAN 1.4.

Each takes an ORT session (wrapped in a ``HostRunner``) or a runner from ``ffray.models``. Methods
on plain BGR images serve source and reference photos; the ``*_frames`` methods take worker
frames and a frame backend (``ffray.engine.ops_cpu`` / ``ops_gpu``), whose crops stay on its
device (host or GPU) until the model has run.
"""

from __future__ import annotations

import numpy as np

from ffray.faces.align import FFHQ_512, Face, crop, face_matrices, insightface_template, similarity
from ffray.models.runner import HostRunner, warm


def normed(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _nchw(crops_bgr: list[np.ndarray], mean: float, std: float) -> np.ndarray:
    x = np.stack(crops_bgr)[..., ::-1].astype(np.float32)
    return ((x - mean) / std).transpose(0, 3, 1, 2)


def as_runner(model, **kw):
    return model if hasattr(model, "run") and hasattr(model, "input_names") else HostRunner(model, **kw)


class ArcFace:
    """w600k_r50: 5-point aligned 112x112 RGB crops, (x - 127.5) / 127.5 -> 512-d, L2-normalised."""

    size = 112

    def __init__(self, model):
        self.runner = as_runner(model)
        self.input_name = self.runner.input_names[0]

    def matrix(self, face: Face) -> np.ndarray:
        return similarity(face.kps, insightface_template(self.size))

    def warm(self) -> None:
        warm(self.runner, {self.input_name: (3, self.size, self.size)})

    def embed(self, items: list[tuple[np.ndarray, Face]]) -> np.ndarray:
        if not items:
            return np.zeros((0, 512), np.float32)
        crops = [crop(img, self.matrix(f), self.size) for img, f in items]
        return normed(self.runner.host_run({self.input_name: _nchw(crops, 127.5, 127.5)})[0])

    def embed_frames(self, ops, frames: list, faces: list[Face]) -> np.ndarray:
        if not faces:
            return np.zeros((0, 512), np.float32)
        x = ops.crops(frames, [self.matrix(f) for f in faces], self.size, 127.5, 127.5)
        return normed(ops.host(self.runner.run({self.input_name: x})[0]))


def read_emap(model: str | bytes) -> np.ndarray:
    """inswapper's emap: the graph's last initializer (512x512); ``model`` is a path or bytes.
    (onnx imported here: ~0.6 s that a worker whose emap is cached never spends.)"""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(model) if isinstance(model, bytes) else \
        onnx.load(model, load_external_data=False)
    emap = numpy_helper.to_array(model.graph.initializer[-1]).astype(np.float32)
    if emap.shape != (512, 512):
        raise ValueError(f"last initializer has shape {emap.shape}, expected the 512x512 emap")
    return emap


class InSwapper:
    """inswapper_128: target = aligned 128 crop, RGB in [0, 1]; source = latent
    (normed identity @ emap, re-normed); output RGB in [0, 1]."""

    size = 128
    out_scale, out_offset = 255.0, 0.0  # output -> RGB 0..255

    def __init__(self, model, emap: np.ndarray):
        self.runner = as_runner(model)
        self.emap = emap
        names = set(self.runner.input_names)
        if names != {"target", "source"}:
            raise ValueError(f"inswapper inputs are {sorted(names)}, expected source and target")

    def warm(self) -> None:
        warm(self.runner, {"target": (3, self.size, self.size), "source": (self.emap.shape[1],)})

    def latent(self, identity: np.ndarray) -> np.ndarray:
        """identity: a (mean of) normed embedding(s); returns the (1, 512) latent."""
        return normed(np.asarray(identity, np.float32).reshape(1, -1) @ self.emap)

    def matrix(self, face: Face) -> np.ndarray:
        return similarity(face.kps, insightface_template(self.size))

    def matrices(self, faces: list[Face]) -> list[np.ndarray]:
        """``matrix`` of each face, in one batched call (the same bits)."""
        return face_matrices(faces, insightface_template(self.size))

    def swap(self, items: list[tuple[np.ndarray, Face, np.ndarray]]) -> list[np.ndarray]:
        """(image, face, latent) -> swapped aligned 128x128 BGR uint8 faces."""
        if not items:
            return []
        crops = [crop(img, self.matrix(f), self.size) for img, f, _ in items]
        source = np.concatenate([lat.reshape(1, -1) for _, _, lat in items]).astype(np.float32)
        out = self.runner.host_run({"target": _nchw(crops, 0.0, 255.0), "source": source})[0]
        rgb = np.clip(out.transpose(0, 2, 3, 1) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return [np.ascontiguousarray(x[..., ::-1]) for x in rgb]

    def swap_frames(self, ops, frames: list, mats: list[np.ndarray], latents: np.ndarray):
        """Swapped crops (N, 3, 128, 128) RGB in [0, 1], on the backend's device."""
        target = ops.crops(frames, mats, self.size, 0.0, 255.0)
        source = ops.to_device(np.ascontiguousarray(latents, np.float32).reshape(len(mats), -1))
        return self.runner.run({"target": target, "source": source})[0]


class GFPGAN:
    """GFPGAN 1.4 on FFHQ-aligned 512 crops, RGB in [-1, 1]."""

    size = 512
    out_scale, out_offset = 127.5, 127.5

    def __init__(self, model):
        self.runner = as_runner(model)
        self.input_name = self.runner.input_names[0]

    def matrix(self, face: Face) -> np.ndarray:
        return similarity(face.kps, FFHQ_512 * self.size)

    def matrices(self, faces: list[Face]) -> list[np.ndarray]:
        return face_matrices(faces, FFHQ_512 * self.size)

    def warm(self) -> None:
        warm(self.runner, {self.input_name: (3, self.size, self.size)})

    def enhance(self, items: list[tuple[np.ndarray, Face]], group: int = 16) -> list[np.ndarray]:
        """Enhanced 512 crops (BGR uint8), ``group`` faces at a time."""
        out = []
        for g in range(0, len(items), group):
            crops = [crop(img, self.matrix(f), self.size) for img, f in items[g:g + group]]
            y = self.runner.host_run({self.input_name: _nchw(crops, 127.5, 127.5)})[0]
            rgb = np.clip((y.transpose(0, 2, 3, 1) + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)
            out += [np.ascontiguousarray(x[..., ::-1]) for x in rgb]
        return out

    def enhance_frames(self, ops, frames: list, mats: list[np.ndarray]):
        """Enhanced crops (N, 3, 512, 512) RGB in [-1, 1], on the backend's device."""
        x = ops.crops(frames, mats, self.size, 127.5, 127.5)
        return self.runner.run({self.input_name: x})[0]
