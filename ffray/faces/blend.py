"""Paste-back: put a face rendered in aligned space back into the frame, inside its region only.

The mask is built in aligned space (an ellipse around the template's face points, padded and
feathered), warped with the face into the frame's region of interest, and used to blend. Pixels
outside that region are never touched, and only the region is warped (never the whole frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ffray.faces.align import roi_of, template, warp_into_roi


@dataclass(frozen=True)
class BlendOptions:
    blur: float = 0.12  # feather width as a share of the crop size
    padding: float = 0.0  # grow (+) or shrink (-) the mask, share of the crop size
    mode: str = "feather"  # feather | poisson


def face_mask(size: int, scale: float = 1.0, opts: BlendOptions = BlendOptions(),
              pts: np.ndarray | None = None) -> np.ndarray:
    """Soft float32 mask in [0, 1] for an aligned ``size`` crop whose five face points are ``pts``
    (default: ``template(size, scale)``)."""
    pts = template(size, scale) if pts is None else pts
    eyes_y = pts[:2, 1].mean()
    mouth_y = pts[3:, 1].mean()
    cx = pts[:, 0].mean()
    half_w = (pts[1, 0] - pts[0, 0]) * (0.95 + opts.padding * 4)
    top = eyes_y - (mouth_y - eyes_y) * (0.5 + opts.padding * 2)
    bottom = mouth_y + (mouth_y - eyes_y) * (0.5 + opts.padding * 2)
    m = np.zeros((size, size), np.float32)
    cv2.ellipse(m, (int(round(cx)), int(round((top + bottom) / 2))),
                (max(1, int(half_w)), max(1, int((bottom - top) / 2))), 0, 0, 360, 1.0, -1)
    k = int(opts.blur * size) | 1
    if k > 1:
        m = cv2.GaussianBlur(m, (k, k), 0)
    return m


def paste_back(frame: np.ndarray, face: np.ndarray, m_align: np.ndarray, mask: np.ndarray,
               opts: BlendOptions = BlendOptions()) -> tuple[int, int, int, int]:
    """Blend aligned ``face`` (size x size BGR) into ``frame`` in place; returns the region used."""
    size = face.shape[0]
    m_inv = cv2.invertAffineTransform(m_align)
    roi = roi_of(m_inv, size, frame.shape[:2])
    x0, y0, x1, y1 = roi
    if x1 <= x0 or y1 <= y0:
        return roi
    warped = warp_into_roi(face, m_inv, roi)
    alpha = warp_into_roi(mask, m_inv, roi)[..., None]
    region = frame[y0:y1, x0:x1]
    if opts.mode == "poisson":
        binary = (alpha[..., 0] > 0.5).astype(np.uint8) * 255
        ys, xs = np.nonzero(binary)
        if len(xs) > 16 and 0 < xs.min() and xs.max() < region.shape[1] - 1 \
                and 0 < ys.min() and ys.max() < region.shape[0] - 1:
            center = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
            cloned = cv2.seamlessClone(warped, np.ascontiguousarray(region), binary, center,
                                       cv2.NORMAL_CLONE)
            region[:] = (alpha * cloned + (1 - alpha) * region).astype(np.uint8)
            return roi
    region[:] = np.clip(alpha * warped + (1 - alpha) * region + 0.5, 0, 255).astype(np.uint8)
    return roi


def match_colour(src: np.ndarray, dst: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Reinhard colour transfer in Lab: give ``src`` the mean/std of ``dst`` inside ``mask``."""
    w = mask > 0.5
    if w.sum() < 16:
        return src
    s = cv2.cvtColor(src, cv2.COLOR_BGR2LAB).astype(np.float32)
    d = cv2.cvtColor(dst, cv2.COLOR_BGR2LAB).astype(np.float32)
    ms, ss = s[w].mean(0), s[w].std(0) + 1e-3
    md, sd = d[w].mean(0), d[w].std(0) + 1e-3
    out = (s - ms) * (sd / ss) + md
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)
