"""Whole-picture operations on decoded frames: pad (odd sizes), copy and black frames (damaged
input concealed), conform (a resolution or format change mid-stream)."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np


def pad_frame(frame: av.VideoFrame, width: int, height: int) -> av.VideoFrame:
    """``frame`` in a new frame of ``width`` x ``height`` (no smaller), its last column and row
    repeated into the margin (planar and semi-planar formats). FFmpeg's ``pad`` filter rounds an
    odd 4:2:0 input down to even first (it drops the last column), so this is done here; the
    chroma planes of an odd 4:2:0 frame already cover the even size (their width is rounded up).
    With the frame's own size it is a copy."""
    out = av.VideoFrame(width, height, frame.format.name)
    comps = frame.format.components
    for i, (src, dst) in enumerate(zip(frame.planes, out.planes)):
        elem = sum(-(-c.bits // 8) for c in comps if c.plane == i)  # bytes per sample in the plane
        s = np.frombuffer(src, np.uint8).reshape(-1, src.line_size)[:src.height, :src.width * elem]
        d = np.frombuffer(dst, np.uint8).reshape(-1, dst.line_size)
        h, w = s.shape
        d[:h, :w] = s
        if dst.width > src.width:
            d[:h, w:dst.width * elem] = np.tile(s[:, w - elem:w], (1, dst.width - src.width))
        if dst.height > h:
            d[h:dst.height, :dst.width * elem] = d[h - 1, :dst.width * elem]
    out.color_range, out.colorspace = frame.color_range, frame.colorspace
    return out


def copy_frame(frame: av.VideoFrame, pts: int) -> av.VideoFrame:
    """A new frame with ``frame``'s pixels and the given pts (a frame the decoder lost, concealed
    by its neighbour: a copy, since frames carry their pts to the encoder)."""
    out = pad_frame(frame, frame.width, frame.height)
    out.pts = pts
    if frame.time_base is not None:
        out.time_base = frame.time_base
    return out


def black_frame(width: int, height: int, pix_fmt: str, color_range: int, pts: int,
                time_base: Fraction) -> av.VideoFrame:
    """A black frame in ``pix_fmt`` (``color_range``: 2 full, else limited)."""
    bgr = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), format="bgr24")
    out = bgr.reformat(format=pix_fmt, dst_color_range=2 if color_range == 2 else 1)
    out.pts, out.time_base = pts, time_base
    return out


class Conform:
    """Frames of another size than the stream's (a resolution change mid-stream) made the
    stream's size: scaled to fit, aspect ratio kept, centred on black (FFmpeg's ``scale`` +
    ``pad`` filters; where ``pad`` cannot make the size, an odd one with subsampled chroma, plain
    scaling). Pixel formats are left as decoded (the worker and the encoder convert any).
    ``changed`` counts the frames it scaled."""

    def __init__(self, width: int, height: int):
        self.size = (width, height)
        self.changed = 0
        self._graphs: dict[tuple, object] = {}

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        if (frame.width, frame.height) == self.size:
            return frame
        self.changed += 1
        key = (frame.width, frame.height, frame.format.name)
        if key not in self._graphs:
            self._graphs[key] = self._graph(frame)
        g = self._graphs[key]
        out = None
        if g is not None:
            g.push(frame)
            out = g.pull()
        if out is None or (out.width, out.height) != self.size:
            self._graphs[key] = None
            out = frame.reformat(width=self.size[0], height=self.size[1])
        out.pts = frame.pts
        if frame.time_base is not None:
            out.time_base = frame.time_base
        return out

    def _graph(self, frame: av.VideoFrame):
        w, h = self.size
        g = av.filter.Graph()
        src = g.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                           time_base=frame.time_base or Fraction(1, 25))
        chain = [g.add("scale", f"{w}:{h}:force_original_aspect_ratio=decrease:force_divisible_by=2"),
                 g.add("pad", f"{w}:{h}:-1:-1:color=black"), g.add("buffersink")]
        src.link_to(chain[0])
        for a, b in zip(chain, chain[1:]):
            a.link_to(b)
        try:
            g.configure()
        except (av.error.FFmpegError, ValueError):
            return None
        return g
