"""Chunk encoding: processed BGR frames -> an in-memory NUT file with the source's pts.

Every chunk is encoded by a fresh encoder with the same settings, so its first frame is an IDR
frame and the codec parameters (SPS/PPS, profile, pix_fmt, size, time base) are identical across
chunks. NUT keeps each stream's timestamps exactly (it may scale the time base by an integer), so
the assembler can restore source pts without rounding. Colour metadata is copied from the source.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from ffray.errors import FFrayError
from ffray.video.decode import SWS_FROM_BGR, sws_range, sws_space
from ffray.video.probe import Color

ENCODERS = {"h264": "libx264", "libx264": "libx264", "hevc": "libx265", "h265": "libx265",
            "libx265": "libx265"}
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
           "veryslow", "placebo")


@dataclass(frozen=True)
class EncodeSettings:
    codec: str = "libx264"
    crf: float = 18.0
    preset: str = "veryfast"
    pix_fmt: str | None = None  # None: the source's when the encoder supports it, else yuv420p
    threads: int = 0
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.codec not in ENCODERS:
            raise FFrayError(f"unknown --codec {self.codec!r}; choose from h264, hevc")
        object.__setattr__(self, "codec", ENCODERS[self.codec])
        if self.preset not in PRESETS:
            raise FFrayError(f"unknown --preset {self.preset!r}; choose from {', '.join(PRESETS)}")
        if not 0 <= self.crf <= 51:
            raise FFrayError("--crf must be between 0 and 51")

    @property
    def stream_codec(self) -> str:
        return {"libx264": "h264", "libx265": "hevc"}[self.codec]

    def choose_pix_fmt(self, source_pix_fmt: str) -> str:
        if self.pix_fmt:
            return self.pix_fmt
        supported = {f.name for f in (av.Codec(self.codec, "w").video_formats or [])}
        return source_pix_fmt if source_pix_fmt in supported else "yuv420p"

    def codec_options(self) -> dict:
        opts = {"crf": f"{self.crf:g}", "preset": self.preset}
        if self.codec == "libx265":
            opts["x265-params"] = "log-level=error"
        opts.update({k: str(v) for k, v in self.options.items()})
        return opts


class ChunkEncoder:
    """Encode BGR frames with explicit pts into NUT bytes."""

    def __init__(self, settings: EncodeSettings, width: int, height: int, time_base: Fraction,
                 rate: Fraction | None, color: Color, source_pix_fmt: str):
        self._buf = io.BytesIO()
        self._out = av.open(self._buf, "w", format="nut", options={"avoid_negative_ts": "disabled"})
        s = self._out.add_stream(settings.codec, rate=rate or Fraction(25),
                                 options=settings.codec_options())
        s.width, s.height = width, height
        s.pix_fmt = settings.choose_pix_fmt(source_pix_fmt)
        s.time_base = time_base
        cc = s.codec_context
        cc.time_base = time_base
        cc.thread_count = settings.threads
        cc.color_range, cc.colorspace = color.range, color.space
        cc.color_primaries, cc.color_trc = color.primaries, color.trc
        self._stream = s
        self._tb = time_base
        self._sws = av.video.reformatter.VideoReformatter()
        self._space = sws_space(color, height)
        self._range = sws_range(color)
        self._size = (height, width)
        self.frames = 0

    def write(self, bgr: np.ndarray, pts: int) -> None:
        if bgr.shape[:2] != self._size or bgr.dtype != np.uint8 or bgr.ndim != 3:
            raise ValueError(f"processed frame has shape {bgr.shape} {bgr.dtype}; expected "
                             f"{self._size + (3,)} uint8")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24")
        frame = self._sws.reformat(frame, format=self._stream.pix_fmt, src_colorspace=self._space,
                                   dst_colorspace=self._space, src_color_range=2,
                                   dst_color_range=self._range, interpolation=SWS_FROM_BGR)
        frame.pts, frame.time_base = pts, self._tb
        self._out.mux(self._stream.encode(frame))
        self.frames += 1

    def finish(self) -> bytes:
        self._out.mux(self._stream.encode(None))
        self._out.close()
        return self._buf.getvalue()
