"""Alert episodes: each firing row of ``alerts`` paired with the resolved row that closed it (same
node, GPU and rule; the telemetry's AlertEngine writes both), so the dashboard shows state
(firing / resolved / open: telemetry stopped) and durations.

An episode without a resolved row is *firing* while its GPU is still being sampled (a sample
within ``stale_s`` of ``now``); otherwise its end is unknown (the recorder stopped, or the file
predates schema 3's resolved rows) and it is *open*, lasting at least until the GPU's last sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ffray.analytics.source import Store

STALE_S = 120.0  # a GPU with no sample for this long is no longer being recorded


@dataclass(frozen=True)
class Episode:
    fired: datetime
    node: str
    gpu_uuid: str | None
    gpu_index: int | None
    rule: str
    value: float | None
    threshold: float | None
    message: str
    state: str  # firing | resolved | open
    end: datetime | None  # resolved at; for firing/open: the GPU's last sample
    duration_s: float  # resolved - fired; firing: now - fired; open: last sample - fired (at least)


def episode_state(fired: datetime, resolved: datetime | None, last_seen: datetime | None, now: datetime,
                  stale_s: float = STALE_S) -> tuple[str, datetime | None, float]:
    """(state, end, duration in seconds) of one episode (pure)."""
    if resolved is not None:
        return "resolved", resolved, (resolved - fired).total_seconds()
    if last_seen is not None and (now - last_seen).total_seconds() <= stale_s:
        return "firing", last_seen, max(0.0, (now - fired).total_seconds())
    end = last_seen if last_seen is not None and last_seen >= fired else fired
    return "open", end, (end - fired).total_seconds()


def episodes(store: Store, now: datetime, start=None, end=None, limit: int = 2000,
             last_seen: dict | None = None, stale_s: float = STALE_S) -> list[Episode]:
    """Alert episodes that fired in [start, end] (or that were still firing at ``start``), newest
    first. ``last_seen``: {GPU UUID: its last sample} when the caller has it (the cluster page,
    from the trends it drew: the last sample *in its window*); else it is read from ``gpu``."""
    rows = store.rows("""
        WITH f AS (SELECT * FROM alerts WHERE state IS DISTINCT FROM 'resolved'),
             r AS (SELECT ts, node, coalesce(gpu_uuid, '') AS g, rule FROM alerts WHERE state = 'resolved'),
             paired AS (SELECT f.*, r.ts AS resolved FROM f ASOF LEFT JOIN r
                        ON f.node = r.node AND coalesce(f.gpu_uuid, '') = r.g AND f.rule = r.rule
                        AND r.ts >= f.ts)
        SELECT * FROM paired
        WHERE ($end IS NULL OR ts <= $end) AND ($start IS NULL OR coalesce(resolved, $now) >= $start)
        ORDER BY ts DESC LIMIT $limit""", start=start, end=end, now=now, limit=int(limit))
    # an episode is closed by the first resolved row after it; two firings pair with the same row
    # only if the engine missed a resolve (a restart): the later one owns it, the earlier is open
    seen: set = set()
    for r in rows:  # newest first (the query's order)
        key = (r["node"], r["gpu_uuid"], r["rule"], r["resolved"])
        if r["resolved"] is not None and key in seen:
            r["resolved"] = None
        seen.add(key)
    open_gpus = sorted({r["gpu_uuid"] for r in rows if r["resolved"] is None and r["gpu_uuid"]})
    if last_seen is not None:
        last = last_seen
    else:
        last = {r["gpu_uuid"]: r["last_ts"] for r in store.rows("""
            SELECT gpu_uuid, max(ts) AS last_ts FROM gpu WHERE list_contains($uuids, gpu_uuid)
            GROUP BY gpu_uuid""", uuids=open_gpus)} if open_gpus else {}
    out = []
    for r in rows:
        state, stop, dur = episode_state(r["ts"], r["resolved"], last.get(r["gpu_uuid"]), now, stale_s)
        out.append(Episode(r["ts"], r["node"], r["gpu_uuid"], r["gpu_index"], r["rule"], r["value"],
                           r["threshold"], r["message"], state, stop, dur))
    return out
