"""Chunk planning (pure): split the frames into time ranges and say which packets each needs.

A chunk is the frames ``[first_frame, end_frame)`` in presentation order. To decode them exactly a
worker needs the packets ``[key_packet, last_packet]`` in decode order: ``key_packet`` is the latest
keyframe that comes, in decode order, before every frame of the chunk and is presented no later than
its first frame (so open-GOP leading pictures still find their references); ``last_packet`` is the
last packet, in decode order, that carries a frame of the chunk. Frames outside the chunk that this
range decodes are dropped by pts, so seeking never relies on seconds.

Every frame a chunk decodes before its first (from the keyframe on) costs a full decode. A chunk
that starts on a keyframe (or its context frames do) decodes only its own frames: ``snap`` moves
each boundary to the nearest keyframe (plus the context) within that share of a chunk's length.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np

from ffray.errors import FFrayError
from ffray.video.probe import PacketIndex


@dataclass(frozen=True)
class ChunkSpec:
    index: int
    first_frame: int  # presentation-order frame numbers of the (trimmed) source
    end_frame: int
    first_pts: int
    last_pts: int
    key_packet: int  # decode-order packet index of the keyframe to start decoding at
    key_pts: int
    last_packet: int  # decode-order packet index of the last packet needed
    context: int = 0  # frames before ``first_frame`` decoded too (face tracks warm up), not encoded

    @property
    def frames(self) -> int:
        return self.end_frame - self.first_frame

    @property
    def decoded_frames(self) -> int:
        """Frames the worker's decoder yields: the context frames, then the chunk's."""
        return self.frames + self.context

    def to_json(self) -> dict:
        return asdict(self)


def select_frames(frame_pts: np.ndarray, time_base: Fraction, trim_start: float | None,
                  trim_end: float | None) -> tuple[int, int]:
    """Frame range [a, b) whose presentation time lies in [trim_start, trim_end) seconds."""
    if trim_start is not None and trim_start < 0 or trim_end is not None and trim_end <= 0:
        raise FFrayError("--trim-start must be >= 0 and --trim-end > 0")
    t0 = int(frame_pts[0])
    secs = (frame_pts - t0).astype(np.float64) * float(time_base)
    a = 0 if trim_start is None else int(np.searchsorted(secs, trim_start - 1e-9, side="left"))
    b = len(frame_pts) if trim_end is None else int(np.searchsorted(secs, trim_end - 1e-9, side="left"))
    if b <= a:
        raise FFrayError(f"the trim range [{trim_start}, {trim_end}) s selects no frames "
                         f"(video is {secs[-1]:.3f} s long)")
    return a, b


# chunks a video is cut into by default, within the bounds below: a multiple of the usual slot
# counts (a 16-CPU worker runs 16 chunks at once), so the last wave of chunks fills every slot
AUTO_CHUNKS = 32
AUTO_MIN_S, AUTO_MAX_S = 2.0, 10.0


def auto_chunk_seconds(duration_s: float) -> float:
    """The default chunk length, from the input alone (never from the cluster: chunk boundaries
    are where encoders restart, and the output must not depend on where it ran): about
    ``AUTO_CHUNKS`` chunks, so one worker's many encoders all have work, at least 2 s (the cost
    of a chunk's start: an IDR frame, decoding from the preceding keyframe) and at most 10 s."""
    return float(min(AUTO_MAX_S, max(AUTO_MIN_S, round(duration_s / AUTO_CHUNKS, 2))))


# what a job uses: boundaries move by up to a quarter of a chunk to start decoding on a keyframe
SNAP_TO_KEYFRAMES = 0.25

# auto planning tapers the last third of an input of at least TAPER_MIN_CHUNKS chunks into
# half-length chunks (measured on the H200: the last wave ends over ~2 s instead of ~3.5-4 s)
CHUNK_TAPER, TAPER_MIN_CHUNKS = 1 / 3, 16


def auto_chunk_taper(duration_s: float, chunk_seconds: float) -> float:
    """The default taper, from the input alone: ``CHUNK_TAPER`` where the input makes at least
    ``TAPER_MIN_CHUNKS`` chunks (several waves of a worker's chunks, so the last wave's spread
    costs a share of the job), else none (a short input's half chunks would only cost
    keyframe decoding)."""
    return CHUNK_TAPER if duration_s >= TAPER_MIN_CHUNKS * chunk_seconds else 0.0


def plan_chunks(index: PacketIndex, time_base: Fraction, chunk_seconds: float,
                frame_range: tuple[int, int] | None = None,
                min_tail: float = 0.25, context: int = 0, snap: float = 0.0,
                taper: float = 0.0) -> list[ChunkSpec]:
    """Split frames ``frame_range`` into chunks of about ``chunk_seconds`` (by timestamps, so VFR
    sources get equal durations); a tail shorter than ``min_tail`` of a chunk joins the one before.
    ``context``: up to that many frames before each chunk (within the range) are decoded with it,
    so per-chunk state (face tracks, smoothing) has history at the boundary. ``snap``: each
    boundary moves to the nearest keyframe + ``context`` within that share of a chunk's length
    (``SNAP_TO_KEYFRAMES``), so the chunk's decoding starts with its first decoded frame.
    ``taper``: the last share of the range (from a whole chunk's boundary on) is cut into chunks
    of half the length, so the last wave of a job's chunks ends closer together
    (``auto_chunk_taper``; like every option here it depends on the input alone, never on the
    cluster)."""
    if chunk_seconds <= 0:
        raise FFrayError("--chunk-seconds must be > 0")
    order = index.frame_packets  # decode index of each frame, presentation order
    fpts = index.pts[order]
    a, b = frame_range if frame_range is not None else (0, len(order))
    ticks = max(1, int(round(chunk_seconds / float(time_base))))
    rel = fpts[a:b] - fpts[a]
    bucket = rel // ticks
    step = np.full(len(rel), ticks)  # each frame's chunk length
    if taper > 0:
        span = int(rel[-1]) + (int(rel[-1] - rel[-2]) if len(rel) > 1 else 1)
        cut = int((1.0 - min(1.0, float(taper))) * span) // ticks * ticks
        half = max(1, ticks // 2)
        late = rel >= cut
        bucket = np.where(late, cut // ticks + (rel - cut) // half, bucket)
        step = np.where(late, half, step)
    starts = list(a + np.flatnonzero(np.diff(bucket, prepend=-1)))
    if len(starts) > 1:
        tail_ticks = fpts[b - 1] - fpts[starts[-1]] + (fpts[b - 1] - fpts[b - 2] if b - a > 1 else 1)
        if tail_ticks < min_tail * step[starts[-1] - a]:
            starts.pop()
    key_idx = np.flatnonzero(index.key)
    if snap > 0 and len(starts) > 1:
        key_frames = index.key_frames
        # a share of the chunk length (frames, the median of chunks of its kind: full or tapered)
        lengths, kinds = np.diff(starts + [b]), np.array([step[s - a] for s in starts])
        tol = [int(snap * float(np.median(lengths[kinds == k]))) for k in kinds]
        starts = snap_starts(starts, key_frames[key_frames >= a] + int(context), tol, b)
    ends = starts[1:] + [b]
    chunks = []
    for i, (s, e) in enumerate(zip(starts, ends)):
        c = min(int(context), int(s) - a) if context > 0 else 0
        dec = order[s - c:e]
        lo, hi = int(dec.min()), int(dec.max())
        first_pts = int(fpts[s - c])
        # Keyframes early enough in decode order and presented no later than the first frame.
        ok = key_idx[(key_idx <= lo) & (index.pts[key_idx] <= first_pts)]
        if len(ok) == 0:
            raise FFrayError(f"no keyframe before frame {s}: the video cannot be decoded from "
                             "there (does it start with a keyframe?)")
        k = int(ok[-1])
        chunks.append(ChunkSpec(index=i, first_frame=int(s), end_frame=int(e), first_pts=int(fpts[s]),
                                last_pts=int(fpts[e - 1]), key_packet=k,
                                key_pts=int(index.pts[k]), last_packet=hi, context=c))
    return chunks


def snap_starts(starts: list[int], targets: np.ndarray, tol, end: int) -> list[int]:
    """``starts`` (the first kept) each moved to the nearest of ``targets`` (sorted) within
    ``tol`` frames (one number, or one per start), where that keeps every chunk non-empty; else
    left where it is."""
    tols = list(tol) if isinstance(tol, (list, tuple, np.ndarray)) else [tol] * len(starts)
    out = [int(starts[0])]
    for i, s in enumerate(starts[1:], 1):
        tol = tols[i]
        nxt = starts[i + 1] if i + 1 < len(starts) else end
        j = int(np.searchsorted(targets, s))
        near = [int(t) for t in targets[max(0, j - 1):j + 1] if abs(int(t) - s) <= tol
                and out[-1] < t < nxt]
        out.append(min(near, key=lambda t: (abs(t - s), t)) if near else int(s))
    return out
