"""Chunk spans: one row per chunk attempt, written to ``<data-dir>/spans`` as Parquet, and their
attribution to the GPU samples recorded while they ran (DuckDB, pure SQL over the Parquet files)."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa

from ffray.telemetry.schema import SCHEMA_VERSION, SPAN


def _ts(x: float | None):
    return None if x is None else datetime.fromtimestamp(x, tz=timezone.utc)


def span_rows(job_id: str, stats: list[dict], events: list[dict]) -> list[dict]:
    """Rows for finished attempts (from chunk stats) and failed ones (from ledger events)."""
    rows = []
    for s in stats:
        st = s.get("stages", {})
        uuids = s.get("gpu_uuids") or [None]
        rows.append({
            "schema_version": SCHEMA_VERSION, "job_id": job_id, "chunk": s["chunk"],
            "attempt": s["attempt"], "status": "done", "node": s.get("node_id"),
            "gpu_uuid": uuids[0], "pid": s.get("pid"), "actor_id": s.get("actor_id"),
            "start": _ts(s["start"]), "end": _ts(s["end"]), "frames": s.get("frames"),
            "faces_detected": int(st.get("faces_detected", 0)),
            "faces_swapped": int(st.get("faces_swapped", 0)), "decode_s": s.get("decode_s"),
            "infer_s": s.get("process_s"), "encode_s": s.get("encode_s"),
            "gpus": s.get("gpus")})
    for e in events:
        if e.get("kind") == "attempt_failed":
            rows.append({"schema_version": SCHEMA_VERSION, "job_id": job_id, "chunk": e["chunk"],
                         "attempt": e["attempt"], "status": "failed",
                         "start": _ts(e.get("submitted")), "end": _ts(e.get("time"))})
    return rows


def write_spans(target, job_id: str, rows: list[dict]) -> str | None:
    """Write a job's spans (all attempts) to ``<target>/spans/date=…/job=<id>/spans.parquet``;
    ``target`` is the data dir or a pyarrow filesystem URI."""
    from ffray.telemetry.sink import Sink, join

    if not rows:
        return None
    table = pa.Table.from_pylist(rows, schema=SPAN)
    first = min(r["start"] for r in rows if r["start"] is not None)
    sink = Sink(join(target, "spans"))
    return sink.write_parquet(table, f"date={first.strftime('%Y-%m-%d')}/job={job_id}/spans.parquet")


ATTRIBUTION_SQL = """
WITH s AS (
  SELECT * FROM spans_ds WHERE status = 'done' AND ($job IS NULL OR job_id = $job)
),
g AS (SELECT * FROM gpu_ds),
p AS (SELECT * FROM proc_ds),
w AS (
  SELECT s.job_id, s.chunk, s.attempt, s.node, s.gpu_uuid, s.pid, s.frames,
         epoch(s."end") - epoch(s."start") AS seconds, coalesce(s.gpus, 1.0) AS gpus,
         avg(g.util_gpu) AS mean_util, max(g.util_gpu) AS peak_util,
         max(g.mem_used_bytes) AS peak_mem_device,
         (max(g.energy_mj) - min(g.energy_mj)) / 1000.0 AS energy_j,
         avg(CASE WHEN g.throttled THEN 1.0 ELSE 0.0 END) AS throttled_share,
         count(g.ts) AS samples
  FROM s LEFT JOIN g ON g.gpu_uuid = s.gpu_uuid AND g.ts BETWEEN s."start" AND s."end"
  GROUP BY ALL
),
m AS (
  SELECT s.job_id, s.chunk, s.attempt, max(p.used_bytes) AS peak_mem_process
  FROM s LEFT JOIN p ON p.gpu_uuid = s.gpu_uuid AND p.pid = s.pid
                    AND p.ts BETWEEN s."start" AND s."end"
  GROUP BY ALL
)
SELECT w.*, w.seconds * w.gpus AS gpu_seconds, m.peak_mem_process
FROM w JOIN m USING (job_id, chunk, attempt)
ORDER BY job_id, chunk, attempt
"""


def attribute(target, job_id: str | None = None):
    """Per finished chunk attempt: GPU-seconds, mean/peak utilization, peak device and process
    memory, energy (J, counter difference inside the span) and throttled share. ``target`` is the
    data dir or a pyarrow filesystem URI. Returns an Arrow table (empty when there are no spans)."""
    import duckdb

    from ffray.telemetry.schema import GPU, GPU_PROC
    from ffray.telemetry.sink import Sink

    sink = Sink(target)
    spans = _dataset(sink, "spans", SPAN)
    if spans is None:
        return pa.table({})
    con = duckdb.connect()
    con.register("spans_ds", spans)
    con.register("gpu_ds", _dataset(sink, "telemetry/gpu", GPU) or GPU.empty_table())
    con.register("proc_ds", _dataset(sink, "telemetry/gpu_proc", GPU_PROC) or GPU_PROC.empty_table())
    return con.sql(ATTRIBUTION_SQL, params={"job": job_id}).to_arrow_table()


def _dataset(sink, rel: str, schema):
    import pyarrow.dataset as ds

    files = sink.list(rel)
    if not files:
        return None
    return ds.dataset(files, schema=schema, format="parquet", filesystem=sink.fs)
