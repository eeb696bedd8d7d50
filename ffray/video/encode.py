"""Chunk encoding: processed BGR frames -> an in-memory NUT file with the source's pts.

Every chunk is encoded by a fresh encoder with the same settings, so its first frame is an IDR
frame and the codec parameters (SPS/PPS, profile, pix_fmt, size, time base) are identical across
chunks. NUT keeps each stream's timestamps exactly (it may scale the time base by an integer), so
the assembler can restore source pts without rounding. Colour metadata is copied from the source.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from ffray.errors import FFrayError
from ffray.video.decode import SWS_FROM_BGR, sws_range, sws_space
from ffray.video.pictures import pad_frame
from ffray.video.probe import Color

PictureType = av.video.frame.PictureType

ENCODERS = {"h264": "libx264", "libx264": "libx264", "hevc": "libx265", "h265": "libx265",
            "libx265": "libx265", "h264_nvenc": "h264_nvenc", "hevc_nvenc": "hevc_nvenc"}
STREAM_CODEC = {"libx264": "h264", "libx265": "hevc", "h264_nvenc": "h264", "hevc_nvenc": "hevc"}
# x264 preset names -> NVENC's p1 (fastest) .. p7 (best)
NVENC_PRESETS = {"ultrafast": "p1", "superfast": "p1", "veryfast": "p2", "faster": "p3", "fast": "p4",
                 "medium": "p5", "slow": "p6", "slower": "p7", "veryslow": "p7", "placebo": "p7"}
# x264/x265 threads per chunk encoder. Fixed, not derived from the machine: the encoders' output
# depends on it, and the same input and options must give the same bytes on any node at any load.
# The worker runs as many chunk encoders at once as its CPUs allow (ffray.engine.budget).
DEFAULT_THREADS = 1
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
           "veryslow", "placebo")


# x264's instruction set, pinned. Its output depends on the SIMD level it picks (AVX2 and AVX-512
# builds of the same input differ: floating-point lookahead), so nodes with different CPUs would
# encode the same chunk differently; and on AVX-512 CPUs one run in a few dozen gave other bytes
# for the same frames in the same process (tests/test_codecs.py reproduced it; with AVX2 pinned it
# never did). AVX2 (with what x264 counts in it: SSE2-4.2, AVX, FMA3, LZCNT, BMI1/2) is on every
# x86 server CPU since 2015. Its cost: none above the run-to-run swings, on the H200 node and
# the 2-core VM (docs/design.md, "Chunk encode"; scripts/check_x264_asm.py). CPUs without it (and
# non-x86) keep x264's choice.
X264_ASM = "AVX2,Cache64"
_X264_NEEDS = frozenset({"sse4_2", "avx", "avx2", "fma", "bmi1", "bmi2", "abm"})


@functools.cache
def x264_asm() -> str | None:
    """``X264_ASM`` where this CPU has every instruction set it names, else None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return X264_ASM if _X264_NEEDS <= set(line.split(":", 1)[1].split()) else None
    except OSError:
        pass
    return None


@dataclass(frozen=True)
class EncodeSettings:
    codec: str = "libx264"
    crf: float = 18.0
    preset: str = "veryfast"
    pix_fmt: str | None = None  # None: the source's when the encoder supports it, else yuv420p
    threads: int = DEFAULT_THREADS
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.codec not in ENCODERS:
            raise FFrayError(f"unknown --codec {self.codec!r}; choose from h264, hevc (CPU) or "
                             "h264_nvenc, hevc_nvenc (NVIDIA GPUs with NVENC)")
        object.__setattr__(self, "codec", ENCODERS[self.codec])
        nv = tuple(f"p{i}" for i in range(1, 8))
        if self.preset not in PRESETS and not (self.nvenc and self.preset in nv):
            raise FFrayError(f"unknown --preset {self.preset!r}; choose from {', '.join(PRESETS)}"
                             + (f" or {', '.join(nv)}" if self.nvenc else ""))
        if not 0 <= self.crf <= 51:
            raise FFrayError("--crf must be between 0 and 51")
        if not 1 <= int(self.threads) <= 64:
            raise FFrayError("--encoder-threads must be between 1 and 64")

    @property
    def nvenc(self) -> bool:
        return self.codec.endswith("_nvenc")

    @property
    def stream_codec(self) -> str:
        return STREAM_CODEC[self.codec]

    def choose_pix_fmt(self, source_pix_fmt: str) -> str:
        if self.pix_fmt:
            return self.pix_fmt
        supported = {f.name for f in (av.Codec(self.codec, "w").video_formats or [])}
        return source_pix_fmt if source_pix_fmt in supported else "yuv420p"

    def codec_options(self) -> dict:
        if self.nvenc:  # constant quality, deterministic rate control, IDR at forced keyframes
            opts = {"preset": NVENC_PRESETS.get(self.preset, self.preset), "rc": "vbr",
                    "cq": f"{self.crf:g}", "b": "0", "forced-idr": "1"}
            opts.update({k: str(v) for k, v in self.options.items()})
            return opts
        opts = {"crf": f"{self.crf:g}", "preset": self.preset}
        if self.codec == "libx265":
            opts["x265-params"] = "log-level=error"
        opts.update({k: str(v) for k, v in self.options.items()})
        asm = x264_asm() if self.codec == "libx264" else None
        if asm and "asm=" not in opts.get("x264-params", ""):
            opts["x264-params"] = ":".join(p for p in (opts.get("x264-params"), f"asm={asm}") if p)
        return opts


def coded_size(width: int, height: int, pix_fmt: str) -> tuple[int, int]:
    """The size a chunk encoder codes at: ``width`` x ``height`` rounded up to the chroma
    subsampling of ``pix_fmt`` (4:2:0: both even; 4:2:2: even width). x264 and x265 refuse odd
    sizes there, and H.264/HEVC crop windows count in chroma samples, so an odd 4:2:0 size cannot
    even be signalled: such video is padded (``pictures.pad_frame``), never refused."""
    f = av.VideoFormat(pix_fmt, 64, 64)
    comps = f.components
    sx = sy = 1
    if len(comps) >= 3 and not f.is_rgb:
        sx, sy = 64 // comps[1].width, 64 // comps[1].height
    return width + (-width) % sx, height + (-height) % sy


def size_note(width: int, height: int, settings: EncodeSettings, source_pix_fmt: str) -> str | None:
    """What the odd-size policy does to this video, for the user (None: nothing)."""
    pix_fmt = settings.choose_pix_fmt(source_pix_fmt)
    w, h = coded_size(width, height, pix_fmt)
    if (w, h) == (width, height):
        return None
    return (f"note: {width}x{height} cannot be coded in {pix_fmt} (subsampled chroma needs even "
            f"sizes): the output is {w}x{h}, the last column/row repeated, nothing scaled"
            + ("" if settings.nvenc else f"; --pix-fmt yuv444p keeps {width}x{height}"))


def check_encoder(settings: EncodeSettings, width: int, height: int,
                  source_pix_fmt: str = "yuv420p") -> None:
    """Open the encoder once as the chunks will (CPU encoders: the coded size and pixel format;
    NVENC at least 256x256): a pixel format or size the encoder refuses, or an NVENC codec on a
    GPU without NVENC (H100, H200, no NVIDIA driver), fails here in one line, before any chunk."""
    from fractions import Fraction

    pix_fmt = settings.choose_pix_fmt(source_pix_fmt)
    try:
        w, h = coded_size(width, height, pix_fmt)
    except ValueError:
        raise FFrayError(f"unknown --pix-fmt {pix_fmt!r} (e.g. yuv420p, yuv422p, yuv444p, "
                         "yuv420p10le)") from None
    if settings.nvenc:
        w, h = max(256, w), max(256, h)
    try:
        cc = av.CodecContext.create(settings.codec, "w")
        cc.width, cc.height = w, h
        cc.pix_fmt = pix_fmt
        cc.time_base = Fraction(1, 25)
        cc.options = settings.codec_options()
        cc.open()
    except (av.error.FFmpegError, ValueError, OSError) as e:
        why = getattr(e, "strerror", None) or str(e).splitlines()[0][:80]
        if not settings.nvenc:
            raise FFrayError(f"--codec {settings.codec} cannot encode {w}x{h} {pix_fmt} video "
                             f"({why}); try another --pix-fmt") from None
        raise FFrayError(f"--codec {settings.codec}: the encoder cannot open here ({why}); "
                         "this GPU may have no NVENC (H100/H200 have none): use --codec h264 or "
                         "hevc (libx264/libx265 on the CPU)") from None


class ChunkEncoder:
    """Encode BGR frames with explicit pts into NUT bytes."""

    def __init__(self, settings: EncodeSettings, width: int, height: int, time_base: Fraction,
                 rate: Fraction | None, color: Color, source_pix_fmt: str, layout=None,
                 threads: int | None = None):
        self._buf = io.BytesIO()
        self._out = av.open(self._buf, "w", format="nut", options={"avoid_negative_ts": "disabled"})
        s = self._out.add_stream(settings.codec, rate=rate or Fraction(25),
                                 options=settings.codec_options())
        s.pix_fmt = settings.choose_pix_fmt(source_pix_fmt)
        s.width, s.height = self.coded = coded_size(width, height, s.pix_fmt)
        s.time_base = time_base
        cc = s.codec_context
        cc.time_base = time_base
        cc.thread_count = max(1, settings.threads if threads is None else threads)
        cc.thread_type = "FRAME"  # x264 frame threads (sliced threads change the bitstream's slices)
        cc.color_range, cc.colorspace = color.range, color.space
        cc.color_primaries, cc.color_trc = color.primaries, color.trc
        self._stream = s
        self._tb = time_base
        self._sws = av.video.reformatter.VideoReformatter()
        self._space = sws_space(color, height)
        self._range = sws_range(color)
        self._size = (height, width)
        self.layout = layout  # the worker's frame layout, for frames changed by stages
        # frames encoded in place only where the encoder copies its input during the call
        self.in_place = settings.codec in ("libx264", "libx265")
        self.frames = 0

    def write(self, bgr: np.ndarray, pts: int) -> None:
        if bgr.shape[:2] != self._size or bgr.dtype != np.uint8 or bgr.ndim != 3:
            raise ValueError(f"processed frame has shape {bgr.shape} {bgr.dtype}; expected "
                             f"{self._size + (3,)} uint8")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24")
        frame = self._sws.reformat(frame, format=self._stream.pix_fmt, src_colorspace=self._space,
                                   dst_colorspace=self._space, src_color_range=2,
                                   dst_color_range=self._range, interpolation=SWS_FROM_BGR)
        self._encode(frame, pts)

    def _encode(self, frame: av.VideoFrame, pts: int) -> None:
        if (frame.width, frame.height) != self.coded:  # odd size, subsampled chroma
            frame = pad_frame(frame, *self.coded)
        frame.pts, frame.time_base = pts, self._tb
        self._out.mux(self._stream.encode(frame))
        self.frames += 1

    def write_frame(self, frame, pts: int) -> None:
        """Encode a worker frame (``ffray.engine.frames.Frame``): its BGR image if a BGR processor
        made one, its packed planes if a stage changed pixels, else the decoded frame as it is.
        Packed 4:2:0 planes are encoded in place (``frames.wrap``: libx264 copies the picture
        during the call, so a codec process reuses the ring slot as soon as this returns; the
        bytes equal those of a copy, tests/test_codecs.py); other layouts are copied into a new
        frame (``frames.pack``)."""
        if frame.bgr is not None:
            self.write(frame.bgr, pts)
            return
        if frame.dirty:
            from ffray.engine.frames import pack, wrap

            vf = wrap(frame.host, self.layout) if self.in_place else None
            if vf is None:
                vf = pack(frame.host, self.layout)
        else:
            vf = frame.decoded
            vf.pict_type = PictureType.NONE  # the decoder's I/P/B decision must not force ours
        if vf.format.name != self._stream.pix_fmt:
            vf = self._sws.reformat(vf, format=self._stream.pix_fmt, src_colorspace=self._space,
                                    dst_colorspace=self._space, src_color_range=self._range,
                                    dst_color_range=self._range, interpolation=SWS_FROM_BGR)
        if (vf.width, vf.height) != (self._size[1], self._size[0]):
            raise ValueError(f"frame of {vf.width}x{vf.height} where {self._size[1]}x{self._size[0]} "
                             "was expected")
        self._encode(vf, pts)

    def finish(self) -> bytes:
        self._out.mux(self._stream.encode(None))
        self._out.close()
        return self._buf.getvalue()
