"""The worker's frame representation: 8-bit planar YUV packed in one buffer (Y, then U, then V,
rows without padding), on the host (NumPy) or on the GPU (CuPy), plus the decoded frame it came
from. Frames nobody changed go to the encoder as decoded.

Working formats are the 8-bit planar YUV formats (4:2:0, 4:2:2, 4:4:4, limited or full range). Other
sources (10-bit, semi-planar, RGB) are converted to the nearest one when a frame must change
(4:2:0 sources to ``yuv420p``, others to ``yuv444p``) and back by the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np

from ffray.video.decode import SWS_FROM_BGR

_NATIVE = {"yuv420p": (2, 2), "yuvj420p": (2, 2), "yuv422p": (2, 1), "yuvj422p": (2, 1),
           "yuv444p": (1, 1), "yuvj444p": (1, 1)}


@dataclass(frozen=True)
class Layout:
    width: int
    height: int
    pix_fmt: str  # the working format (one of _NATIVE)
    sx: int  # chroma subsampling, horizontal and vertical
    sy: int
    source_pix_fmt: str

    @property
    def cw(self) -> int:
        return -(-self.width // self.sx)

    @property
    def ch(self) -> int:
        return -(-self.height // self.sy)

    @property
    def y_size(self) -> int:
        return self.width * self.height

    @property
    def c_size(self) -> int:
        return self.cw * self.ch

    @property
    def nbytes(self) -> int:
        return self.y_size + 2 * self.c_size

    @property
    def native(self) -> bool:
        """The decoded frames are already in the working format (no conversion to unpack)."""
        return self.pix_fmt == self.source_pix_fmt


def layout_for(source_pix_fmt: str, width: int, height: int) -> Layout:
    if source_pix_fmt in _NATIVE:
        sx, sy = _NATIVE[source_pix_fmt]
        return Layout(width, height, source_pix_fmt, sx, sy, source_pix_fmt)
    fmt = av.VideoFormat(source_pix_fmt, width, height)
    comps = fmt.components
    sub420 = len(comps) >= 3 and comps[1].width * 2 >= width and comps[1].width < width \
        and comps[1].height < height and not fmt.is_rgb
    work = "yuv420p" if sub420 else "yuv444p"
    sx, sy = _NATIVE[work]
    return Layout(width, height, work, sx, sy, source_pix_fmt)


def upright(rotation: int, width: int, height: int) -> tuple[int, int, np.ndarray]:
    """The upright (display) view of a stored ``width`` x ``height`` frame whose display matrix
    turns it ``rotation`` degrees counterclockwise: its size and the 2x3 matrix taking upright
    pixel coordinates to stored ones (pixel centres on integers, so a quarter turn is exact)."""
    r = int(rotation) % 360
    w, h = width - 1, height - 1
    if r == 90:  # display = stored turned counterclockwise: u = y, v = w - x
        return height, width, np.array([[0, -1, w], [1, 0, 0]], np.float64)
    if r == 180:
        return width, height, np.array([[-1, 0, w], [0, -1, h]], np.float64)
    if r == 270:  # turned clockwise: u = h - y, v = x
        return height, width, np.array([[0, 1, 0], [-1, 0, h]], np.float64)
    return width, height, np.array([[1, 0, 0], [0, 1, 0]], np.float64)


def rotate_upright(img: np.ndarray, rotation: int) -> np.ndarray:
    """An image in stored orientation turned to its upright view (see ``upright``)."""
    r = int(rotation) % 360
    return img if r == 0 else np.ascontiguousarray(np.rot90(img, k=r // 90))


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2x3 affine ``a`` after ``b`` (first b, then a)."""
    a3 = np.vstack([np.asarray(a, np.float64), [0, 0, 1]])
    b3 = np.vstack([np.asarray(b, np.float64), [0, 0, 1]])
    return (a3 @ b3)[:2]


def back_matrix(to_stored: np.ndarray, scale: float) -> np.ndarray:
    """Detector-view coordinates (an upright view scaled by ``scale``) -> stored frame."""
    return compose(to_stored, np.array([[1 / scale, 0, 0], [0, 1 / scale, 0]]))


def planes(buf, lay: Layout):
    """Y, U, V 2-D views of a packed buffer (NumPy or CuPy)."""
    y = buf[:lay.y_size].reshape(lay.height, lay.width)
    u = buf[lay.y_size:lay.y_size + lay.c_size].reshape(lay.ch, lay.cw)
    v = buf[lay.y_size + lay.c_size:lay.nbytes].reshape(lay.ch, lay.cw)
    return y, u, v


def band_spans(lay: Layout, bands) -> list[tuple[int, int]]:
    """The byte ranges of a packed buffer that hold chroma rows ``[c0, c1)`` of each band (the
    luma rows ``c0*sy .. c1*sy`` and those rows of U and V: what a paste box writes), bands
    merged and clipped, in buffer order: a device frame whose changes all lie in ``bands`` is
    brought back by copying these ranges alone."""
    merged: list[list[int]] = []
    for c0, c1 in sorted((max(0, int(a)), min(lay.ch, int(b))) for a, b in bands):
        if c1 <= c0:
            continue
        if merged and c0 <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], c1)
        else:
            merged.append([c0, c1])
    w, ys, cs = lay.width, lay.y_size, lay.c_size
    spans = [(c0 * lay.sy * w, min(lay.height, c1 * lay.sy) * w) for c0, c1 in merged]
    spans += [(ys + c0 * lay.cw, ys + c1 * lay.cw) for c0, c1 in merged]
    spans += [(ys + cs + c0 * lay.cw, ys + cs + c1 * lay.cw) for c0, c1 in merged]
    out: list[tuple[int, int]] = []
    for a, b in spans:  # a band that reaches the last luma row runs on into U: one range
        if out and a == out[-1][1]:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def unpack(frame: av.VideoFrame, lay: Layout, out: np.ndarray | None = None,
           space: int = 1, rng: int = 1) -> np.ndarray:
    """Copy a decoded frame's planes into a packed buffer (``out`` if given, e.g. pinned host
    memory). Non-native sources are converted to the working format first (``space``/``rng``: the
    swscale colourspace and range of the source)."""
    if frame.format.name == "nv12" and lay.pix_fmt == "yuv420p":  # NVDEC's frames: one pass
        return _unpack_nv12(frame, lay, np.empty(lay.nbytes, np.uint8) if out is None else out)
    if frame.format.name != lay.pix_fmt:
        frame = frame.reformat(format=lay.pix_fmt, src_colorspace=space, dst_colorspace=space,
                               src_color_range=rng, dst_color_range=rng, interpolation=SWS_FROM_BGR)
    buf = np.empty(lay.nbytes, np.uint8) if out is None else out
    for dst, plane in zip(planes(buf, lay), frame.planes[:3]):
        h, w = dst.shape
        src = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        dst[...] = src[:h, :w]
    return buf


def _unpack_nv12(frame: av.VideoFrame, lay: Layout, buf: np.ndarray) -> np.ndarray:
    """NV12 (Y, then interleaved UV) into packed yuv420p: the same samples, de-interleaved."""
    y, u, v = planes(buf, lay)
    py, puv = frame.planes[0], frame.planes[1]
    y[...] = np.frombuffer(py, np.uint8).reshape(-1, py.line_size)[:y.shape[0], :y.shape[1]]
    uv = np.frombuffer(puv, np.uint8).reshape(-1, puv.line_size)[:u.shape[0], :2 * u.shape[1]]
    u[...] = uv[:, 0::2]
    v[...] = uv[:, 1::2]
    return buf


def wrap(buf: np.ndarray, lay: Layout) -> av.VideoFrame | None:
    """A VideoFrame over a packed buffer's own memory (no copy), where the layout is PyAV's
    contiguous I420 (4:2:0, even sizes); else None (``pack`` copies). The frame reads ``buf``:
    encode it before ``buf`` changes (libx264 copies its input picture inside the encode call,
    so the buffer may be reused once ``encode`` has returned)."""
    if lay.pix_fmt not in ("yuv420p", "yuvj420p") or lay.width % 2 or lay.height % 2:
        return None
    return av.VideoFrame.from_numpy_buffer(buf[:lay.nbytes].reshape(-1, lay.width),
                                           format=lay.pix_fmt)


def pack(buf: np.ndarray, lay: Layout) -> av.VideoFrame:
    """A new VideoFrame (working format) holding a packed buffer's planes."""
    frame = av.VideoFrame(lay.width, lay.height, lay.pix_fmt)
    for src, plane in zip(planes(buf, lay), frame.planes[:3]):
        h, w = src.shape
        dst = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        dst[:h, :w] = src
    return frame


@dataclass(eq=False)
class Frame:
    """A frame in flight: ``decoded`` (the decoder's frame, read-only), and once a stage needs to
    change pixels, ``host`` (packed NumPy buffer, writable) and/or ``device`` (packed CuPy buffer).
    ``dirty`` says the packed copy differs from ``decoded``; ``host_current`` that ``host`` holds
    the latest pixels (the GPU path clears it until download)."""

    decoded: av.VideoFrame | None = None  # None when a codec process holds it (``slot``)
    host: np.ndarray | None = None
    device: object = None
    dirty: bool = False
    host_current: bool = True
    bgr: np.ndarray | None = None  # full-frame BGR for BGR processors (adapter stage)
    slot: int | None = None  # the codec process's ring slot ``host`` views (codec processes)
    pinned: bool = False  # ``host`` is page-locked (a registered ring): DMA to and from it
    # with FFRAY_PARTIAL_DOWNLOAD: the chroma-row bands the device copy changed since it equalled
    # ``host``, the only rows that come back (``band_spans``); None: the whole frame comes back
    bands: list | None = None
