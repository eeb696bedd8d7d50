"""Awkward and damaged inputs, made offline with PyAV: odd sizes, a resolution change
mid-stream, damaged packets, subtitle/timecode/attachment streams."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

from ffray.video import sample


def odd_vp9(path: Path, frames: int = 20, width: int = 161, height: int = 91) -> Path:
    """VP9 4:2:0 at an odd size (libx264 cannot code it as it is)."""
    return sample.write_video(path, sample.pattern_frames(frames, width, height), fps=25,
                              codec="libvpx-vp9", audio=False, gop=10, bframes=0)


def size_change(path: Path, first=(160, 120), second=(192, 108), frames: int = 12) -> Path:
    """One H.264 stream whose second half is coded at another size (a new SPS at its first
    keyframe), in MPEG-TS or remuxed into ``path``'s container; the demuxer reports the first size."""
    tb = Fraction(1, 90000)
    ts = path.with_suffix(".ts")
    with av.open(str(ts), "w") as o:
        s = o.add_stream("h264", rate=25)
        s.width, s.height = first
        s.time_base = tb
        n = 0
        for (w, h), seed in ((first, 0), (second, 5)):
            cc = av.CodecContext.create("libx264", "w")
            cc.width, cc.height, cc.pix_fmt, cc.time_base = w, h, "yuv420p", tb
            cc.framerate = Fraction(25)
            cc.options = {"g": "6", "bf": "2", "preset": "veryfast", "crf": "23"}
            pkts = []
            for f in sample.pattern_frames(frames, w, h, seed=seed):
                vf = av.VideoFrame.from_ndarray(f, format="bgr24")
                vf.pts, vf.time_base = n * 3600, tb
                n += 1
                pkts += cc.encode(vf)
            for p in pkts + cc.encode(None):
                p.stream = s
                o.mux(p)
    if path.suffix == ".ts":
        return ts
    with av.open(str(ts)) as i, av.open(str(path), "w") as o:
        s = o.add_stream_from_template(i.streams.video[0])
        for p in i.demux(i.streams.video[0]):
            if p.size:
                p.stream = s
                o.mux(p)
    ts.unlink()
    return path


def damage_packets(src: Path, dst: Path, which: list[int], keyframes: bool = False) -> list[int]:
    """Copy ``src`` to ``dst`` with the bytes of some video packets inverted (every 7th byte
    after the first 4: a bit-flipped payload the demuxer cannot tell from a good one). ``which``
    counts packets in decode order (keyframes only with ``keyframes``). Returns their pts."""
    with av.open(str(src)) as c:
        pk = [(p.pos, p.size, p.pts) for p in c.demux(video=0)
              if p.size and (p.is_keyframe or not keyframes)]
    data = bytearray(src.read_bytes())
    hit = []
    for j in which:
        pos, size, pts = pk[j]
        for k in range(4, size, 7):
            data[pos + k] ^= 0xFF
        hit.append(pts)
    dst.write_bytes(bytes(data))
    return hit


SRT = "1\n00:00:00,100 --> 00:00:00,800\nHello there\n\n2\n00:00:01,000 --> 00:00:01,500\nSecond line\n"


def with_subtitles(video: Path, out: Path, tmp: Path, attachment: bool = False) -> Path:
    """``video``'s video stream plus an SRT subtitle stream (FFmpeg's srt demuxer reads the
    text; the packets are stream-copied) in Matroska, optionally with a font attachment."""
    srt = tmp / "subs.srt"
    srt.write_text(SRT)
    with av.open(str(video)) as v, av.open(str(srt)) as s, av.open(str(out), "w") as o:
        vs = o.add_stream_from_template(v.streams.video[0])
        ss = o.add_stream_from_template(s.streams.subtitles[0])
        ss.metadata["language"] = "eng"
        if attachment:
            o.add_attachment("font.ttf", "font/ttf", b"\x00\x01\x00\x00fake-font")
        pk = [(float(p.dts * p.time_base), 0, p) for p in v.demux(v.streams.video[0]) if p.size]
        pk += [(float(p.pts * p.time_base), 1, p) for p in s.demux(s.streams.subtitles[0]) if p.size]
        for _, k, p in sorted(pk, key=lambda t: (t[0], t[1])):
            p.stream = (vs, ss)[k]
            o.mux(p)
    return out


def with_timecode(path: Path, timecode: str = "01:00:00:00", frames: int = 12) -> Path:
    """A QuickTime file whose muxer writes a timecode (tmcd) track: a data stream."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 160, 120, "yuv420p"
        out.metadata["timecode"] = timecode
        for i, f in enumerate(sample.pattern_frames(frames, 160, 120)):
            vf = av.VideoFrame.from_ndarray(f, format="bgr24")
            vf.pts = i
            out.mux(vs.encode(vf))
        out.mux(vs.encode(None))
    return path


def subtitle_packets(path: Path) -> list[tuple[bytes, Fraction, Fraction]]:
    with av.open(str(path)) as c:
        if not c.streams.subtitles:
            return []
        s = c.streams.subtitles[0]
        return [(bytes(p), p.pts * p.time_base, p.duration * p.time_base) for p in c.demux(s) if p.size]
