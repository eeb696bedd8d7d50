"""What a job's page shows besides its costs and GPU curves: its nodes' host CPU and memory over
its window (for CPU workers, which have no GPU curves)."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa

from ffray.analytics.queries import bucket_seconds
from ffray.analytics.source import Store

HOST_SQL = """
SELECT node AS series, to_timestamp(floor(epoch(ts) / $b) * $b) AS bucket,
       avg(cpu_percent) AS cpu_mean, min(cpu_percent) AS cpu_min, max(cpu_percent) AS cpu_max,
       max(mem_used_bytes) AS mem_max, max(mem_total_bytes) AS mem_total, count(*) AS samples
FROM host
WHERE ts >= $start AND ts < $end AND list_contains($nodes, node)
GROUP BY ALL ORDER BY series, bucket
"""


def job_host_trends(store: Store, job_id: str, max_points: int = 600, pad_s: float = 5.0
                    ) -> tuple[pa.Table, int]:
    """Host CPU % (min/mean/max per bucket) and memory of the nodes a job's attempts ran on, over
    its window (padded); an empty table when the job has no spans or no host samples."""
    row = store.rows("""
        SELECT min(start) AS start, max("end") AS "end",
               list(DISTINCT node) FILTER (WHERE node IS NOT NULL) AS nodes
        FROM spans WHERE job_id = $job""", job=job_id)[0]
    if row["start"] is None or not row["nodes"]:
        return pa.table({}), 1
    start = row["start"] - timedelta(seconds=pad_s)
    end = (row["end"] or row["start"]) + timedelta(seconds=pad_s)
    b = bucket_seconds((end - start).total_seconds(), max_points)
    return store.sql(HOST_SQL, b=int(b), start=start, end=end, nodes=list(row["nodes"])), b
