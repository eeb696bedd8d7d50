"""The source's streams besides video and audio: subtitles, data and attachments (e.g.
Matroska fonts). Each is stream-copied when the output container can hold it, which the muxer
itself decides (a header written to memory); the others are dropped and named in one warning
before the job starts. A timecode track (QuickTime ``tmcd``, a data stream) is not copied but
carried as the video's ``timecode`` (MP4/MOV muxers write a new ``tmcd`` track from it, Matroska
a tag): a copied ``tmcd`` stream is dropped by the mov muxer. Audio: ``ffray.video.assemble``."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import av

KINDS = ("subtitle", "data", "attachment")


@dataclass(frozen=True)
class OtherStream:
    index: int
    kind: str  # one of KINDS
    codec: str
    language: str | None = None

    def describe(self) -> str:
        lang = f", {self.language}" if self.language else ""
        return f"{self.kind} stream #{self.index} ({self.codec}{lang})"

    def to_json(self) -> dict:
        return asdict(self)


def other_streams(c: av.container.InputContainer) -> list[OtherStream]:
    out = []
    for s in c.streams:
        if s.type not in KINDS:
            continue
        if s.type == "attachment":
            codec = s.name or s.mimetype or "attachment"
        elif s.codec_context is not None:
            codec = s.codec_context.name
        else:  # data streams often have no codec: name them by their handler (e.g. TimeCodeHandler)
            codec = s.metadata.get("handler_name") or "data"
        out.append(OtherStream(s.index, s.type, codec, s.language))
    return out


def add_copy(out: av.container.OutputContainer, s):
    """Add a copy of source stream ``s`` to ``out``; the new stream (None for an attachment,
    which the muxer writes with the header)."""
    if s.type == "attachment":
        out.add_attachment(s.name or f"attachment{s.index}", s.mimetype or "application/octet-stream",
                           bytes(s.data or b""))
        return None
    o = out.add_stream_from_template(s)
    if s.language:
        o.metadata["language"] = s.language
    return o


def _fits(fmt: str, s) -> bool:
    try:
        with av.open(io.BytesIO(), "w", format=fmt) as o:
            add_copy(o, s)
            o.start_encoding()
        return True
    except (av.error.FFmpegError, ValueError, TypeError, NotImplementedError):
        return False


def _timecode(metadata) -> str | None:
    """A ``timecode`` entry (Matroska tags are upper case)."""
    return next((v for k, v in metadata.items() if k.lower() == "timecode" and v), None)


def _timecode_track(s) -> bool:
    return s.type == "data" and _timecode(s.metadata) is not None


def source_timecode(c: av.container.InputContainer) -> str | None:
    """The input's start timecode (video stream, timecode track or file metadata), if any."""
    for s in [*c.streams.video[:1], *c.streams.data]:
        if _timecode(s.metadata):
            return _timecode(s.metadata)
    return _timecode(c.metadata)


def split_streams(c: av.container.InputContainer, fmt: str) -> tuple[list[int], list[OtherStream]]:
    """(indices of the streams ``fmt`` can hold, in order; the streams it cannot). Timecode
    tracks are in neither (``source_timecode``)."""
    keep, drop = [], []
    for o in other_streams(c):
        s = c.streams[o.index]
        if _timecode_track(s):
            continue
        (keep.append(o.index) if _fits(fmt, s) else drop.append(o))
    return keep, drop


def dropped_note(dropped: list[OtherStream], output_suffix: str) -> str | None:
    if not dropped:
        return None
    return (f"warning: {output_suffix} files cannot hold the input's "
            f"{', '.join(d.describe() for d in dropped)}: dropped (.mkv keeps text subtitles and "
            "attachments)")
