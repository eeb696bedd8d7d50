"""Assemble encoded chunks and the source audio into the output file.

Every chunk is verified before anything is written (frame count, exact frame pts, first packet a
keyframe, codec/profile/pix_fmt/size/time base/extradata equal to chunk 0). Video packets keep
their source presentation timestamps; decode timestamps are recomputed for the whole file as the
presentation timeline shifted by the largest reorder delay of any chunk, so they are continuous and
strictly increasing across chunk joins. Audio is stream-copied (AAC re-encode only when the output
container cannot carry the codec), and so are the subtitle, data and attachment streams the
output container can hold (``ffray.video.streams``). The result goes to a temp name beside the
destination and is renamed into place at the end; a failed write (no space) leaves nothing there.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ffray.errors import FFrayError, MediaError, StorageError
from ffray.video.plan import ChunkSpec
from ffray.video.probe import MediaInfo, open_input
from ffray.video.streams import add_copy, source_timecode, split_streams

CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
# libavformat's codec query accepts more than its mp4 muxer writes (PCM, for one): mp4 audio that
# is known to stream-copy; anything else is re-encoded to AAC.
MP4_AUDIO = {"aac", "mp3", "mp2", "ac3", "eac3", "alac", "flac", "opus", "dts", "truehd"}


_STD_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def can_copy_audio(fmt: str, codec: str, supported: set[str]) -> bool:
    return codec in MP4_AUDIO if fmt == "mp4" else codec in supported


def output_format(path: str | os.PathLike) -> str:
    ext = Path(path).suffix.lower()
    if ext not in CONTAINERS:
        raise MediaError(f"unsupported output extension {ext or '(none)'!r}; use one of "
                         f"{', '.join(sorted(CONTAINERS))}")
    return CONTAINERS[ext]


def muxer_options(fmt: str, time_base: Fraction) -> dict[str, str]:
    """The output muxer's options. MP4/MOV: the index up front, the chunks' time base as the movie
    timescale. Matroska: ``bitexact``, since its muxer otherwise writes the wall-clock date and a
    random segment UID, and the same job must give the same bytes (the writing-app tag then says
    ``Lavf`` without a version)."""
    if fmt in ("mp4", "mov"):
        return {"movflags": "+faststart", "movie_timescale": str(time_base.denominator)}
    if fmt == "matroska":
        return {"fflags": "+bitexact"}
    return {}


@dataclass(frozen=True)
class ChunkCheck:
    params: tuple
    time_base: Fraction
    reorder_delay: int


# Chunk files are opened to demux, never to decode: without this, opening one (FFmpeg's stream
# probing) decodes its first frames, ~37 ms a 1080p chunk on the 2-core VM, twice per chunk (check,
# then mux): 3.3 of an assembly's 3.6 s for a 2-minute input in 36 chunks.
DEMUX_ONLY = {"stream_options": [{"skip_frame": "all"}]}
IN_EXTRADATA = "(in extradata)"  # profile and pixel format: the parameter sets say them


def _params(s, decoded: bool = False) -> tuple:
    """What every chunk must share. Opened demux-only, profile and pixel format are unknown;
    they are in the parameter sets (extradata), which are compared byte for byte. A chunk
    without extradata (in-band parameter sets) is opened again to decode them."""
    cc = s.codec_context
    extra = bytes(cc.extradata or b"")
    if extra and not decoded:
        profile = pix_fmt = IN_EXTRADATA
    else:
        profile, pix_fmt = cc.profile, cc.format.name if cc.format else None
    return (cc.name, profile, pix_fmt, cc.width, cc.height, s.time_base, extra)


def check_chunk(path: Path, spec: ChunkSpec, source_tb: Fraction) -> ChunkCheck:
    """Verify one encoded chunk file against its plan entry; raise MediaError if it is off."""
    try:
        with av.open(str(path), **DEMUX_ONLY) as c:
            s = c.streams.video[0]
            pts, keys = [], []
            for p in c.demux(s):
                if p.size:
                    pts.append(p.pts)
                    keys.append(p.is_keyframe)
            params, tb = _params(s), s.time_base
        if not params[-1]:  # no parameter sets in the header: decoding says the profile
            with av.open(str(path)) as c:
                params = _params(c.streams.video[0], decoded=True)
    except (av.error.FFmpegError, IndexError) as e:
        raise MediaError(f"chunk {spec.index}: unreadable chunk file {path} ({e})") from None
    if len(pts) != spec.frames:
        raise MediaError(f"chunk {spec.index}: {len(pts)} frames, expected {spec.frames}")
    if not keys or not keys[0]:
        raise MediaError(f"chunk {spec.index}: first packet is not a keyframe")
    got = sorted(Fraction(p) * tb for p in pts)
    if got[0] != spec.first_pts * source_tb or got[-1] != spec.last_pts * source_tb:
        raise MediaError(f"chunk {spec.index}: timestamps {got[0]}..{got[-1]} s do not match the "
                         f"plan {spec.first_pts * source_tb}..{spec.last_pts * source_tb} s")
    rank = np.argsort(np.argsort(np.asarray(pts)))
    delay = int(max(0, (np.arange(len(pts)) - rank).max()))
    return ChunkCheck(params=params, time_base=tb, reorder_delay=delay)


def verify_chunks(paths: list[Path], specs: list[ChunkSpec], source_tb: Fraction) -> list[ChunkCheck]:
    checks = [check_chunk(p, s, source_tb) for p, s in zip(paths, specs, strict=True)]
    for s, ch in zip(specs, checks):
        if ch.params != checks[0].params:
            names = ("codec", "profile", "pix_fmt", "width", "height", "time base", "extradata")
            diff = [n for n, a, b in zip(names, ch.params, checks[0].params) if a != b]
            raise MediaError(f"chunk {s.index}: {', '.join(diff)} differ from chunk 0")
    return checks


def _video_packets(paths: list[Path], frame_pts: np.ndarray, delay: int, offset: int,
                   stream) -> Iterator[tuple[float, av.Packet]]:
    """Chunk packets in order, pts shifted by ``offset``, dts = presentation timeline - delay."""
    S = frame_pts - offset  # output frame pts (chunk time base), presentation order
    step = int(S[1] - S[0]) if len(S) > 1 else 1
    i = 0
    for path in paths:
        with av.open(str(path), **DEMUX_ONLY) as c:
            for p in c.demux(c.streams.video[0]):
                if not p.size:
                    continue
                j = i - delay
                dts = int(S[j]) if j >= 0 else int(S[0]) + j * step
                p.pts -= offset
                p.dts = dts
                p.stream = stream
                i += 1
                yield float(dts * stream.time_base), p


def _source_packets(src: av.container.InputContainer, pairs, window: tuple[float, float] | None,
                   shift_s: float) -> Iterator[tuple[float, av.Packet]]:
    by_index = {i.index: (o, transcode, int(round(shift_s / i.time_base))) for i, o, transcode in pairs}
    for p in src.demux([i for i, _, _ in pairs]):
        if p.size == 0 or p.pts is None:
            continue
        out, transcode, shift = by_index[p.stream.index]
        tb = p.time_base
        t = float(p.pts * tb)
        if window and not (window[0] <= t < window[1]):
            continue
        if transcode is not None:
            for frame in p.decode():
                frame.pts = None
                for rf in transcode.resample(frame):
                    for q in out.encode(rf):
                        yield float(q.pts * q.time_base) if q.pts is not None else t, q
            continue
        p.pts -= shift
        if p.dts is not None:
            p.dts -= shift
        p.stream = out
        yield float((p.dts if p.dts is not None else p.pts) * tb), p


def assemble(chunk_paths: list[Path], specs: list[ChunkSpec], source: str, info: MediaInfo,
             output: Path, trimmed: bool, source_frame_pts: np.ndarray) -> dict:
    """Join verified chunks and the source audio into ``output`` (atomically). Returns a summary.

    ``source_frame_pts`` are the selected frames' pts in the source time base (presentation
    order). With ``trimmed`` the output starts at 0 and audio is cut to the selected window."""
    fmt = output_format(output)
    src_tb = info.video.time_base
    checks = verify_chunks(chunk_paths, specs, src_tb)
    ctb = checks[0].time_base
    scale = src_tb / ctb
    if scale.denominator != 1:
        raise MediaError(f"chunk time base {ctb} does not divide the source's {src_tb}")
    frame_pts = source_frame_pts.astype(np.int64) * int(scale)
    offset = int(frame_pts[0]) if trimmed else 0
    delay = max(c.reorder_delay for c in checks)
    tmp = output.with_name(f".{output.name}.ffray-tmp-{os.getpid()}{output.suffix}")
    opts = muxer_options(fmt, ctb)
    try:
        with av.open(str(chunk_paths[0])) as tpl, open_input(source) as src, \
                av.open(str(tmp), "w", format=fmt, options=opts) as out:
            out.metadata.update({k: v for k, v in src.metadata.items()
                                 if k.lower() not in ("encoder", "major_brand", "minor_version",
                                                      "compatible_brands")})
            vs = out.add_stream_from_template(tpl.streams.video[0])
            if fmt in ("mp4", "mov") and vs.codec_context.name == "hevc":
                vs.codec_tag = "hvc1"
            if info.video.rotation:
                vs.set_display_rotation(info.video.rotation)
            timecode = source_timecode(src)
            if timecode:  # muxers write it as a tmcd track (MP4/MOV, needs the rate) or a tag
                vs.metadata["timecode"] = timecode
                if info.video.avg_rate:
                    vs.codec_context.framerate = info.video.avg_rate
            pairs = []
            for a in src.streams.audio:
                if can_copy_audio(fmt, a.codec_context.name, out.supported_codecs):
                    o = out.add_stream_from_template(a)
                    if a.language:
                        o.metadata["language"] = a.language
                    pairs.append((a, o, None))
                else:
                    # AAC needs a standard channel layout (PCM often has none)
                    layout = _STD_LAYOUTS.get(a.codec_context.channels, "stereo")
                    o = out.add_stream("aac", rate=a.codec_context.sample_rate, layout=layout)
                    pairs.append((a, o, av.AudioResampler(format="fltp", layout=layout,
                                                          rate=a.codec_context.sample_rate)))
            for i in split_streams(src, fmt)[0]:  # subtitles, data, attachments it can hold
                o = add_copy(out, src.streams[i])
                if o is not None:
                    pairs.append((src.streams[i], o, None))
            window = None
            shift_s = 0.0
            if trimmed:
                t0 = float(source_frame_pts[0] * src_tb)
                dur = float((source_frame_pts[-1] - source_frame_pts[0]) * src_tb)
                step = float((source_frame_pts[1] - source_frame_pts[0]) * src_tb) \
                    if len(source_frame_pts) > 1 else 0.0
                window, shift_s = (t0, t0 + dur + step), t0
            streams = [_video_packets(chunk_paths, frame_pts, delay, offset, vs)]
            if pairs:
                streams.append(_source_packets(src, pairs, window, shift_s))
            counts = {"video": 0, "audio": 0, "subtitle": 0, "data": 0}
            for _, p in heapq.merge(*streams, key=lambda tp: tp[0]):
                out.mux(p)
                counts[p.stream.type] += 1
            for _, o, transcode in pairs:
                if transcode is not None:
                    out.mux(o.encode(None))
        os.replace(tmp, output)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, FFrayError):  # no space, read-only, ...
            raise StorageError(f"cannot write the output {output}: "
                               f"{e.strerror or e} (nothing was left there)") from None
        raise
    return {"video_packets": counts["video"], "audio_packets": counts["audio"],
            "subtitle_packets": counts["subtitle"], "data_packets": counts["data"],
            "reorder_delay": delay, "time_base": str(ctb)}
