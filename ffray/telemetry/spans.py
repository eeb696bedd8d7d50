"""Chunk spans: one row per chunk attempt, written to ``<data-dir>/spans`` as Parquet, and their
attribution to the GPU samples recorded while they ran (DuckDB, pure SQL over the Parquet files)."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

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


def write_spans(data_dir: Path, job_id: str, rows: list[dict]) -> Path | None:
    if not rows:
        return None
    table = pa.Table.from_pylist(rows, schema=SPAN)
    first = min(r["start"] for r in rows if r["start"] is not None)
    folder = Path(data_dir) / "spans" / f"date={first.strftime('%Y-%m-%d')}" / f"job={job_id}"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / "spans.parquet"
    tmp = folder / ".spans.parquet.tmp"
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, final)
    return final


ATTRIBUTION_SQL = """
WITH s AS (
  SELECT * FROM read_parquet($spans, hive_partitioning = true, union_by_name = true)
  WHERE status = 'done' AND ($job IS NULL OR job_id = $job)
),
g AS (SELECT * FROM read_parquet($gpu, hive_partitioning = true, union_by_name = true)),
p AS (SELECT * FROM read_parquet($proc, hive_partitioning = true, union_by_name = true)),
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


def attribute(data_dir: Path, job_id: str | None = None):
    """Per finished chunk attempt: GPU-seconds, mean/peak utilization, peak device and process
    memory, energy (J, counter difference inside the span) and throttled share. Returns an Arrow
    table (empty when there are no spans)."""
    import duckdb

    root = Path(data_dir)
    spans = str(root / "spans" / "**" / "*.parquet")
    gpu = str(root / "telemetry" / "gpu" / "**" / "*.parquet")
    proc = str(root / "telemetry" / "gpu_proc" / "**" / "*.parquet")
    if not list((root / "spans").glob("**/*.parquet")):
        return pa.table({})
    con = duckdb.connect()
    if not list((root / "telemetry" / "gpu").glob("**/*.parquet")):
        gpu = _empty(con, "gpu", root)
    if not list((root / "telemetry" / "gpu_proc").glob("**/*.parquet")):
        proc = _empty(con, "gpu_proc", root)
    return con.sql(ATTRIBUTION_SQL, params={"spans": spans, "gpu": gpu, "proc": proc,
                                            "job": job_id}).to_arrow_table()


def _empty(con, table: str, root: Path) -> str:
    """An empty Parquet file with the table's schema, so the query still has its columns."""
    from ffray.telemetry.schema import TABLES

    p = root / ".ffray-empty" / f"{table}.parquet"
    p.parent.mkdir(parents=True, exist_ok=True)
    if not p.exists():
        pq.write_table(TABLES[table].empty_table(), p)
    return str(p)
