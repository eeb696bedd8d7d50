"""Frame operations on the host (NumPy/OpenCV): the CPU backend of the face stages.

Same contract as ``ops_gpu`` (which runs them as CUDA kernels on device frames):
- ``upload``: the frame's packed YUV copy (writable);
- ``det_blob``: frames resized to fit the detector input, padded at the top-left, normalised,
  NCHW float32 (colour conversion at the small size: resize the planes, then convert);
- ``small_bgr``: frames shrunk to a longest side, BGR uint8 (for MTCNN);
- ``crops``: aligned face crops by 2x3 frame->crop matrices, NCHW float32 normalised, sampling
  only the face's region of the frame (border pixels replicated at the frame's edges);
- ``paste``: a crop (NCHW, RGB = crop * scale + offset) blended back by its matrix and a soft mask,
  in YUV: luma per pixel, chroma per subsampled block from the block's alpha-weighted mean, so
  pixels under alpha 0 keep their decoded values exactly;
- ``download``: nothing to do on the host.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from ffray.engine import anchors
from ffray.engine.colour import Matrix, bgr_to_yuv, to_u8, yuv_to_bgr
from ffray.engine.frames import Frame, Layout, back_matrix, planes, rotate_upright, unpack, upright


class CpuOps:
    name = "cpu"

    def __init__(self, lay: Layout, mat: Matrix, space: int = 1, rng: int = 1, rotation: int = 0):
        """``rotation``: the stream's display rotation (counterclockwise degrees); the whole-frame
        views for detectors are upright, and map back to stored coordinates."""
        self.lay, self.mat = lay, mat
        self._space, self._rng = space, rng
        self.rotation = int(rotation) % 360
        self.up_w, self.up_h, self.to_stored = upright(self.rotation, lay.width, lay.height)

    # --- frames in and out
    def upload(self, frames: list[Frame]) -> None:
        for f in frames:
            if f.host is None:
                f.host = unpack(f.decoded, self.lay, space=self._space, rng=self._rng)

    def download(self, frames: list[Frame]) -> None:
        return None

    def pin(self, buf) -> None:
        """Nothing to page-lock without a GPU."""
        return None

    def host(self, x) -> np.ndarray:
        return np.asarray(x)

    def host_many(self, xs: list) -> list[np.ndarray]:
        return [np.asarray(x) for x in xs]

    def anchor_hits(self, scores: list, boxes: list, kps: list, input_hw: tuple[int, int],
                    strides: list[int], per_cell: int, threshold: float) -> list[np.ndarray]:
        """Per image, the anchor-grid detector's candidate rows (``engine.anchors``)."""
        return host_anchor_hits(scores, boxes, kps, input_hw, strides, per_cell, threshold)

    # --- whole-frame views at a smaller size
    def _resized_bgr(self, f: Frame, nw: int, nh: int, interp: int) -> np.ndarray:
        y, u, v = planes(f.host, self.lay)
        ys = cv2.resize(y, (nw, nh), interpolation=interp)
        us = cv2.resize(u, (nw, nh), interpolation=interp)
        vs = cv2.resize(v, (nw, nh), interpolation=interp)
        return to_u8(yuv_to_bgr(ys, us, vs, self.mat))

    def _upright_small(self, f: Frame, nw: int, nh: int, interp: int) -> np.ndarray:
        """The upright view at nw x nh (resized in stored orientation, then turned: exact for
        quarter turns)."""
        sw, sh = (nh, nw) if self.rotation in (90, 270) else (nw, nh)
        return rotate_upright(self._resized_bgr(f, sw, sh, interp), self.rotation)

    def det_blob(self, frames: list[Frame], size: tuple[int, int], mean: float = 127.5,
                 std: float = 128.0) -> tuple[np.ndarray, list[np.ndarray]]:
        """Detector input of the upright view, and per frame the 2x3 matrix from detector pixels
        back to stored frame coordinates."""
        iw, ih = size
        blob = np.empty((len(frames), 3, ih, iw), np.float32)
        nw, nh, s = fit(self.up_w, self.up_h, iw, ih)
        for i, f in enumerate(frames):
            canvas = np.zeros((ih, iw, 3), np.uint8)
            canvas[:nh, :nw] = self._upright_small(f, nw, nh, cv2.INTER_LINEAR)
            blob[i] = ((canvas[:, :, ::-1].astype(np.float32) - mean) / std).transpose(2, 0, 1)
        return blob, [back_matrix(self.to_stored, s)] * len(frames)

    def small_bgr(self, frames: list[Frame], max_side: int) -> tuple[list[np.ndarray], np.ndarray]:
        """The upright view shrunk to a longest side (BGR), and the matrix back to stored pixels."""
        w, h = self.up_w, self.up_h
        s = min(1.0, max_side / max(w, h))
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        return ([self._upright_small(f, nw, nh, cv2.INTER_AREA) for f in frames],
                back_matrix(self.to_stored, nw / w))

    # --- faces
    def roi_bgr(self, f: Frame, roi: tuple[int, int, int, int]) -> np.ndarray:
        """The frame's BGR pixels in ``roi`` (chroma upsampled across the region)."""
        x0, y0, x1, y1 = roi
        y, u, v = planes(f.host, self.lay)
        sx, sy = self.lay.sx, self.lay.sy
        cx0, cy0, cx1, cy1 = x0 // sx, y0 // sy, -(-x1 // sx), -(-y1 // sy)
        # chroma with a one-sample margin, upsampled with centre siting, then cut to the region
        mx0, my0 = max(0, cx0 - 1), max(0, cy0 - 1)
        mx1, my1 = min(self.lay.cw, cx1 + 1), min(self.lay.ch, cy1 + 1)
        uu, vv = _upsample(u[my0:my1, mx0:mx1], sx, sy), _upsample(v[my0:my1, mx0:mx1], sx, sy)
        ox, oy = x0 - mx0 * sx, y0 - my0 * sy
        uu = uu[oy:oy + (y1 - y0), ox:ox + (x1 - x0)]
        vv = vv[oy:oy + (y1 - y0), ox:ox + (x1 - x0)]
        return to_u8(yuv_to_bgr(y[y0:y1, x0:x1], uu, vv, self.mat))

    def crops_bgr(self, frames: list[Frame], mats: list[np.ndarray], size: int) -> list[np.ndarray]:
        out = []
        for f, m in zip(frames, mats):
            m_inv = cv2.invertAffineTransform(m)
            roi = _roi(m_inv, size, self.lay, pad=3)
            x0, y0, x1, y1 = roi
            if x1 <= x0 or y1 <= y0:
                out.append(np.zeros((size, size, 3), np.uint8))
                continue
            shifted = m.astype(np.float64).copy()
            shifted[:, 2] += shifted[:, 0] * x0 + shifted[:, 1] * y0  # crop <- roi coordinates
            out.append(cv2.warpAffine(self.roi_bgr(f, roi), shifted.astype(np.float32), (size, size),
                                      flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
        return out

    def crops(self, frames: list[Frame], mats: list[np.ndarray], size: int, mean: float, std: float,
              rgb: bool = True) -> np.ndarray:
        if not frames:
            return np.zeros((0, 3, size, size), np.float32)
        x = np.stack(self.crops_bgr(frames, mats, size))
        if rgb:
            x = x[..., ::-1]
        return ((x.astype(np.float32) - mean) / std).transpose(0, 3, 1, 2)

    def to_device(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x)

    def per_face_masks(self, static: np.ndarray, masks: list, counts: list[int]) -> np.ndarray:
        """(N, S, S): the static mask combined by minimum with each face's own mask (where a
        group has none, the static one)."""
        s = np.asarray(static, np.float32)
        parts = [np.minimum(s[None], np.asarray(m, np.float32)) if m is not None
                 else np.repeat(s[None], n, axis=0) for m, n in zip(masks, counts)]
        return np.concatenate(parts)

    def concat(self, xs: list) -> np.ndarray:
        return np.concatenate([np.asarray(x) for x in xs]) if len(xs) != 1 else np.asarray(xs[0])

    def paste(self, frames: list[Frame], crops, mats: list[np.ndarray], mask: np.ndarray,
              scale: float, offset: float, strength: float = 1.0, poisson: bool = False) -> None:
        """Blend each crop (NCHW RGB: value * scale + offset) into its frame; ``frames`` may repeat
        a frame (several faces): they are pasted in order. ``mask``: one (S, S) mask for all, or
        (N, S, S), one per crop. ``poisson``: the face is first
        seamless-cloned (OpenCV) into the region's BGR pixels, then blended the same way."""
        crops = np.asarray(crops)
        mask = np.asarray(mask, np.float32)
        for i, (f, c, m) in enumerate(zip(frames, crops, mats)):
            self._paste_one(f, c, m, mask[i] if mask.ndim == 3 else mask, scale, offset, strength,
                            poisson)
            f.dirty = True

    def _paste_one(self, f: Frame, crop: np.ndarray, m: np.ndarray, mask: np.ndarray, scale: float,
                   offset: float, strength: float, poisson: bool = False) -> None:
        size = crop.shape[-1]
        lay = self.lay
        m_inv = cv2.invertAffineTransform(m)
        x0, y0, x1, y1 = _roi(m_inv, size, lay, pad=2)
        if x1 <= x0 or y1 <= y0:
            return
        sh = m_inv.astype(np.float64).copy()
        sh[:, 2] -= (x0, y0)
        rgb = np.clip(crop.transpose(1, 2, 0).astype(np.float32) * scale + offset, 0, 255)
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        warped = cv2.warpAffine(bgr, sh.astype(np.float32), (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        alpha = cv2.warpAffine(mask.astype(np.float32), sh.astype(np.float32), (x1 - x0, y1 - y0),
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        alpha = np.clip(alpha * strength, 0.0, 1.0)
        if poisson:
            warped = _seamless(warped, self.roi_bgr(f, (x0, y0, x1, y1)), alpha)
        fy, fu, fv = bgr_to_yuv(warped, self.mat)
        y, u, v = planes(f.host, lay)
        region = y[y0:y1, x0:x1].astype(np.float32)
        y[y0:y1, x0:x1] = to_u8(region + alpha * (fy - region))
        # chroma: per subsampled block, alpha-weighted mean of the face's chroma
        sx, sy = lay.sx, lay.sy
        cx0, cy0, cx1, cy1 = x0 // sx, y0 // sy, -(-x1 // sx), -(-y1 // sy)
        a_sum, au_sum, av_sum, count = (_block_sum(x, sx, sy) for x in
                                        (alpha, alpha * fu, alpha * fv, np.ones_like(alpha)))
        a_mean = a_sum / count
        for plane, acc in ((u, au_sum), (v, av_sum)):
            src = plane[cy0:cy1, cx0:cx1].astype(np.float32)
            plane[cy0:cy1, cx0:cx1] = to_u8(acc / count + (1.0 - a_mean) * src)


def _seamless(face: np.ndarray, region: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The face Poisson-cloned into the region (where the mask is over one half), as float BGR;
    the face unchanged where the mask is too small or touches the region's border."""
    binary = (alpha > 0.5).astype(np.uint8) * 255
    ys, xs = np.nonzero(binary)
    if len(xs) <= 16 or xs.min() == 0 or ys.min() == 0 or xs.max() >= binary.shape[1] - 1 \
            or ys.max() >= binary.shape[0] - 1:
        return face
    center = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
    src = np.clip(face + 0.5, 0, 255).astype(np.uint8)
    return cv2.seamlessClone(src, np.ascontiguousarray(region), binary, center,
                             cv2.NORMAL_CLONE).astype(np.float32)


def host_anchor_hits(scores: list, boxes: list, kps: list, input_hw: tuple[int, int],
                     strides: list[int], per_cell: int, threshold: float) -> list[np.ndarray]:
    """``CpuOps.anchor_hits`` for any outputs on the host (NumPy, one image at a time)."""
    ih, iw = input_hw
    grid = [_grid(ih // s, iw // s, s, per_cell) for s in strides]
    n = len(scores[0]) if scores else 0
    return [anchors.hits_np([x[i] for x in scores], [x[i] for x in boxes], [x[i] for x in kps],
                            grid, strides, threshold) for i in range(n)]


@functools.lru_cache(maxsize=32)
def _grid(h: int, w: int, stride: int, per_cell: int) -> np.ndarray:
    c = anchors.centers(h, w, stride, per_cell)
    c.flags.writeable = False  # shared between calls: read only
    return c


def fit(w: int, h: int, iw: int, ih: int) -> tuple[int, int, float]:
    """The size a ``w`` x ``h`` frame is resized to inside an ``iw`` x ``ih`` input (aspect kept), and
    the scale (input pixels per frame pixel), as insightface's SCRFD does it."""
    ratio = float(h) / w  # insightface's arithmetic exactly (truncation, same float operations)
    if ratio > float(ih) / iw:
        nh, nw = ih, int(ih / ratio)
    else:
        nw, nh = iw, int(iw * ratio)
    return nw, nh, float(nh) / h


def _roi(m_inv: np.ndarray, size: int, lay: Layout, pad: int) -> tuple[int, int, int, int]:
    """The frame region a ``size`` crop maps onto, padded, clamped and aligned to chroma blocks."""
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64)
    pts = corners @ m_inv.astype(np.float64).T
    x0 = int(max(0, np.floor(pts[:, 0].min()) - pad))
    y0 = int(max(0, np.floor(pts[:, 1].min()) - pad))
    x1 = int(min(lay.width, np.ceil(pts[:, 0].max()) + pad))
    y1 = int(min(lay.height, np.ceil(pts[:, 1].max()) + pad))
    x0, y0 = x0 - x0 % lay.sx, y0 - y0 % lay.sy
    x1 = min(lay.width, -(-x1 // lay.sx) * lay.sx)
    y1 = min(lay.height, -(-y1 // lay.sy) * lay.sy)
    return x0, y0, x1, y1


def roi(m: np.ndarray, size: int, lay: Layout, pad: int = 2) -> tuple[int, int, int, int]:
    """Public form of the paste region for a frame->crop matrix ``m`` (used by the GPU backend)."""
    return _roi(cv2.invertAffineTransform(m), size, lay, pad)


def _upsample(c: np.ndarray, sx: int, sy: int) -> np.ndarray:
    if sx == 1 and sy == 1:
        return c
    h, w = c.shape
    return cv2.resize(c, (w * sx, h * sy), interpolation=cv2.INTER_LINEAR)


def _block_sum(x: np.ndarray, sx: int, sy: int) -> np.ndarray:
    """Sums over sx x sy blocks (a ragged last row/column sums what it has)."""
    if sx == 1 and sy == 1:
        return x.astype(np.float32)
    h, w = x.shape
    ph, pw = -(-h // sy) * sy, -(-w // sx) * sx
    p = np.zeros((ph, pw), np.float32)
    p[:h, :w] = x
    return p.reshape(ph // sy, sy, pw // sx, sx).sum(axis=(1, 3))
