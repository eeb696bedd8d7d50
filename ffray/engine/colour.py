"""YUV <-> RGB arithmetic for the worker's frame operations (pure NumPy; the GPU kernels use the
same coefficients, so CPU and GPU frames agree to rounding).

Frames stay in the source's YUV from decode to encode: only face regions are converted, and a
pixel the mask leaves alone keeps its decoded value exactly. The matrix is the source's declared
one (BT.601/709/2020, SMPTE 240M, FCC); unspecified means BT.709 from 720 lines up, else BT.601
(what players assume). The range is the declared one (``yuvj*`` formats are full range).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ffray.video.probe import Color

# AVColorSpace -> (Kr, Kb)
_K = {1: (0.2126, 0.0722), 4: (0.30, 0.11), 5: (0.299, 0.114), 6: (0.299, 0.114),
      7: (0.212, 0.087), 9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}


@dataclass(frozen=True)
class Matrix:
    kr: float
    kb: float
    full: bool
    rgb: bool = False  # planes hold G, B, R as they are (BGR still images on the host: lossless)

    @classmethod
    def of(cls, color: Color, height: int, pix_fmt: str = "") -> Matrix:
        kr, kb = _K.get(color.space, _K[1] if height >= 720 else _K[5])
        return cls(kr=kr, kb=kb, full=color.range == 2 or pix_fmt.startswith("yuvj"))

    @classmethod
    def identity(cls) -> Matrix:
        return cls(kr=0.0, kb=0.0, full=True, rgb=True)

    @property
    def kg(self) -> float:
        return 1.0 - self.kr - self.kb

    @property
    def y_off(self) -> float:
        return 0.0 if self.full else 16.0

    @property
    def y_scale(self) -> float:  # coded luma step -> RGB step
        return 1.0 if self.full else 255.0 / 219.0

    @property
    def c_scale(self) -> float:
        return 1.0 if self.full else 255.0 / 224.0

    def decode_coeffs(self) -> tuple[float, ...]:
        """(y_off, y_scale, c_scale, rv, gu, gv, bu): R = Y' + rv V', G = Y' - gu U' - gv V',
        B = Y' + bu U', with Y' = (Y - y_off) y_scale, U' = (U - 128) c_scale."""
        kr, kb, kg = self.kr, self.kb, self.kg
        return (self.y_off, self.y_scale, self.c_scale, 2 * (1 - kr), 2 * (1 - kb) * kb / kg,
                2 * (1 - kr) * kr / kg, 2 * (1 - kb))

    def encode_coeffs(self) -> tuple[float, ...]:
        """(kr, kg, kb, y_off, y_scale, c_scale, 2(1-kb), 2(1-kr)) for RGB -> YUV."""
        return (self.kr, self.kg, self.kb, self.y_off, self.y_scale, self.c_scale,
                2 * (1 - self.kb), 2 * (1 - self.kr))


def yuv_to_bgr(y: np.ndarray, u: np.ndarray, v: np.ndarray, m: Matrix) -> np.ndarray:
    """Full-resolution Y, U, V (any numeric dtype, same shape) -> float32 BGR (unclipped)."""
    if m.rgb:
        return np.stack([u, y, v], axis=-1).astype(np.float32)
    yo, ys, cs, rv, gu, gv, bu = m.decode_coeffs()
    yy = (y.astype(np.float32) - yo) * ys
    uu = (u.astype(np.float32) - 128.0) * cs
    vv = (v.astype(np.float32) - 128.0) * cs
    return np.stack([yy + bu * uu, yy - gu * uu - gv * vv, yy + rv * vv], axis=-1)


def bgr_to_yuv(bgr: np.ndarray, m: Matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float BGR -> float32 Y, U, V in coded units (unrounded, unclipped)."""
    if m.rgb:
        return (bgr[..., 1].astype(np.float32), bgr[..., 0].astype(np.float32),
                bgr[..., 2].astype(np.float32))
    kr, kg, kb, yo, ys, cs, db, dr = m.encode_coeffs()
    b, g, r = (bgr[..., i].astype(np.float32) for i in range(3))
    yf = kr * r + kg * g + kb * b
    return yf / ys + yo, (b - yf) / db / cs + 128.0, (r - yf) / dr / cs + 128.0


def to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
