"""SCRFD decoder (insightface det_10g): anchors, strides 8/16/32, scores, boxes, 5 keypoints, NMS.

The image is resized to fit the input size keeping its aspect, padded at the top-left, normalised
as (RGB - 127.5) / 128. Per stride s, anchors sit at (x * s, y * s) for every cell, 2 per cell;
box and keypoint outputs are distances in stride units. Outputs are matched by name (the manifest
contract), not by position. The batch dimension of det_10g is fixed at 1, so frames run one by one;
a model with a dynamic batch dimension gets the whole batch at once.
"""

from __future__ import annotations

import cv2
import numpy as np

from ffray.engine.ops_cpu import fit, host_anchor_hits
from ffray.faces.align import Face
from ffray.faces.mtcnn import nms
from ffray.models.runner import HostRunner, warm

STRIDES = {8: ("448", "451", "454"), 16: ("471", "474", "477"), 32: ("494", "497", "500")}
ANCHORS = 2


PRE_NMS_TOP_K = 1000  # candidates kept (best scores first) before the greedy NMS


def to_image(b: np.ndarray, k: np.ndarray, back) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and keypoints from detector-input pixels to the image: ``back`` is the input's scale
    (image = input / scale) or a 2x3 matrix (a turned view back to stored coordinates; boxes
    become the bounding boxes of their mapped corners)."""
    if np.ndim(back) == 0:
        return b / back, k / back
    m = np.asarray(back, np.float64)
    a, t = m[:, :2].T, m[:, 2]
    k2 = k.astype(np.float64) @ a + t
    xs, ys = b[:, [0, 2, 0, 2]], b[:, [1, 1, 3, 3]]
    corners = np.stack([xs, ys], -1).astype(np.float64) @ a + t  # (N, 4, 2)
    b2 = np.concatenate([corners.min(1), corners.max(1)], 1)
    return b2.astype(np.float32), k2.astype(np.float32)


def finish(rows: np.ndarray, back, nms_thresh: float = 0.4
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate rows (``engine.anchors``: detector-input pixels) -> boxes (N,4), scores (N,),
    keypoints (N,5,2) in image pixels (``back``: see ``to_image``) after NMS, which runs in image
    pixels as insightface's does (its box area counts x2 - x1 + 1, so the scale matters). At most
    ``PRE_NMS_TOP_K`` candidates enter NMS: a badly calibrated model (or a contract model with
    random weights) can pass tens of thousands of anchors, and greedy NMS is quadratic."""
    if len(rows) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
    sc, b, k = rows[:, 0], rows[:, 1:5], rows[:, 5:].reshape(-1, 5, 2)
    b, k = to_image(b, k, back)
    if len(sc) > PRE_NMS_TOP_K:
        top = np.argpartition(-sc, PRE_NMS_TOP_K)[:PRE_NMS_TOP_K]
        b, sc, k = b[top], sc[top], k[top]
    keep = nms(b, sc, nms_thresh)
    return b[keep].astype(np.float32), sc[keep].astype(np.float32), k[keep].astype(np.float32)


def decode(outputs: dict[str, np.ndarray], input_hw: tuple[int, int], threshold: float,
           nms_thresh: float = 0.4, back=1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's named outputs -> faces in image pixels (``finish``)."""
    groups = [[np.asarray(outputs[n[j]])[None] for n in STRIDES.values()] for j in range(3)]
    rows = host_anchor_hits(*groups, input_hw, list(STRIDES), ANCHORS, threshold)[0]
    return finish(rows, back, nms_thresh)


class SCRFD:
    """det_10g on still images (``detect``) or on worker frames through a frame backend
    (``detect_frames``); ``model`` is an ORT session or a runner (``ffray.models.runner``)."""

    name = "scrfd"

    def __init__(self, model, input_size: tuple[int, int] = (640, 640), threshold: float = 0.5,
                 nms_thresh: float = 0.4):
        self.runner = model if hasattr(model, "run") and hasattr(model, "input_names") else \
            HostRunner(model, flat_outputs=True)
        self.input_name = self.runner.input_names[0]
        self.out_names = self.runner.output_names
        self.input_size = input_size  # (width, height)
        self.threshold, self.nms_thresh = threshold, nms_thresh

    def warm(self) -> None:
        """Capture the calling thread's CUDA graph (GPU graph runners only)."""
        warm(self.runner, {self.input_name: (3, self.input_size[1], self.input_size[0])})

    def _prepare(self, bgr: np.ndarray) -> tuple[np.ndarray, float]:
        iw, ih = self.input_size
        h, w = bgr.shape[:2]
        nw, nh, scale = fit(w, h, iw, ih)
        canvas = np.zeros((ih, iw, 3), np.uint8)
        canvas[:nh, :nw] = cv2.resize(bgr, (nw, nh))
        blob = (canvas[:, :, ::-1].astype(np.float32) - 127.5) / 128.0
        return blob.transpose(2, 0, 1)[None], scale

    def _decode(self, anchor_hits, outs: list, backs: list, thr: float) -> list[list[Face]]:
        """``backs``: per image, the scale (image = input / scale) or a 2x3 matrix from input
        pixels to the frame (a rotated stream's upright view back to stored coordinates). The
        thresholding runs where the outputs are (``anchor_hits``: a frame backend's), NMS on the
        host."""
        named = dict(zip(self.out_names, outs))
        groups = [[named[n[j]] for n in STRIDES.values()] for j in range(3)]
        rows = anchor_hits(*groups, (self.input_size[1], self.input_size[0]), list(STRIDES),
                           ANCHORS, thr)
        results = []
        for r, back in zip(rows, backs):
            b, sc, k = finish(r, back, self.nms_thresh)
            results.append([Face(box=bb, score=float(s), kps=kk) for bb, s, kk in zip(b, sc, k)])
        return results

    def detect(self, frames_bgr: list[np.ndarray], threshold: float | None = None) -> list[list[Face]]:
        """Faces in BGR images (source faces, references)."""
        thr = self.threshold if threshold is None else threshold
        if not frames_bgr:
            return []
        prepared = [self._prepare(f) for f in frames_bgr]
        outs = self.runner.host_run({self.input_name: np.concatenate([b for b, _ in prepared])})
        return self._decode(host_anchor_hits, outs, [s for _, s in prepared], thr)

    def detect_frames(self, ops, frames: list, threshold: float | None = None) -> list[list[Face]]:
        """Faces in worker frames: resize/normalise by the frame backend, outputs back on the host."""
        thr = self.threshold if threshold is None else threshold
        if not frames:
            return []
        blob, backs = ops.det_blob(frames, self.input_size)
        return self._decode(ops.anchor_hits, self.runner.run({self.input_name: blob}), backs, thr)
