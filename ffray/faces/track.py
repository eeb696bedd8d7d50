"""Faces tracked across a chunk's frames, with landmarks smoothed over time (pure, per chunk).

- **Association**: each frame's detections are matched to the previous frame's tracks by box IoU,
  greedily, best pairs first (``MIN_IOU``); an unmatched detection starts a track, a track unseen
  for more than ``MAX_MISSED`` frames ends. Tracks get ids in order of appearance.
- **Smoothing**: a One-Euro filter (Casiez et al., CHI 2012) per track over its box and five
  keypoints: a low cutoff when the face is still (kills detector jitter), rising with speed
  (``beta``) so fast motion does not lag. The filter restarts on large motion (a jump of more
  than ``RESET_SHIFT`` face widths between frames: a cut to a similar shot, a re-detection); a
  jump too large to match (IoU) starts a new track, so a cut never smears one face into another.

Time is frame number / nominal frame rate. Each chunk tracks on its own; the chunk plan gives it
``CONTEXT_FRAMES`` frames from before its start (decoded, detected and tracked, never swapped or
encoded), so smoothing and a ``--select one`` choice have history at the boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ffray.faces.align import Face

CONTEXT_FRAMES = 8  # frames before each chunk decoded and tracked (not swapped, not encoded)
MIN_IOU = 0.3
MAX_MISSED = 2
RESET_SHIFT = 0.25  # centre jump in one frame, in face widths, that restarts a track's filter


@dataclass(frozen=True)
class Smoothing:
    """One-Euro parameters: ``min_cutoff`` (Hz) at rest, ``beta`` speed coefficient (per face
    size per second), ``d_cutoff`` (Hz) for the speed estimate. ``min_cutoff <= 0`` disables."""

    min_cutoff: float = 1.5
    beta: float = 0.5
    d_cutoff: float = 1.0

    @property
    def enabled(self) -> bool:
        return self.min_cutoff > 0


def _alpha(cutoff: float, dt: float) -> float:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuro:
    """The One-Euro filter over a vector; speeds are measured in units of ``scale`` per second
    (the face size), so one ``beta`` suits small and large faces."""

    def __init__(self, p: Smoothing):
        self.p = p
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None
        self.t: float | None = None

    def reset(self) -> None:
        self.x = self.dx = self.t = None

    def __call__(self, x: np.ndarray, t: float, scale: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.x is None or self.t is None or t <= self.t:
            self.x, self.dx, self.t = x, np.zeros_like(x), t
            return x
        dt = t - self.t
        dx = (x - self.x) / dt
        a_d = _alpha(self.p.d_cutoff, dt)
        self.dx = a_d * dx + (1 - a_d) * self.dx
        speed = float(np.abs(self.dx).max()) / max(scale, 1e-6)
        a = _alpha(self.p.min_cutoff + self.p.beta * speed, dt)
        self.x = a * x + (1 - a) * self.x
        self.t = t
        return self.x


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4): (N, M)."""
    a, b = np.asarray(a, np.float64)[:, None], np.asarray(b, np.float64)[None]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _size(box: np.ndarray) -> float:
    return float(math.hypot(box[2] - box[0], box[3] - box[1]))


@dataclass
class Track:
    id: int
    face: Face  # the latest detection (raw)
    filt: OneEuro
    missed: int = 0


class Tracker:
    """Tracks of one chunk. ``update(faces, t)`` returns, per input face, its track id and its
    smoothed face (same order as ``faces``)."""

    def __init__(self, smoothing: Smoothing | None = None):
        self.p = smoothing or Smoothing()
        self.tracks: list[Track] = []
        self._next = 0

    def _match(self, faces: list[Face]) -> dict[int, Track]:
        if not faces or not self.tracks:
            return {}
        m = iou_matrix(np.array([f.box for f in faces]), np.array([tr.face.box for tr in self.tracks]))
        fi, ti = np.nonzero(m >= MIN_IOU)
        order = np.lexsort((ti, fi, -m[fi, ti]))  # best pairs first, ties by position
        used_f, used_t, out = set(), set(), {}
        for i, k in zip(fi[order].tolist(), ti[order].tolist()):
            if i in used_f or k in used_t:
                continue
            used_f.add(i)
            used_t.add(k)
            out[i] = self.tracks[k]
        return out

    def update(self, faces: list[Face], t: float) -> list[tuple[int, Face]]:
        matched = self._match(faces)
        seen, out = set(), []
        for i, f in enumerate(faces):
            tr = matched.get(i)
            if tr is None:
                tr = Track(self._next, f, OneEuro(self.p))
                self._next += 1
                self.tracks.append(tr)
            else:
                c0 = (tr.face.box[:2] + tr.face.box[2:]) / 2
                c1 = (f.box[:2] + f.box[2:]) / 2
                if float(np.hypot(*(c1 - c0))) > RESET_SHIFT * float(tr.face.box[2] - tr.face.box[0]):
                    tr.filt.reset()
            tr.face, tr.missed = f, 0
            seen.add(tr.id)
            out.append((tr.id, self._smooth(tr, f, t)))
        for tr in self.tracks:
            if tr.id not in seen:
                tr.missed += 1
        self.tracks = [tr for tr in self.tracks if tr.missed <= MAX_MISSED]
        return out

    def _smooth(self, tr: Track, f: Face, t: float) -> Face:
        if not self.p.enabled:
            return f
        v = np.concatenate([f.box.astype(np.float64), f.kps.astype(np.float64).ravel()])
        s = tr.filt(v, t, _size(f.box))
        return Face(box=s[:4].astype(np.float32), score=f.score, kps=s[4:].reshape(5, 2).astype(np.float32),
                    embedding=f.embedding)


def jitter(points: list[np.ndarray]) -> float:
    """Mean frame-to-frame second difference of a landmark series ((T, ...) coordinates), in
    pixels: 0 for still or uniformly moving points, large for shaking ones."""
    p = np.asarray(points, np.float64)
    if len(p) < 3:
        return 0.0
    d2 = p[2:] - 2 * p[1:-1] + p[:-2]
    return float(np.linalg.norm(d2.reshape(len(d2), -1, 2), axis=-1).mean())
