"""Paste-back masks in aligned-crop space, as the field builds them, composed by minimum.

- ``box``: FaceFusion's static box mask (``create_static_box_mask``): the whole crop, edges
  zeroed by the padding (top, right, bottom, left, percent of the crop) or by half the blur
  width, whichever is larger, then a Gaussian of sigma blur_width / 4, where blur_width =
  size x 0.5 x blur. Its alpha > 0.5 region is the crop less those margins.
- ``ellipse``: a face-region mask from the template's five points (an ellipse around eyes and
  mouth), padded and feathered the same way: keeps the swap to the inner face.
- an occluder (``--mask-occluder module:attribute``): a callable that gets the target faces'
  aligned BGR crops and returns one mask each in [0, 1] (e.g. an occlusion or face-parsing
  model); its masks join by minimum too, per face.

The defaults (box, blur 0.15, no padding) keep 88 % of the inswapper crop (alpha > 0.5),
more than insightface's own paste-back (~81-84 %); docs/benchmarks.md has every mask's share.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ffray.errors import FFrayError

KINDS = ("box", "ellipse")


@dataclass(frozen=True)
class MaskSpec:
    kinds: tuple[str, ...] = ("box",)
    blur: float = 0.15
    padding: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # top, right, bottom, left %

    def __post_init__(self):
        if not self.kinds or any(k not in KINDS for k in self.kinds):
            raise FFrayError(f"unknown --mask {','.join(self.kinds)!r}; choose from {', '.join(KINDS)} "
                             "(comma-separated, combined by minimum)")
        if not 0.0 <= self.blur <= 1.0:
            raise FFrayError("--mask-blur must be between 0 and 1")
        if len(self.padding) != 4 or any(not 0 <= p < 50 for p in self.padding):
            raise FFrayError("--mask-padding takes 1 or 4 values (top,right,bottom,left) in percent, 0..49")


def parse_padding(text: str | float | Sequence[float]) -> tuple[float, float, float, float]:
    """``5`` or ``5,0,10,0`` (CSS order: top, right, bottom, left) -> four percentages."""
    if isinstance(text, (int, float)):
        vals = [float(text)]
    elif isinstance(text, str):
        try:
            vals = [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise FFrayError(f"--mask-padding wants numbers, got {text!r}") from None
    else:
        vals = [float(v) for v in text]
    if len(vals) == 1:
        vals *= 4
    if len(vals) != 4:
        raise FFrayError("--mask-padding takes 1 or 4 values (top,right,bottom,left) in percent")
    return tuple(vals)  # type: ignore[return-value]


def box_mask(size: int, blur: float, padding=(0.0, 0.0, 0.0, 0.0)) -> np.ndarray:
    amount = int(size * 0.5 * blur)
    area = max(amount // 2, 1)
    top, right, bottom, left = padding
    m = np.ones((size, size), np.float32)
    m[:max(area, int(size * top / 100)), :] = 0
    m[size - max(area, int(size * bottom / 100)):, :] = 0
    m[:, :max(area, int(size * left / 100))] = 0
    m[:, size - max(area, int(size * right / 100)):] = 0
    if amount > 0:
        m = cv2.GaussianBlur(m, (0, 0), amount * 0.25)
    return m


def ellipse_mask(size: int, pts: np.ndarray, blur: float, padding=(0.0, 0.0, 0.0, 0.0)) -> np.ndarray:
    """An ellipse around the five points (eyes to a mouth-width below the mouth), each side moved
    in by its padding, feathered like the box."""
    eyes_y, mouth_y, cx = pts[:2, 1].mean(), pts[3:, 1].mean(), pts[:, 0].mean()
    half_w = (pts[1, 0] - pts[0, 0]) * 0.95
    top, right, bottom, left = (size * p / 100 for p in padding)
    y0 = eyes_y - (mouth_y - eyes_y) * 0.5 + top
    y1 = mouth_y + (mouth_y - eyes_y) * 0.5 - bottom
    x0, x1 = cx - half_w + left, cx + half_w - right
    m = np.zeros((size, size), np.float32)
    if x1 > x0 and y1 > y0:
        cv2.ellipse(m, (int(round((x0 + x1) / 2)), int(round((y0 + y1) / 2))),
                    (max(1, int((x1 - x0) / 2)), max(1, int((y1 - y0) / 2))), 0, 0, 360, 1.0, -1)
    amount = int(size * 0.5 * blur)
    if amount > 0:
        m = cv2.GaussianBlur(m, (0, 0), amount * 0.25)
    return m


def static_mask(spec: MaskSpec, size: int, pts: np.ndarray) -> np.ndarray:
    """The spec's masks for a ``size`` crop whose template points are ``pts``, by minimum."""
    masks = [box_mask(size, spec.blur, spec.padding) if k == "box"
             else ellipse_mask(size, pts, spec.blur, spec.padding) for k in spec.kinds]
    return np.minimum.reduce(masks).astype(np.float32)


def coverage(mask: np.ndarray) -> float:
    """The share of the crop the mask keeps (alpha > 0.5)."""
    return float((mask > 0.5).mean())


def load_occluder(path: str):
    """``module:attribute``: a callable (or a class, built once with no arguments) taking a list of
    aligned BGR uint8 crops and returning one mask per crop (values in [0, 1])."""
    mod, sep, attr = path.partition(":")
    if not sep:
        raise FFrayError(f"--mask-occluder wants module:attribute, got {path!r}")
    try:
        obj = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise FFrayError(f"cannot load --mask-occluder {path!r}: {e}") from None
    return obj() if isinstance(obj, type) else obj


def occluded(occluder, crops_bgr: list[np.ndarray], size: int) -> np.ndarray:
    """The occluder's masks for ``crops_bgr``, checked and clipped: (N, size, size) float32."""
    out = np.asarray(occluder(crops_bgr), np.float32)
    if out.shape != (len(crops_bgr), size, size):
        raise FFrayError(f"the mask occluder returned shape {out.shape}, expected "
                         f"{(len(crops_bgr), size, size)}")
    return np.clip(out, 0.0, 1.0)
