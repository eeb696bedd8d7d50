"""Cluster-wide queries for the dashboard and the CLI: GPU inventory, time-bucketed trends
(min/mean/max per bucket, aggregated in DuckDB so only a few hundred points per series leave it),
throttle periods and a job's GPU curves (alerts: ``alertstate``)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pyarrow as pa

from ffray.analytics.source import Store

NICE_BUCKETS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400]


def bucket_seconds(span_s: float, max_points: int) -> int:
    """The smallest 'nice' bucket that keeps ``span_s`` within ``max_points`` buckets."""
    need = max(1.0, span_s / max(1, max_points))
    return next((b for b in NICE_BUCKETS if b >= need), int(math.ceil(need)))


def inventory(store: Store, start=None, end=None) -> list[dict]:
    """Every GPU seen (in the window): node, UUID, index, model, memory, samples, last sample."""
    return store.rows("""
        SELECT node, gpu_uuid, any_value(gpu_index) AS gpu_index, any_value(gpu_name) AS gpu_name,
               max(mem_total_bytes) AS mem_total_bytes, count(*) AS samples, max(ts) AS last_ts
        FROM gpu WHERE ($start IS NULL OR ts >= $start) AND ($end IS NULL OR ts <= $end)
        GROUP BY node, gpu_uuid ORDER BY node, gpu_index, gpu_uuid""", start=start, end=end)


TRENDS_SQL = """
SELECT {key} AS series, to_timestamp(floor(epoch(ts) / $b) * $b) AS bucket,
       min(util_gpu) AS util_min, avg(util_gpu) AS util_mean, max(util_gpu) AS util_max,
       min(mem_used_bytes) AS mem_min, avg(mem_used_bytes) AS mem_mean, max(mem_used_bytes) AS mem_max,
       min(power_w) AS power_min, avg(power_w) AS power_mean, max(power_w) AS power_max,
       min(temp_c) AS temp_min, avg(temp_c) AS temp_mean, max(temp_c) AS temp_max,
       bool_or(throttled) AS throttled, count(*) AS samples
FROM gpu
WHERE ts >= $start AND ts < $end
  AND (len($uuids) = 0 OR list_contains($uuids, gpu_uuid))
  AND (len($nodes) = 0 OR list_contains($nodes, node))
GROUP BY ALL ORDER BY series, bucket
"""


def trends(store: Store, start: datetime, end: datetime, bucket_s: int, uuids=(), nodes=(),
           by: str = "gpu") -> pa.Table:
    """Per series (a GPU, or a node's GPUs together when ``by='node'``) and time bucket:
    min/mean/max of utilization, memory, power and temperature, and whether any sample in the
    bucket was throttled. Only whole buckets in [start, end)."""
    key = {"gpu": "gpu_uuid", "node": "node"}[by]
    return store.sql(TRENDS_SQL.replace("{key}", key), b=int(bucket_s), start=start, end=end,
                     uuids=list(uuids), nodes=list(nodes))


def throttle_periods(table: pa.Table, bucket_s: int) -> list[tuple[datetime, datetime]]:
    """Merged [start, end) periods in which any series was throttled (from ``trends`` output)."""
    import pyarrow.compute as pc

    hot = table.filter(pc.fill_null(table["throttled"], False)) if table.num_rows else table
    marks = sorted(set(hot["bucket"].to_pylist()))
    step, out = timedelta(seconds=bucket_s), []
    for b in marks:
        if out and b <= out[-1][1]:
            out[-1] = (out[-1][0], b + step)
        else:
            out.append((b, b + step))
    return out


def job_window(store: Store, job_id: str) -> dict | None:
    row = store.rows("""
        SELECT min(start) AS start, max("end") AS "end",
               list(DISTINCT gpu_uuid) FILTER (WHERE gpu_uuid IS NOT NULL) AS gpu_uuids
        FROM spans WHERE job_id = $job""", job=job_id)[0]
    return None if row["start"] is None else row


def window_of(chunks: list[dict]) -> dict | None:
    """``job_window`` from a job's ``chunk_costs`` rows (its spans, one per attempt), no query."""
    starts = [c["start"] for c in chunks if c.get("start") is not None]
    if not starts:
        return None
    ends = [c["end"] for c in chunks if c.get("end") is not None]
    uuids = sorted({c["gpu_uuid"] for c in chunks if c.get("gpu_uuid")})
    return {"start": min(starts), "end": max(ends) if ends else max(starts), "gpu_uuids": uuids or None}


def job_trends(store: Store, job_id: str, max_points: int = 600, pad_s: float = 5.0,
               window: dict | None = None) -> tuple[pa.Table, int]:
    """The utilization/memory curves of the GPUs a job used, over its time window (padded);
    ``window``: the job's ``job_window`` when the caller already has it."""
    w = window if window is not None else job_window(store, job_id)
    if w is None or not w["gpu_uuids"]:
        return pa.table({}), 1
    start, end = w["start"] - timedelta(seconds=pad_s), w["end"] + timedelta(seconds=pad_s)
    b = bucket_seconds((end - start).total_seconds(), max_points)
    return trends(store, start, end, b, uuids=w["gpu_uuids"]), b
