"""Faces, 5-point similarity alignment and region-only warps (pure numpy/OpenCV)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# insightface's ArcFace 112x112 template: left eye, right eye, nose tip, mouth left, mouth right.
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)


@dataclass(frozen=True)
class Face:
    """A detected face: box (x1, y1, x2, y2), score, and 5 keypoints in the order above."""

    box: np.ndarray  # float32 (4,)
    score: float
    kps: np.ndarray  # float32 (5, 2)
    embedding: np.ndarray | None = None  # L2-normalised, when a recognizer ran

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


def map_face(face: Face, m: np.ndarray) -> Face:
    """A face moved by a 2x3 affine (e.g. from a detector's view back to the stored frame): its
    points mapped, its box the bounding box of the mapped corners."""
    m = np.asarray(m, np.float64)
    kps = face.kps.astype(np.float64) @ m[:, :2].T + m[:, 2]
    x0, y0, x1, y1 = face.box.astype(np.float64)
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]) @ m[:, :2].T + m[:, 2]
    box = np.concatenate([corners.min(0), corners.max(0)])
    return Face(box=box.astype(np.float32), score=face.score, kps=kps.astype(np.float32),
                embedding=face.embedding)


def template(size: int, scale: float = 1.0) -> np.ndarray:
    """The ArcFace template for a ``size`` crop; ``scale`` < 1 zooms out (more context)."""
    pts = ARCFACE_112 * (size / 112.0)
    c = np.array([size / 2, size / 2], np.float32)
    return (pts - c) * scale + c


def insightface_template(size: int) -> np.ndarray:
    """insightface's ``estimate_norm`` template: 112-multiples scale the ArcFace points, 128-multiples
    scale them by size/128 and shift right by 8 * size/128 (inswapper's 128 crop)."""
    if size % 112 == 0:
        return ARCFACE_112 * (size / 112.0)
    ratio = size / 128.0
    return ARCFACE_112 * ratio + np.array([8.0 * ratio, 0.0], np.float32)


# FFHQ 5-point template used for GFPGAN's 512 crops (fractions of the crop size).
FFHQ_512 = np.array([[0.37691676, 0.46864664], [0.62285697, 0.46912813], [0.50123859, 0.61331904],
                     [0.39308822, 0.72541100], [0.61150205, 0.72490465]], np.float32)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (Umeyama) mapping ``src`` points onto ``dst``; 2x3."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    r = u @ sign @ vt
    var = (s ** 2).sum() / len(src)
    scale = (sig * np.diag(sign)).sum() / var
    t = mu_d - scale * r @ mu_s
    return np.hstack([scale * r, t[:, None]]).astype(np.float32)


def similarity_many(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``similarity`` for a stack of point sets at once: ``src`` (N, K, 2) onto one ``dst``
    (K, 2) -> (N, 2, 3). The same operations, batched (stacked SVDs and determinants), so each
    matrix has the bits ``similarity`` gives it; one call instead of N for a batch of faces."""
    src = np.asarray(src, np.float64).reshape(-1, *np.shape(dst))
    dst = np.asarray(dst, np.float64)
    n, k = src.shape[0], src.shape[1]
    if n == 0:
        return np.zeros((0, 2, 3), np.float32)
    mu_s, mu_d = src.mean(1), dst.mean(0)
    s, d = src - mu_s[:, None], dst - mu_d
    cov = np.matmul(d.T[None], s) / k
    u, sig, vt = np.linalg.svd(cov)
    flip = np.linalg.det(u) * np.linalg.det(vt) < 0
    sign = np.tile(np.eye(2), (n, 1, 1))
    sign[flip, 1, 1] = -1
    r = u @ sign @ vt
    var = (s ** 2).sum(axis=(1, 2)) / k
    scale = (sig * np.diagonal(sign, axis1=1, axis2=2)).sum(1) / var
    sr = scale[:, None, None] * r
    t = mu_d - np.matmul(sr, mu_s[:, :, None])[:, :, 0]
    return np.concatenate([sr, t[:, :, None]], axis=2).astype(np.float32)


def face_matrices(faces: list[Face], dst: np.ndarray) -> list[np.ndarray]:
    """Each face's ``similarity`` matrix onto ``dst`` (its keypoints), in one batched call."""
    return list(similarity_many(np.stack([f.kps for f in faces]), dst)) if faces else []


def align_matrix(kps: np.ndarray, size: int, scale: float = 1.0) -> np.ndarray:
    """2x3 matrix taking frame coordinates to the aligned ``size`` crop."""
    return similarity(kps, template(size, scale))


def crop(img: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def roi_of(m_inv: np.ndarray, size: int, shape: tuple[int, int], pad: int = 2) -> tuple[int, int, int, int]:
    """Frame region (x0, y0, x1, y1) covered by an aligned ``size`` crop mapped back by ``m_inv``."""
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float32)
    pts = corners @ m_inv.T
    h, w = shape
    x0 = int(max(0, np.floor(pts[:, 0].min()) - pad))
    y0 = int(max(0, np.floor(pts[:, 1].min()) - pad))
    x1 = int(min(w, np.ceil(pts[:, 0].max()) + pad))
    y1 = int(min(h, np.ceil(pts[:, 1].max()) + pad))
    return x0, y0, x1, y1


def warp_into_roi(aligned: np.ndarray, m_inv: np.ndarray, roi: tuple[int, int, int, int],
                  interp: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Warp an aligned crop back into the frame region ``roi`` only (never a whole-frame warp)."""
    x0, y0, x1, y1 = roi
    shifted = m_inv.copy()
    shifted[:, 2] -= (x0, y0)
    return cv2.warpAffine(aligned, shifted, (x1 - x0, y1 - y0), flags=interp,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
