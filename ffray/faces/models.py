"""Learned face models around ORT sessions: ArcFace embeddings, inswapper_128, GFPGAN 1.4."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from ffray.faces.align import FFHQ_512, Face, crop, insightface_template, similarity


def normed(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _nchw(crops_bgr: list[np.ndarray], mean: float, std: float) -> np.ndarray:
    x = np.stack(crops_bgr)[..., ::-1].astype(np.float32)
    return ((x - mean) / std).transpose(0, 3, 1, 2)


def _run_batched(session, feeds: dict[str, np.ndarray], batched: bool,
                 max_batch: int = 16) -> np.ndarray:
    """Run in batches of up to ``max_batch`` when the model's batch dimension is dynamic, else
    one item per call (det_10g and inswapper_128 have batch 1 fixed in their graphs)."""
    n = len(next(iter(feeds.values())))
    step = max_batch if batched else 1
    return np.concatenate([session.run(None, {k: v[i:i + step] for k, v in feeds.items()})[0]
                           for i in range(0, n, step)])


def _dynamic_batch(session) -> bool:
    return all(not isinstance(i.shape[0], int) for i in session.get_inputs())


class ArcFace:
    """w600k_r50: 5-point aligned 112x112 RGB crops, (x - 127.5) / 127.5 -> 512-d, L2-normalised."""

    size = 112

    def __init__(self, session):
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.batched = _dynamic_batch(session)

    def embed(self, items: list[tuple[np.ndarray, Face]]) -> np.ndarray:
        if not items:
            return np.zeros((0, 512), np.float32)
        crops = [crop(img, similarity(f.kps, insightface_template(self.size)), self.size)
                 for img, f in items]
        return normed(_run_batched(self.session, {self.input_name: _nchw(crops, 127.5, 127.5)},
                                   self.batched))


def read_emap(model: str | bytes) -> np.ndarray:
    """inswapper's emap: the graph's last initializer (512x512); ``model`` is a path or bytes."""
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

    def __init__(self, session, emap: np.ndarray):
        self.session = session
        self.emap = emap
        self.batched = _dynamic_batch(session)
        names = [i.name for i in session.get_inputs()]
        self.target_name, self.source_name = "target", "source"
        assert set(names) == {"target", "source"}, names

    def latent(self, identity: np.ndarray) -> np.ndarray:
        """identity: a (mean of) normed embedding(s); returns the (1, 512) latent."""
        return normed(np.asarray(identity, np.float32).reshape(1, -1) @ self.emap)

    def matrix(self, face: Face) -> np.ndarray:
        return similarity(face.kps, insightface_template(self.size))

    def swap(self, items: list[tuple[np.ndarray, Face, np.ndarray]]) -> list[np.ndarray]:
        """(frame, face, latent) -> swapped aligned 128x128 BGR faces, batched over all faces."""
        if not items:
            return []
        crops = [crop(img, self.matrix(f), self.size) for img, f, _ in items]
        target = _nchw(crops, 0.0, 255.0)
        source = np.concatenate([lat.reshape(1, -1) for _, _, lat in items]).astype(np.float32)
        out = _run_batched(self.session, {self.target_name: target, self.source_name: source},
                           self.batched)
        rgb = np.clip(out.transpose(0, 2, 3, 1) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return [np.ascontiguousarray(x[..., ::-1]) for x in rgb]


class GFPGAN:
    """GFPGAN 1.4 on FFHQ-aligned 512 crops, RGB in [-1, 1]."""

    size = 512

    def __init__(self, session):
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.batched = _dynamic_batch(session)

    def matrix(self, face: Face) -> np.ndarray:
        return similarity(face.kps, FFHQ_512 * self.size)

    def enhance(self, items: list[tuple[np.ndarray, Face]], group: int = 16) -> list[np.ndarray]:
        """Enhanced 512 crops, ``group`` faces at a time (a 512 crop is 3 MB as float32)."""
        out = []
        for g in range(0, len(items), group):
            crops = [crop(img, self.matrix(f), self.size) for img, f in items[g:g + group]]
            y = _run_batched(self.session, {self.input_name: _nchw(crops, 127.5, 127.5)},
                             self.batched)
            rgb = np.clip((y.transpose(0, 2, 3, 1) + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)
            out += [np.ascontiguousarray(x[..., ::-1]) for x in rgb]
        return out
