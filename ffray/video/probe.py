"""Probe a media file with PyAV: stream facts plus a packet index, without decoding the video.

The packet index (decode order) is what chunk planning and frame-exact extraction work from:
every non-empty video packet's pts, dts, keyframe flag and size. Frames are the non-discarded
packets, in presentation (pts) order.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ffray.errors import MediaError
from ffray.settings import sha256_file
from ffray.video.streams import OtherStream, other_streams

# AVColorSpace / AVColorRange / AVColorPrimaries / AVColorTransferCharacteristic names.
_SPACES = {0: "rgb", 1: "bt709", 2: "unspecified", 4: "fcc", 5: "bt470bg", 6: "smpte170m",
           7: "smpte240m", 8: "ycgco", 9: "bt2020nc", 10: "bt2020c"}
_RANGES = {0: "unspecified", 1: "tv", 2: "pc"}
_PRIMARIES = {1: "bt709", 2: "unspecified", 4: "bt470m", 5: "bt470bg", 6: "smpte170m",
              7: "smpte240m", 8: "film", 9: "bt2020", 12: "smpte432"}
_TRCS = {1: "bt709", 2: "unspecified", 4: "gamma22", 5: "gamma28", 6: "smpte170m",
         7: "smpte240m", 8: "linear", 13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12",
         16: "smpte2084", 18: "arib-std-b67"}


@dataclass(frozen=True)
class Color:
    """Colour description as the AVCodecParameters integers (kept exactly for the encoder)."""

    range: int = 0
    space: int = 2
    primaries: int = 2
    trc: int = 2

    def describe(self) -> dict:
        return {"range": _RANGES.get(self.range, str(self.range)),
                "space": _SPACES.get(self.space, str(self.space)),
                "primaries": _PRIMARIES.get(self.primaries, str(self.primaries)),
                "transfer": _TRCS.get(self.trc, str(self.trc))}


@dataclass(frozen=True)
class AudioInfo:
    index: int
    codec: str
    sample_rate: int
    channels: int
    layout: str
    time_base: str
    packets: int
    language: str | None = None


@dataclass(frozen=True)
class VideoInfo:
    index: int
    codec: str
    profile: str | None
    width: int
    height: int
    pix_fmt: str
    time_base: Fraction
    avg_rate: Fraction | None
    real_rate: Fraction | None
    frame_count: int
    vfr: bool
    rotation: int
    color: Color
    keyframes: int
    start_pts: int
    duration_s: float


@dataclass(frozen=True)
class PacketIndex:
    """Video packets in decode order (non-empty ones); ``discard`` marks edit-list-cut frames."""

    pts: np.ndarray  # int64
    dts: np.ndarray  # int64, missing dts -> INT64_MIN
    key: np.ndarray  # bool
    discard: np.ndarray  # bool
    size: np.ndarray  # int64

    @property
    def frame_packets(self) -> np.ndarray:
        """Decode indices of the frames, in presentation order."""
        idx = np.flatnonzero(~self.discard)
        return idx[np.argsort(self.pts[idx], kind="stable")]

    @property
    def frame_pts(self) -> np.ndarray:
        return self.pts[self.frame_packets]

    @property
    def key_frames(self) -> np.ndarray:
        """Presentation-order frame numbers of the keyframes, ascending."""
        order = self.frame_packets
        return np.flatnonzero(self.key[order])


@dataclass(frozen=True)
class MediaInfo:
    path: str
    format: str
    size_bytes: int
    duration_s: float | None
    bit_rate: int | None
    video: VideoInfo
    audio: tuple[AudioInfo, ...] = field(default_factory=tuple)
    metadata: dict = field(default_factory=dict)
    others: tuple[OtherStream, ...] = field(default_factory=tuple)  # subtitles, data, attachments

    def to_json(self) -> dict:
        v = asdict(self.video)
        v["time_base"] = str(self.video.time_base)
        v["avg_frame_rate"] = _frac(self.video.avg_rate)
        v["real_frame_rate"] = _frac(self.video.real_rate)
        del v["avg_rate"], v["real_rate"]
        v["color"] = self.video.color.describe()
        return {"path": self.path, "format": self.format, "size_bytes": self.size_bytes,
                "duration_s": self.duration_s, "bit_rate": self.bit_rate, "video": v,
                "audio": [asdict(a) for a in self.audio], "metadata": self.metadata,
                "others": [o.to_json() for o in self.others]}


def _frac(x: Fraction | None) -> str | None:
    return None if x is None else f"{x.numerator}/{x.denominator}"


def open_input(path: str | os.PathLike) -> av.container.InputContainer:
    """Open a media file, turning every way it can fail into one clear MediaError."""
    p = Path(path)
    if not p.exists():
        raise MediaError(f"input not found: {p}")
    if p.is_dir():
        raise MediaError(f"input is a directory, not a video file: {p}")
    if not os.access(p, os.R_OK):
        raise MediaError(f"cannot read input (permission denied): {p}")
    if p.stat().st_size == 0:
        raise MediaError(f"input is empty (0 bytes): {p}")
    try:
        return av.open(str(p), "r")
    except av.error.FFmpegError as e:
        raise MediaError(f"cannot open {p}: not a readable media file ({_why(e)})") from None


def _why(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e).split(":")[0] or type(e).__name__


def probe(path: str | os.PathLike) -> tuple[MediaInfo, PacketIndex]:
    """Read stream facts and the video packet index. Raises MediaError on unusable input."""
    p = Path(path)
    with open_input(p) as c:
        if not c.streams.video:
            raise MediaError(f"no video stream in {p}")
        if c.format.name == "image2" or c.format.name.endswith("_pipe"):
            raise MediaError(f"{p} is a still image, not a video")
        vs = c.streams.video[0]
        audio_streams = list(c.streams.audio)
        cols = {s.index: ([], [], [], [], []) for s in [vs]}
        audio_counts = {s.index: 0 for s in audio_streams}
        try:
            for pkt in c.demux([vs, *audio_streams]):
                if pkt.size == 0:
                    continue
                if pkt.stream.index == vs.index:
                    if pkt.pts is None:
                        raise MediaError(f"video packet without timestamp in {p}; remux it first")
                    if pkt.is_corrupt:
                        raise MediaError(f"{p} is truncated or corrupt "
                                         f"(damaged video packet at pts {pkt.pts})")
                    pts, dts, key, disc, size = cols[vs.index]
                    pts.append(pkt.pts)
                    dts.append(pkt.dts if pkt.dts is not None else np.iinfo(np.int64).min)
                    key.append(pkt.is_keyframe)
                    disc.append(pkt.is_discard)
                    size.append(pkt.size)
                else:
                    audio_counts[pkt.stream.index] += 1
        except av.error.FFmpegError as e:
            raise MediaError(f"{p} is truncated or corrupt ({_why(e)})") from None
        pts, dts, key, disc, size = cols[vs.index]
        index = PacketIndex(np.asarray(pts, np.int64), np.asarray(dts, np.int64),
                            np.asarray(key, bool), np.asarray(disc, bool),
                            np.asarray(size, np.int64))
        frame_count = int((~index.discard).sum())
        if frame_count == 0:
            raise MediaError(f"no video frames in {p}")
        if not index.key.any():
            raise MediaError(f"no keyframe in the video stream of {p}")
        cc = vs.codec_context
        tb = vs.time_base
        fpts = index.frame_pts
        deltas = np.diff(fpts)
        if len(np.unique(fpts)) != len(fpts):
            raise MediaError(f"duplicate frame timestamps in {p}; remux it first")
        vfr = bool(len(deltas) > 1 and (deltas.max() - deltas.min()) > max(1, 0.002 * deltas.min()))
        last_dur = int(np.median(deltas)) if len(deltas) else 0
        duration_s = float((int(fpts[-1]) - int(fpts[0]) + last_dur) * tb)
        video = VideoInfo(
            index=vs.index, codec=cc.name, profile=cc.profile, width=cc.width, height=cc.height,
            pix_fmt=cc.format.name if cc.format else "unknown", time_base=tb,
            avg_rate=vs.average_rate, real_rate=vs.base_rate, frame_count=frame_count, vfr=vfr,
            rotation=_rotation(c, vs, p), color=Color(int(cc.color_range), int(cc.colorspace),
                                                     int(cc.color_primaries), int(cc.color_trc)),
            keyframes=int(index.key.sum()), start_pts=int(fpts[0]), duration_s=duration_s)
        audio = tuple(
            AudioInfo(index=s.index, codec=s.codec_context.name, sample_rate=s.codec_context.sample_rate,
                      channels=s.codec_context.channels, layout=s.codec_context.layout.name,
                      time_base=str(s.time_base), packets=audio_counts[s.index],
                      language=s.language)
            for s in audio_streams)
        info = MediaInfo(path=str(p), format=c.format.name, size_bytes=p.stat().st_size,
                         duration_s=(c.duration / 1e6) if c.duration else None,
                         bit_rate=c.bit_rate or None, video=video, audio=audio,
                         metadata=dict(c.metadata), others=tuple(other_streams(c)))
    return info, index


FIRST_FRAME_PACKETS = 1000  # packets tried for a first decodable frame before refusing the input


def _rotation(c: av.container.InputContainer, vs, path: Path) -> int:
    """Display rotation (counter-clockwise degrees) from the first decoded frame's side data. A
    stream of which no frame decodes (damaged from its start over ``FIRST_FRAME_PACKETS`` packets,
    or a codec this FFmpeg cannot decode) is refused here, before any work; damage later on is
    concealed while chunks decode (``ffray.video.decode``)."""
    try:
        c.seek(0, stream=vs)
    except av.error.FFmpegError:
        pass
    tried = 0
    try:
        for pkt in c.demux(vs):
            if not pkt.size:
                continue
            tried += 1
            try:
                frames = pkt.decode()
            except av.error.FFmpegError:  # a damaged packet: try the next one
                frames = []
            if frames:
                return int(round(frames[0].rotation)) % 360
            if tried >= FIRST_FRAME_PACKETS:
                break
    except av.error.FFmpegError:
        pass
    raise MediaError(f"no frame of the {vs.codec_context.name} video stream of {path} could be "
                     f"decoded (first {tried} packets tried): damaged or unsupported")


def fingerprint(path: str | os.PathLike, index: PacketIndex) -> str:
    """SHA-256 of the file bytes plus its packet index: a resumed job must see the same input."""
    h = sha256_file(path, hashlib.sha256())
    h.update(index.pts.tobytes())
    h.update(index.size.tobytes())
    return h.hexdigest()
