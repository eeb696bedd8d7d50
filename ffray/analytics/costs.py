"""What each chunk and each job cost: chunk spans joined to the GPU samples taken while they ran.

The join is an equi-join on (GPU UUID, minute bucket) followed by the exact time condition: each
span is expanded to the minute buckets it touches, so every sample meets only the spans of its own
GPU and minute, and the cost is linear in the number of samples (a plain range join is quadratic).

Per finished attempt: seconds, GPU share (``gpus``, the actor's fraction of the device),
GPU-seconds = seconds x share, mean/peak utilization, peak device memory, peak memory of the
worker process, ``device_energy_j`` (the energy counter's difference over the span) and
``energy_j`` = device energy x share, throttled share of samples, sample count. Failed attempts
appear with their seconds only (a failure has no GPU record).
"""

from __future__ import annotations

import pyarrow as pa

from ffray.analytics.source import Store

BUCKET_S = 60

CHUNKS_SQL = """
WITH s AS (
  SELECT job_id, chunk, attempt, status, node, gpu_uuid, pid, actor_id, start, "end", frames,
         faces_detected, faces_swapped, decode_s, infer_s, encode_s, coalesce(gpus, 1.0) AS gpus,
         epoch("end") - epoch(start) AS seconds
  FROM spans WHERE ($job IS NULL OR job_id = $job) AND ($since IS NULL OR start >= $since)
),
sb AS (
  SELECT job_id, chunk, attempt, gpu_uuid, pid, start, "end",
         unnest(range(floor(epoch(start) / {b})::BIGINT, floor(epoch("end") / {b})::BIGINT + 1)) AS b
  FROM s WHERE status = 'done' AND gpu_uuid IS NOT NULL
),
lim AS (SELECT min(start) AS lo, max("end") AS hi FROM sb),
g AS (
  SELECT gpu_uuid, ts, gpu_name, util_gpu, mem_used_bytes, energy_mj, throttled,
         floor(epoch(ts) / {b})::BIGINT AS b
  FROM gpu WHERE ts BETWEEN (SELECT lo FROM lim) AND (SELECT hi FROM lim)
),
w AS (
  SELECT sb.job_id, sb.chunk, sb.attempt, any_value(g.gpu_name) AS gpu_name,
         avg(g.util_gpu) AS mean_util, max(g.util_gpu) AS peak_util,
         sum(g.util_gpu) AS util_sum, max(g.mem_used_bytes) AS peak_mem_device,
         (max(g.energy_mj) - min(g.energy_mj)) / 1000.0 AS device_energy_j,
         avg(CASE WHEN g.throttled THEN 1.0 ELSE 0.0 END) AS throttled_share, count(g.ts) AS samples
  FROM sb JOIN g ON g.gpu_uuid = sb.gpu_uuid AND g.b = sb.b AND g.ts BETWEEN sb.start AND sb."end"
  GROUP BY ALL
),
p AS (
  SELECT gpu_uuid, pid, ts, used_bytes, floor(epoch(ts) / {b})::BIGINT AS b
  FROM gpu_proc WHERE ts BETWEEN (SELECT lo FROM lim) AND (SELECT hi FROM lim)
),
m AS (
  SELECT sb.job_id, sb.chunk, sb.attempt, max(p.used_bytes) AS peak_mem_process
  FROM sb JOIN p ON p.gpu_uuid = sb.gpu_uuid AND p.pid = sb.pid AND p.b = sb.b
                AND p.ts BETWEEN sb.start AND sb."end"
  GROUP BY ALL
)
SELECT s.job_id, s.chunk, s.attempt, s.status, s.node, s.gpu_uuid, s.pid, s.actor_id, s.start,
       s."end", s.frames, s.faces_detected, s.faces_swapped, s.decode_s, s.infer_s, s.encode_s,
       s.seconds, s.gpus, w.gpu_name,
       CASE WHEN s.status = 'done' THEN s.seconds * s.gpus ELSE 0.0 END AS gpu_seconds,
       w.mean_util, w.peak_util, w.util_sum, w.peak_mem_device, m.peak_mem_process,
       w.device_energy_j, w.device_energy_j * s.gpus AS energy_j, w.throttled_share,
       coalesce(w.samples, 0) AS samples
FROM s LEFT JOIN w USING (job_id, chunk, attempt) LEFT JOIN m USING (job_id, chunk, attempt)
ORDER BY s.job_id, s.chunk, s.attempt
"""


def attribute(target, job_id: str | None = None) -> pa.Table:
    """Per finished chunk attempt of ``job_id`` (or of every job): GPU-seconds, mean/peak
    utilization, peak device and process memory, energy (J, counter difference inside the span)
    and throttled share. ``target`` is the data dir or a pyarrow filesystem URI."""
    import pyarrow.compute as pc

    store = Store(target)
    try:
        t = chunk_costs(store, job_id)
        return t.filter(pc.equal(t["status"], "done"))
    finally:
        store.close()


def chunk_costs(store: Store, job_id: str | None = None, since=None) -> pa.Table:
    """Every attempt of ``job_id`` (or of all jobs, optionally only spans starting at/after
    ``since``), with its attributed cost; ordered by job, chunk, attempt."""
    return store.sql(CHUNKS_SQL.replace("{b}", str(BUCKET_S)), job=job_id, since=since)


JOBS_SQL = """
WITH c AS (SELECT * FROM chunk_costs_t),
per_job AS (
  SELECT job_id,
         count(DISTINCT chunk) FILTER (WHERE status = 'done') AS chunks_done,
         count(*) FILTER (WHERE status = 'failed') AS failed_attempts,
         (sum(frames) FILTER (WHERE status = 'done'))::BIGINT AS span_frames,
         (sum(faces_detected) FILTER (WHERE status = 'done'))::BIGINT AS faces_detected,
         (sum(faces_swapped) FILTER (WHERE status = 'done'))::BIGINT AS faces_swapped,
         sum(gpu_seconds) AS gpu_seconds, sum(energy_j) AS energy_j,
         max(peak_mem_device) AS peak_mem_device, max(peak_mem_process) AS peak_mem_process,
         sum(util_sum) / nullif(sum(samples), 0) AS mean_util, sum(samples)::BIGINT AS samples,
         min(start) AS first_start, max("end") AS last_end,
         count(DISTINCT gpu_uuid) AS gpus_used, max(gpus) AS gpu_share,
         list(DISTINCT gpu_uuid ORDER BY gpu_uuid) FILTER (WHERE gpu_uuid IS NOT NULL) AS gpu_uuids
  FROM c GROUP BY job_id
),
model AS (
  SELECT job_id, mode(gpu_name) AS gpu_model FROM c WHERE gpu_name IS NOT NULL GROUP BY job_id
)
SELECT j.job_id, j.status, j.created, j.started, j.ended, j.input, j.width, j.height, j.fps,
       j.frames, j.chunks, p.chunks_done, coalesce(j.retries, p.failed_attempts) AS retries,
       p.failed_attempts, j.wall_s, j.processor, j.pipeline, j.actors, j.gpu_per_actor, j.error,
       j.submission_id,
       p.faces_detected, p.faces_swapped,
       p.faces_detected / nullif(p.span_frames, 0) AS faces_per_frame,
       p.gpu_seconds, p.energy_j, p.peak_mem_device, p.peak_mem_process, p.mean_util, p.samples,
       p.first_start, p.last_end, p.gpus_used, p.gpu_uuids, model.gpu_model,
       p.span_frames / nullif(p.gpu_seconds, 0) AS frames_per_gpu_second
FROM jobs j LEFT JOIN per_job p USING (job_id) LEFT JOIN model USING (job_id)
WHERE ($since IS NULL OR j.created >= $since)
ORDER BY j.created DESC, j.job_id
"""


def job_costs(store: Store, since=None, job_id: str | None = None,
              chunks: pa.Table | None = None) -> pa.Table:
    """One row per job record (the newest first) with its totals; see ``JOBS_SQL``. ``chunks``:
    the same selection's ``chunk_costs`` when the caller has it already (not computed twice)."""
    chunks = chunk_costs(store, job_id=job_id, since=since) if chunks is None else chunks
    store.con.register("chunk_costs_t", chunks)
    try:
        q = JOBS_SQL if job_id is None else \
            JOBS_SQL.replace("WHERE ($since", "WHERE j.job_id = $job AND ($since")
        params = {"since": since} if job_id is None else {"since": since, "job": job_id}
        return store.sql(q, **params)
    finally:
        store.con.unregister("chunk_costs_t")


def short_node(node: str | None) -> str:
    """A node for labels: host names stay; Ray's 56-hex node ids are cut to 8 characters."""
    if not node:
        return "?"
    return node[:8] if len(node) > 20 and all(c in "0123456789abcdef" for c in node) else node


def worker_lanes(chunks: list[dict]) -> list[tuple[str, int, int, str]]:
    """A timeline lane per chunk attempt (``chunk_costs`` rows, same order): (device, lane, lanes
    on that device, lane name). The device is the GPU UUID, ``cpu:<node>`` for an attempt on a
    worker without a GPU, or ``failed`` for a failed attempt that does not say where it ran
    (ledgers older than the failure's place in its event). Failed attempts take a lane of their
    worker like finished ones. Spans never overlap in a lane: workers sharing a device get
    their own lanes (numbered by first start), and a worker running several chunks at once gets
    one lane per chunk slot (the lowest free one when a chunk starts)."""
    def device(c: dict) -> str:
        if c["gpu_uuid"]:
            return c["gpu_uuid"]
        if c["status"] != "done" and not c.get("node"):
            return "failed"
        return f"cpu:{c['node'] or '?'}"

    first: dict[str, dict[str, object]] = {}
    sub: dict[int, int] = {}  # index in chunks -> slot lane within its worker
    ends: dict[tuple[str, str], list] = {}
    order_idx = sorted((i for i, c in enumerate(chunks) if c["start"] is not None),
                       key=lambda i: chunks[i]["start"])
    for i in order_idx:
        c = chunks[i]
        d, a = device(c), c.get("actor_id") or "?"
        first.setdefault(d, {}).setdefault(a, c["start"])
        if d == "failed":
            continue
        lanes = ends.setdefault((d, a), [])
        # a span without an end (not finished yet) frees its lane for later starts
        free = next((k for k, e in enumerate(lanes) if e is None or e <= c["start"]), None)
        end = c.get("end")
        if free is None:
            lanes.append(end)
            free = len(lanes) - 1
        else:
            lanes[free] = end
        sub[i] = free
    out = []
    for i, c in enumerate(chunks):
        d = device(c)
        if d == "failed":
            out.append((d, 0, 1, ""))
            continue
        actors = list(first.get(d, {}))
        keys = [(a, k) for a in actors for k in range(max(1, len(ends.get((d, a), [])) or 1))]
        a, k = c.get("actor_id") or "?", sub.get(i, 0)
        lane = keys.index((a, k)) if (a, k) in keys else 0
        slots = len(ends.get((d, a), [])) > 1
        name = (f"worker {actors.index(a) + 1}" if len(actors) > 1 and a in actors else "") + \
            ((" · " if len(actors) > 1 else "") + f"slot {k + 1}" if slots else "")
        out.append((d, lane, len(keys), name))
    return out
