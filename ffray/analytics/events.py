"""A job's key events in words, derived from its chunk attempts (``costs.chunk_costs`` rows) and
its GPU curves (``queries.job_trends``): pure functions, table in, events out. The job page and
the job-end report (``report.py``) annotate their charts with them.

- ``faces``: where the video's faces per frame change (runs of chunks, in video order, whose
  rounded faces per frame differ; a level lasting under ``MIN_RUN`` chunks, except at the end,
  is noise and joins the run before it), with what that did to the GPU or to the time per frame:
  "from 3:00 the video has two faces per frame (one before): GPU saturated (mean util 97 %)";
- ``retry``: each failed attempt, where it ran and where the chunk ran next: "chunk 37: attempt 1
  failed on n0 · GPU1 after 4.0 s, retried on n1 · GPU0";
- ``saturated``: periods of at least ``SATURATED_S`` in which the job's GPUs averaged at least
  ``SATURATED_UTIL`` % utilization;
- ``slow``: the ``MAX_SLOW`` slowest chunks whose time per frame is at least ``SLOW`` x the job's
  median (throughput drops), with their faces per frame;
- ``throttled``: chunks whose GPU was throttled in at least half of its samples (one event for
  all of them past ``MAX_THROTTLED``).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

SATURATED_UTIL = 90.0  # % mean utilization of the job's GPUs
SATURATED_S = 10.0  # shortest saturated period worth a word
SLOW = 1.5  # time per frame / the job's median time per frame
MIN_RUN = 2  # chunks a faces-per-frame level must last to count as a change (shorter runs: noise)
MAX_SLOW = 5  # the slowest chunks named; throttled chunks past MAX_THROTTLED become one event
MAX_THROTTLED = 3
FACE_WORDS = ("no faces", "one face", "two faces", "three faces", "four faces", "five faces",
              "six faces")


@dataclass(frozen=True)
class Event:
    kind: str  # faces, retry, saturated, slow, throttled
    text: str
    start: datetime | None  # wall time it is drawn at
    end: datetime | None = None
    chunk: int | None = None
    attempt: int | None = None

    def to_json(self) -> dict:
        return asdict(self)


def clock(seconds: float) -> str:
    """Video time as m:ss (h:mm:ss past an hour)."""
    s = int(round(max(0.0, seconds)))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def faces_words(n: int) -> str:
    return FACE_WORDS[n] if 0 <= n < len(FACE_WORDS) else f"{n} faces"


def _done_by_chunk(chunks: list[dict]) -> list[dict]:
    """The finished attempt of each chunk, in chunk (video) order."""
    best: dict[int, dict] = {}
    for c in chunks:
        if c["status"] == "done" and c["start"] is not None:
            best[c["chunk"]] = c
    return [best[k] for k in sorted(best)]


def _fpf(c: dict) -> float | None:
    return (c.get("faces_detected") or 0) / c["frames"] if c.get("frames") else None


def _per_frame(c: dict) -> float | None:
    return c["seconds"] / c["frames"] if c.get("frames") and c.get("seconds") else None


def video_offsets(done: list[dict], fps: float | None) -> dict[int, float]:
    """Each finished chunk's start in video seconds: the frames of the chunks before it / fps
    (a chunk without a finished attempt counts as the mean chunk)."""
    if not fps or not done:
        return {}
    frames = {c["chunk"]: c.get("frames") or 0 for c in done}
    mean = sum(frames.values()) / len(frames)
    out, t = {}, 0.0
    for k in range(max(frames) + 1):
        if k in frames:
            out[k] = t / fps
        t += frames.get(k, mean)
    return out


def _util(run: list[dict]) -> float | None:
    """Sample-weighted mean GPU utilization of a run of chunks (None without GPU samples)."""
    n = sum(c.get("samples") or 0 for c in run)
    if not n:
        return None
    return sum((c.get("mean_util") or 0.0) * (c.get("samples") or 0) for c in run) / n


def faces_changes(chunks: list[dict], fps: float | None) -> list[Event]:
    """An event where the rounded faces per frame of consecutive chunks (video order) changes."""
    done = [c for c in _done_by_chunk(chunks) if _fpf(c) is not None]
    runs: list[list[dict]] = []
    for c in done:
        if runs and round(_fpf(runs[-1][0])) == round(_fpf(c)):
            runs[-1].append(c)
        else:
            runs.append([c])
    # a level that lasts fewer than MIN_RUN chunks (not at the video's end) joins the run before it
    kept: list[list[dict]] = []
    for i, run in enumerate(runs):
        if kept and len(run) < MIN_RUN and i < len(runs) - 1:
            kept[-1] += run
        elif kept and round(_fpf(kept[-1][0])) == round(_fpf(run[0])):
            kept[-1] += run
        else:
            kept.append(run)
    runs = kept
    at = video_offsets(_done_by_chunk(chunks), fps)
    out = []
    for before, run in zip(runs, runs[1:]):
        first = run[0]
        n, was = round(_fpf(first)), round(_fpf(before[0]))
        k = first["chunk"]
        where = f"from {clock(at[k])}" if k in at else f"from chunk {k}"
        before_words = faces_words(was).split()[0] if was else "none"
        text = f"{where} the video has {faces_words(n)} per frame ({before_words} before)"
        util = _util(run)
        if util is not None and util >= SATURATED_UTIL:
            text += f": GPU saturated (mean util {util:.0f} %)"
        elif util is not None:
            text += f": GPU at {util:.0f} %"
        else:  # no GPU samples (CPU workers): what the change did to the time per frame
            now = [p for c in run if (p := _per_frame(c))]
            was_pf = [p for c in before if (p := _per_frame(c))]
            if now and was_pf:
                text += f": {statistics.median(now) / statistics.median(was_pf):.1f}x the time per frame"
        out.append(Event("faces", text, first["start"], first["end"], chunk=first["chunk"]))
    return out


def default_place(c: dict) -> str:
    gpu = c.get("gpu_uuid")
    node = c.get("node") or "?"
    return f"{node} · GPU {gpu[-8:]}" if gpu else (f"{node} · CPU" if c.get("node") else "")


def retries(chunks: list[dict], place: Callable[[dict], str] = default_place) -> list[Event]:
    """One event per failed attempt: where it ran, after how long, and where the chunk ran next."""
    out = []
    for c in chunks:
        if c["status"] == "done":
            continue
        later = sorted((o for o in chunks if o["chunk"] == c["chunk"] and o["attempt"] > c["attempt"]),
                       key=lambda o: o["attempt"])
        here = place(c)
        text = f"chunk {c['chunk']}: attempt {c['attempt']} failed" + (f" on {here}" if here else "") + \
            f" after {c['seconds'] or 0:.1f} s"
        if later:
            there = place(later[0])
            text += ", retried" + (f" on {there}" if there else "")
        else:
            text += ", not retried"
        out.append(Event("retry", text, c["start"], c["end"], chunk=c["chunk"], attempt=c["attempt"]))
    return out


def saturated_periods(buckets: list[tuple[datetime, float]], bucket_s: float,
                      level: float = SATURATED_UTIL, min_s: float = SATURATED_S) -> list[Event]:
    """Periods where the job's mean GPU utilization per bucket (``(bucket start, mean util)``,
    sorted) stays >= ``level`` for at least ``min_s``."""
    out: list[Event] = []
    run: list[tuple[datetime, float]] = []
    step = timedelta(seconds=bucket_s)

    def close():
        if run and len(run) * bucket_s >= min_s:
            mean = sum(u for _, u in run) / len(run)
            s, e = run[0][0], run[-1][0] + step
            out.append(Event("saturated", f"GPUs saturated for {(e - s).total_seconds():.0f} s "
                             f"(mean util {mean:.0f} %)", s, e))

    for b, u in buckets:
        if u is not None and u >= level and (not run or b - run[-1][0] <= step):
            run.append((b, u))
            continue
        close()
        run = [(b, u)] if u is not None and u >= level else []
    close()
    return out


def job_buckets(trend) -> list[tuple[datetime, float]]:
    """(bucket, mean utilization over the job's GPUs) from a ``job_trends`` table."""
    if trend is None or not trend.num_rows:
        return []
    acc: dict[datetime, list[float]] = {}
    for b, u in zip(trend["bucket"].to_pylist(), trend["util_mean"].to_pylist()):
        if u is not None:
            acc.setdefault(b, []).append(u)
    return [(b, sum(v) / len(v)) for b, v in sorted(acc.items())]


def slow_chunks(chunks: list[dict]) -> list[Event]:
    """Chunks whose time per frame is >= ``SLOW`` x the job's median (throughput drops)."""
    done = _done_by_chunk(chunks)
    per = {c["chunk"]: p for c in done if (p := _per_frame(c))}
    if len(per) < 3:
        return []
    median = statistics.median(per.values())
    slow = sorted((c for c in done if median and per.get(c["chunk"], 0) >= SLOW * median),
                  key=lambda c: -per[c["chunk"]])[:MAX_SLOW]
    out = []
    for c in slow:
        p = per[c["chunk"]]
        fpf = _fpf(c)
        why = f", {fpf:.1f} faces per frame" if fpf is not None else ""
        out.append(Event("slow", f"chunk {c['chunk']}: {1 / p:.1f} frames/s, {p / median:.1f}x the "
                         f"median time per frame{why}", c["start"], c["end"], chunk=c["chunk"]))
    return out


def throttled(chunks: list[dict]) -> list[Event]:
    """Chunks whose GPU was throttled in at least half of their samples; past MAX_THROTTLED
    chunks one event names them all."""
    hot = [c for c in _done_by_chunk(chunks) if (c.get("throttled_share") or 0) >= 0.5]
    if len(hot) > MAX_THROTTLED:
        names = ", ".join(str(c["chunk"]) for c in hot[:MAX_THROTTLED])
        return [Event("throttled", f"{len(hot)} chunks ({names} and {len(hot) - MAX_THROTTLED} more): GPU "
                      "throttled in at least half of their samples", hot[0]["start"], hot[-1]["end"],
                      chunk=hot[0]["chunk"])]
    return [Event("throttled", f"chunk {c['chunk']}: GPU throttled in {c['throttled_share']:.0%} of samples",
                  c["start"], c["end"], chunk=c["chunk"]) for c in hot]


def job_events(chunks: list[dict], trend=None, bucket_s: float = 1.0, fps: float | None = None,
               place: Callable[[dict], str] = default_place) -> list[Event]:
    """Every event of a job, by time."""
    found = faces_changes(chunks, fps) + retries(chunks, place) + \
        saturated_periods(job_buckets(trend), bucket_s) + slow_chunks(chunks) + throttled(chunks)
    far = datetime.max.replace(tzinfo=None)
    return sorted(found, key=lambda e: (e.start.replace(tzinfo=None) if e.start else far, e.kind))
