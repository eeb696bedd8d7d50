"""Frame-exact chunk input: the driver cuts compressed packets, the worker decodes them.

Workers never receive decoded frames and never need the input file: the driver demuxes the source
once, sequentially, and hands each chunk its packets (from the keyframe it starts at to the last
packet it needs) plus the decoder parameters. The worker decodes those packets and keeps exactly
the frames whose pts belong to the chunk.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction

import av
import numpy as np

from ffray.errors import MediaError
from ffray.video.pictures import Conform, black_frame, copy_frame
from ffray.video.plan import ChunkSpec
from ffray.video.probe import Color, PacketIndex, open_input

_NO_DTS = np.iinfo(np.int64).min

# AVColorSpace -> swscale colourspace constant (SWS_CS_*), for YUV<->BGR conversion.
_SWS_SPACE = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}


def sws_space(color: Color, height: int) -> int:
    """The YUV matrix to convert with: the declared one, else BT.709 for HD and BT.601 for SD."""
    return _SWS_SPACE.get(color.space, 1 if height >= 720 else 5)


def sws_range(color: Color) -> int:
    return 2 if color.range == 2 else 1


# swscale's default YUV<->RGB paths darken luma by ~1.6 levels per round trip; accurate rounding
# with full chroma interpolation makes a decode -> BGR -> encode round trip unbiased.
_I = av.video.reformatter.Interpolation
SWS_TO_BGR = int(_I.BILINEAR | _I.ACCURATE_RND | _I.FULL_CHR_H_INT)
SWS_FROM_BGR = int(_I.AREA | _I.ACCURATE_RND)


@dataclass
class ChunkPayload:
    """What a worker needs to decode one chunk: compressed packets and decoder parameters."""

    spec: ChunkSpec
    codec: str
    extradata: bytes | None
    width: int
    height: int
    time_base: Fraction
    color: Color
    packets: list[bytes]
    pts: list[int]
    dts: list[int | None]
    frame_pts: list[int]  # the chunk's frames, presentation order
    pix_fmt: str | None = None  # the stream's (black frames are made in it)

    @property
    def nbytes(self) -> int:
        return sum(len(p) for p in self.packets)


def iter_payloads(path: str, index: PacketIndex, chunks: list[ChunkSpec]) -> Iterator[ChunkPayload]:
    """Yield the payload of each chunk in ``chunks`` (ascending index) from one sequential demux.

    Memory stays bounded by the packets between the oldest keyframe still needed and the current
    packet."""
    if not chunks:
        return
    chunks = sorted(chunks, key=lambda c: c.index)
    frame_pts_all = index.frame_pts
    # The earliest packet any later chunk still needs, so the buffer can be trimmed.
    need_from = [min(c.key_packet for c in chunks[i:]) for i in range(len(chunks))]
    with open_input(path) as c:
        vs = c.streams.video[0]
        cc = vs.codec_context
        color = Color(int(cc.color_range), int(cc.colorspace), int(cc.color_primaries),
                      int(cc.color_trc))
        pix_fmt = cc.format.name if cc.format else None
        buf: list[tuple[int, bytes, int, int | None]] = []
        ci = 0
        i = -1
        try:
            for pkt in c.demux(vs):
                if pkt.size == 0:
                    continue
                i += 1
                if i >= need_from[ci]:
                    buf.append((i, bytes(pkt), pkt.pts, pkt.dts))
                # ">=": with B-frames a later chunk may need only packets that come before an
                # earlier chunk's last one (chunks shorter than the reorder delay, sparse VFR)
                while ci < len(chunks) and i >= chunks[ci].last_packet:
                    spec = chunks[ci]
                    sel = [b for b in buf if spec.key_packet <= b[0] <= spec.last_packet]
                    yield ChunkPayload(
                        spec=spec, codec=cc.name, extradata=cc.extradata, width=cc.width,
                        height=cc.height, time_base=vs.time_base, color=color,
                        packets=[b[1] for b in sel], pts=[b[2] for b in sel],
                        dts=[b[3] for b in sel], pix_fmt=pix_fmt,
                        frame_pts=[int(x) for x in
                                   frame_pts_all[spec.first_frame - spec.context:spec.end_frame]])
                    ci += 1
                    if ci == len(chunks):
                        return
                    buf = [b for b in buf if b[0] >= need_from[ci]]
        except av.error.FFmpegError as e:
            raise MediaError(f"{path}: read error at packet {i} ({e})") from None
    raise MediaError(f"{path}: ended before chunk {chunks[ci].index} (file changed or truncated?)")


NVDEC_CODECS = frozenset({"h264", "hevc", "vp9", "av1", "mpeg2video", "vp8"})


class DeviceFramesUnfit(Exception):
    """A chunk decoded into GPU frames needs mending that only software frames allow (a frame
    to conceal, a size change): the worker decodes that chunk on the CPU instead, which gives
    the same pixels for every frame that did decode."""


@dataclass
class DecodeReport:
    """What decoding a chunk had to mend (it goes into the chunk's stats): ``concealed`` frames
    the decoder gave nothing for (damaged packets), each replaced by the frame before it (or the
    next one at the chunk's start; ``black`` of them black, where no frame of the chunk decoded);
    ``bad_packets`` the decoder refused; ``resized`` frames of another size or pixel format than
    the stream's (a resolution change mid-stream), scaled into the stream's size."""

    concealed: int = 0
    black: int = 0
    bad_packets: int = 0
    resized: int = 0
    hardware: bool = False  # decoded by the GPU's video decoder (NVDEC)

    def to_json(self) -> dict:
        return asdict(self)


def decode_warnings(reports: list[dict], width: int, height: int) -> list[str]:
    """One line per kind of mending the chunks' decodes did (``DecodeReport.to_json()`` each),
    for the user at the job's end."""
    total = {k: sum(int(r.get(k, 0)) for r in reports) for k in DecodeReport.__dataclass_fields__}
    out = []
    if total["concealed"]:
        black = f", {total['black']} of them black (nothing of their chunk decoded)" \
            if total["black"] else ""
        out.append(f"warning: damaged input: {total['concealed']} frame(s) could not be decoded "
                   f"({total['bad_packets']} packet(s) refused by the decoder) and were concealed "
                   f"with the frame before them{black}")
    if total["resized"]:
        out.append(f"warning: the video changes size mid-stream: {total['resized']} frame(s) were "
                   f"scaled to {width}x{height}, aspect ratio kept (black bars)")
    return out


def decoder_context(codec: str, threads: int, hw_device: int | None, on_device: bool = False):
    """(codec context, on the GPU's video decoder or not). ``hw_device``: the CUDA ordinal whose
    NVDEC decodes (``None``: the CPU). Codecs NVDEC lacks, and any failure to open it (no
    driver, no NVDEC, a profile it refuses) give the CPU decoder: both decode to the same pixels
    (H.264/HEVC/VP9/AV1 decoding is exact), so this is a speed choice, never a quality one.
    ``on_device``: frames stay in GPU memory (CUDA frames, read by their planes' device
    pointers), decoded in the calling thread's current CUDA context, the one CuPy and ONNX
    Runtime use (FFmpeg refuses the primary context itself once it is active with flags other
    than its own)."""
    if hw_device is not None and codec in NVDEC_CODECS:
        try:
            from av.codec.hwaccel import HWAccel

            keep = {"is_hw_owned": True, "options": {"primary_ctx": "0", "current_ctx": "1"}} \
                if on_device else {}
            hw = HWAccel("cuda", device=str(hw_device), allow_software_fallback=True, **keep)
            return av.CodecContext.create(codec, "r", hwaccel=hw), True
        except (av.error.FFmpegError, ValueError, TypeError, ImportError):
            pass
    ctx = av.CodecContext.create(codec, "r")
    ctx.thread_type = "AUTO"
    ctx.thread_count = threads
    return ctx, False


def padded_packet(data: bytes) -> av.Packet:
    """A packet holding a copy of ``data`` followed by FFmpeg's zeroed input padding.

    FFmpeg's decoders read up to ``AV_INPUT_BUFFER_PADDING_SIZE`` (64) bytes past a packet's end
    and require them to be zero; ``av.Packet(bytes)`` wraps the bytes object itself, so those
    reads land in whatever Python allocated next. Found by valgrind ("conditional jump depends on
    uninitialised value" inside the H.264 decoder): one run in a few dozen decoded a chunk
    differently and its encoded bytes differed. ``av.Packet(n)`` allocates with ``av_new_packet``
    (padded, padding zeroed)."""
    if not data:
        return av.Packet(data)
    pkt = av.Packet(len(data))
    memoryview(pkt)[:] = data
    return pkt


def decode_payload(payload: ChunkPayload, threads: int = 0,
                   report: DecodeReport | None = None,
                   hw_device: int | None = None, on_device: bool = False) -> Iterator[av.VideoFrame]:
    """Decode a payload and yield exactly its frames, in presentation order, each in the stream's
    size and format. Damage is concealed and counted in ``report``, never retried: decoding is
    deterministic. A frame whose packet is missing from the payload is an error (the demux lost
    it: a bug, not damage). ``hw_device``: decode on that GPU's NVDEC where it can
    (``decoder_context``); frames then come as NV12, or as CUDA frames with ``on_device``
    (where such a chunk needs a frame concealed or resized: ``DeviceFramesUnfit``)."""
    report = report if report is not None else DecodeReport()
    wanted = payload.frame_pts
    lost = len(set(wanted) - set(payload.pts))
    if lost:
        raise MediaError(f"chunk {payload.spec.index}: {lost} of its {len(wanted)} frames have no "
                         "packet in its payload")
    try:
        ctx, report.hardware = decoder_context(payload.codec, threads, hw_device, on_device)
        on_device = on_device and report.hardware  # the CPU decoder's frames can be mended
        if payload.extradata:
            ctx.extradata = payload.extradata
        ctx.width, ctx.height = payload.width, payload.height
    except (av.error.FFmpegError, ValueError) as e:
        raise MediaError(f"chunk {payload.spec.index}: cannot open the {payload.codec} decoder "
                         f"({e})") from None
    conform = Conform(payload.width, payload.height)
    lo, hi = wanted[0], wanted[-1]
    seen = 0
    prev: av.VideoFrame | None = None

    def keep(frames: Iterable[av.VideoFrame]) -> Iterator[av.VideoFrame]:
        nonlocal seen, prev
        for f in frames:
            if f.pts is None or f.pts < lo or f.pts > hi:
                continue
            j = bisect.bisect_left(wanted, f.pts)
            if j < seen or wanted[j] != f.pts:  # not a frame of this chunk (damaged timestamps)
                continue
            if on_device and (seen < j or (f.width, f.height) != conform.size):
                raise DeviceFramesUnfit(f"chunk {payload.spec.index}: frame {j} needs mending")
            f = conform(f)
            while seen < j:  # frames the decoder lost: their neighbour in their place
                yield copy_frame(prev if prev is not None else f, wanted[seen])
                report.concealed += 1
                seen += 1
            seen += 1
            prev = f
            yield f

    for data, pts, dts in zip(payload.packets, payload.pts, payload.dts):
        pkt = padded_packet(data)
        pkt.pts, pkt.time_base = pts, payload.time_base
        if dts is not None:
            pkt.dts = dts
        try:
            out = ctx.decode(pkt)
        except av.error.FFmpegError:  # a damaged packet: the decoder goes on with the next one
            report.bad_packets += 1
            continue
        yield from keep(out)
    try:
        out = ctx.decode(None)
    except av.error.FFmpegError:
        report.bad_packets += 1
        out = []
    yield from keep(out)
    report.resized = conform.changed
    if on_device and seen < len(wanted):
        raise DeviceFramesUnfit(f"chunk {payload.spec.index}: {len(wanted) - seen} frames lost")
    while seen < len(wanted):
        if prev is not None:
            yield copy_frame(prev, wanted[seen])
        else:
            yield black_frame(payload.width, payload.height, payload.pix_fmt or "yuv420p",
                              payload.color.range, wanted[seen], payload.time_base)
            report.black += 1
        report.concealed += 1
        seen += 1


class BgrConverter:
    """Decoded frames to BGR uint8 arrays with the source's YUV matrix and range (one swscale
    context reused for the whole chunk)."""

    def __init__(self, color: Color, height: int):
        self._space = sws_space(color, height)
        self._range = sws_range(color)
        self._sws = av.video.reformatter.VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        if frame.format.name == "bgr24":
            return frame.to_ndarray()
        out = self._sws.reformat(frame, format="bgr24", src_colorspace=self._space,
                                 dst_colorspace=self._space, src_color_range=self._range,
                                 dst_color_range=2, interpolation=SWS_TO_BGR)
        return out.to_ndarray()
