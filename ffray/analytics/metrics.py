"""Every recorded metric as a time-bucketed trend, for the cluster page and the CLI.

- ``METRICS``: the catalogue (typed ``Metric`` specs): GPU gauges (min/mean/max of the samples in
  a bucket), GPU counters (PCIe bytes, energy: the rise from the previous bucket's last sample to
  this bucket's last, per second, so a bucket with one sample still has a rate), host gauges (CPU,
  load, memory), and two views of their own: throttle reasons (% of samples with each NVML
  clock-event reason set) and per-process GPU memory (one line per worker process).
- ``worker_trends``: CPU % per ffray worker process (its codec processes summed in), one line per
  worker named with its node, pid, actor and jobs (from the spans of the chunks it ran).
- ``gpu_trends``: one DuckDB scan of ``gpu`` per GPU and bucket, with the four panel metrics and
  any extra picked ones; ``by_node`` folds that per-GPU table into one line per node in Arrow
  (no second scan): its mean is the node's sample mean, its min/max the *lowest and highest GPU*
  of the node in that bucket, so one saturated GPU shows in a node line's hover (a node at 23 %
  with one GPU at 88 % reads "23 % (GPUs 2-88)").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from ffray.analytics.source import Store

GIB = 1024 ** 3


@dataclass(frozen=True)
class Metric:
    key: str  # column prefix of the trend table: <key>_min, <key>_mean, <key>_max
    title: str
    unit: str
    column: str  # the recorded column
    table: str = "gpu"  # gpu | host | reasons | proc
    kind: str = "gauge"  # gauge: min/mean/max of samples; counter: rise per second over a bucket
    scale: float = 1.0  # recorded unit -> shown unit


PANELS = ("util", "mem", "power", "temp")  # the fixed GPU panels, always in the main scan
METRICS = {m.key: m for m in (
    Metric("util", "GPU utilization", "%", "util_gpu"),
    Metric("mem", "GPU memory used", "GiB", "mem_used_bytes", scale=1 / GIB),
    Metric("power", "Power", "W", "power_w"),
    Metric("temp", "Temperature", "°C", "temp_c"),
    Metric("sm_clock", "SM clock", "MHz", "sm_clock_mhz"),
    Metric("mem_clock", "Memory clock", "MHz", "mem_clock_mhz"),
    Metric("util_mem", "Memory-controller utilization", "%", "util_mem"),
    Metric("pcie_tx", "PCIe transmit", "MB/s", "pcie_tx_bytes", kind="counter", scale=1e-6),
    Metric("pcie_rx", "PCIe receive", "MB/s", "pcie_rx_bytes", kind="counter", scale=1e-6),
    Metric("energy", "Power from the energy counter", "W", "energy_mj", kind="counter", scale=1e-3),
    Metric("enc", "Encoder (NVENC) utilization", "%", "enc_util"),
    Metric("dec", "Decoder (NVDEC) utilization", "%", "dec_util"),
    Metric("reasons", "Clock event (throttle) reasons", "% of samples", "clock_event_reasons",
           table="reasons"),
    Metric("proc_mem", "GPU memory per worker process", "GiB", "used_bytes", table="proc", scale=1 / GIB),
    Metric("cpu", "Host CPU", "%", "cpu_percent", table="host"),
    Metric("host_mem", "Host memory used", "GiB", "mem_used_bytes", table="host", scale=1 / GIB),
    Metric("load1", "Host load (1 min)", "", "load1", table="host"),
    Metric("worker_cpu", "CPU per worker", "% of a core", "cpu_percent",
           table="worker"),
)}
HOST_PANELS = ("cpu", "host_mem")
WORKER_PANELS = ("worker_cpu",)  # drawn in the host section from ``worker_trends``
PICKABLE = tuple(k for k in METRICS if k not in PANELS + HOST_PANELS + WORKER_PANELS)  # the metric view's

# NVML clock event reasons (nvmlClocksEventReason*): bit -> name
REASONS = {0x1: "GPU idle", 0x2: "applications clocks setting", 0x4: "SW power cap",
           0x8: "HW slowdown", 0x10: "sync boost", 0x20: "SW thermal slowdown",
           0x40: "HW thermal slowdown", 0x80: "HW power brake", 0x100: "display clock setting"}


def _aggregates(m: Metric) -> str:
    c, k = m.column, m.key
    if m.kind == "counter":  # its first and last value in the bucket: gpu_trends makes the rate
        return f"arg_min({c}, ts) AS {k}_first, arg_max({c}, ts) AS {k}_last"
    s = f" * {m.scale}" if m.scale != 1.0 else ""
    return f"min({c}){s} AS {k}_min, avg({c}){s} AS {k}_mean, max({c}){s} AS {k}_max"


def _rate(m: Metric) -> str:
    """A counter's rise per second over a bucket: from the previous bucket's last sample to this
    one's last (so one sample per bucket is enough and no interval is lost between buckets), or
    within the bucket where there is no adjacent previous bucket or the counter went back (a
    reset); a window over the per-bucket rows, not over the samples."""
    k = m.key
    prev = f"lag({k}_last) OVER w"
    across = (f"CASE WHEN bucket - lag(bucket) OVER w <= to_seconds($b) AND {k}_last >= {prev} "
              f"THEN ({k}_last - {prev}) / nullif(epoch(t_last) - epoch(lag(t_last) OVER w), 0) END")
    within = (f"CASE WHEN {k}_last >= {k}_first "
              f"THEN ({k}_last - {k}_first) / nullif(epoch(t_last) - epoch(t_first), 0) END")
    rate = f"coalesce({across}, {within}) * {m.scale}"
    return f"{rate} AS {k}_min, {rate} AS {k}_mean, {rate} AS {k}_max"


def gpu_trends(store: Store, start: datetime, end: datetime, bucket_s: int, uuids=(), nodes=(),
               keys=PANELS) -> pa.Table:
    """Per GPU and bucket (whole buckets in [start, end)): series (UUID), node, gpu_index, bucket,
    min/mean/max of the GPU metrics ``keys`` (default: the four panels), throttled, samples."""
    keys = [k for k in keys if METRICS[k].table == "gpu"]
    aggs = ",\n       ".join(_aggregates(METRICS[k]) for k in keys)
    counters = [METRICS[k] for k in keys if METRICS[k].kind == "counter"]
    times = ", min(ts) AS t_first, max(ts) AS t_last" if counters else ""
    sql = f"""
        SELECT gpu_uuid AS series, any_value(node) AS node, any_value(gpu_index) AS gpu_index,
               to_timestamp(floor(epoch(ts) / $b) * $b) AS bucket,
               {aggs}, bool_or(throttled) AS throttled, count(*) AS samples{times}
        FROM gpu WHERE ts >= $start AND ts < $end
          AND (len($uuids) = 0 OR list_contains($uuids, gpu_uuid))
          AND (len($nodes) = 0 OR list_contains($nodes, node))
        GROUP BY gpu_uuid, bucket"""
    params = {"b": int(bucket_s), "start": start, "end": end, "uuids": list(uuids), "nodes": list(nodes)}
    if not counters:
        return store.sql(sql + " ORDER BY series, bucket", **params)
    raw = ["t_first", "t_last"] + [f"{m.key}_{e}" for m in counters for e in ("first", "last")]
    rates = "".join(f", {_rate(m)}" for m in counters)
    return store.sql(f"""SELECT * EXCLUDE ({", ".join(raw)}){rates} FROM ({sql})
        WINDOW w AS (PARTITION BY series ORDER BY bucket) ORDER BY series, bucket""", **params)


def by_node(per_gpu: pa.Table) -> pa.Table:
    """One series per node from a ``gpu_trends`` table: sample-weighted mean of its GPUs, and the
    lowest/highest GPU's bucket mean as min/max (pure, Arrow only)."""
    keys = sorted({c[:-5] for c in per_gpu.column_names if c.endswith("_mean")})
    if not per_gpu.num_rows:
        stats = [f"{k}_{s}" for k in keys for s in ("min", "mean", "max")]
        return per_gpu.select(["series", "bucket", *stats, "throttled", "samples"])
    n = per_gpu["samples"].cast(pa.float64())
    cols = {"node": per_gpu["node"], "bucket": per_gpu["bucket"], "samples": per_gpu["samples"],
            "throttled": per_gpu["throttled"]}
    aggs = [("samples", "sum"), ("throttled", "any")]
    for k in keys:
        mean = per_gpu[f"{k}_mean"].cast(pa.float64())
        cols[f"{k}_m"] = mean
        cols[f"{k}_w"] = pc.multiply(mean, n)
        cols[f"{k}_n"] = pc.if_else(pc.is_null(mean), 0.0, n)
        aggs += [(f"{k}_m", "min"), (f"{k}_m", "max"), (f"{k}_w", "sum"), (f"{k}_n", "sum")]
    g = pa.table(cols).group_by(["node", "bucket"], use_threads=False).aggregate(aggs)
    out = {"series": g["node"], "bucket": g["bucket"]}
    for k in keys:
        out[f"{k}_min"] = g[f"{k}_m_min"]
        out[f"{k}_mean"] = pc.divide(g[f"{k}_w_sum"], pc.if_else(pc.equal(g[f"{k}_n_sum"], 0.0), None,
                                                                 g[f"{k}_n_sum"]))
        out[f"{k}_max"] = g[f"{k}_m_max"]
    out["throttled"], out["samples"] = g["throttled_any"], g["samples_sum"]
    return pa.table(out).sort_by([("series", "ascending"), ("bucket", "ascending")])


def cluster_extent(store: Store):
    """(first, last) sample over GPU and host telemetry; None when neither has any."""
    got = [e for e in (store.ts_extent("gpu"), store.ts_extent("host")) if e is not None]
    return (min(e[0] for e in got), max(e[1] for e in got)) if got else None


def host_inventory(store: Store, start=None, end=None) -> list[dict]:
    """Every node with host samples (in the window): samples, whether it saw a GPU, memory size."""
    return store.rows("""
        SELECT node, count(*) AS samples, bool_or(gpu_available) AS gpu_available,
               max(mem_total_bytes) AS mem_total_bytes, max(ts) AS last_ts
        FROM host WHERE ($start IS NULL OR ts >= $start) AND ($end IS NULL OR ts <= $end)
        GROUP BY node ORDER BY node""", start=start, end=end)


def host_trends(store: Store, start: datetime, end: datetime, bucket_s: int, nodes=()) -> pa.Table:
    """Per node and bucket: min/mean/max of host CPU, memory and load, and samples."""
    aggs = ", ".join(_aggregates(METRICS[k]) for k in ("cpu", "host_mem", "load1"))
    return store.sql(f"""
        SELECT node AS series, to_timestamp(floor(epoch(ts) / $b) * $b) AS bucket, {aggs},
               count(*) AS samples
        FROM host WHERE ts >= $start AND ts < $end AND (len($nodes) = 0 OR list_contains($nodes, node))
        GROUP BY ALL ORDER BY series, bucket""", b=int(bucket_s), start=start, end=end, nodes=list(nodes))


def reason_trends(store: Store, start: datetime, end: datetime, bucket_s: int, uuids=(),
                  nodes=()) -> pa.Table:
    """Per clock-event reason (series = its name) and bucket: % of the chosen GPUs' samples with
    that reason set (sample-weighted mean; min/max over the GPUs). Reasons never set in the window
    are left out."""
    cols = ", ".join(f'100.0 * avg(((clock_event_reasons & {bit}) != 0)::INT) AS "{name}"'
                     for bit, name in REASONS.items())
    return store.sql(f"""
        WITH g AS (SELECT gpu_uuid, to_timestamp(floor(epoch(ts) / $b) * $b) AS bucket, {cols}, count(*) AS n
                   FROM gpu WHERE ts >= $start AND ts < $end AND clock_event_reasons IS NOT NULL
                     AND (len($uuids) = 0 OR list_contains($uuids, gpu_uuid))
                     AND (len($nodes) = 0 OR list_contains($nodes, node))
                   GROUP BY ALL),
             u AS (UNPIVOT g ON COLUMNS(* EXCLUDE (gpu_uuid, bucket, n)) INTO NAME series VALUE p)
        SELECT series, bucket, min(p) AS reasons_min, sum(p * n) / sum(n) AS reasons_mean,
               max(p) AS reasons_max, sum(n) AS samples
        FROM u WHERE series IN (SELECT series FROM u GROUP BY series HAVING max(p) > 0)
        GROUP BY ALL ORDER BY series, bucket""",
        b=int(bucket_s), start=start, end=end, uuids=list(uuids), nodes=list(nodes))


def proc_trends(store: Store, start: datetime, end: datetime, bucket_s: int, uuids=(), nodes=(),
                top: int = 32) -> tuple[pa.Table, dict]:
    """GPU memory per worker process: series ``node/pid/uuid``, min/mean/max of its memory per
    bucket, for the ``top`` processes by peak memory; and {series: label} naming the job and GPU
    (from the spans of the chunks that process ran)."""
    t = store.sql("""
        WITH p AS (SELECT node || '/' || pid || '/' || gpu_uuid AS series, node, pid, gpu_uuid, gpu_index,
                          to_timestamp(floor(epoch(ts) / $b) * $b) AS bucket, used_bytes
                   FROM gpu_proc WHERE ts >= $start AND ts < $end AND used_bytes IS NOT NULL
                     AND (len($uuids) = 0 OR list_contains($uuids, gpu_uuid))
                     AND (len($nodes) = 0 OR list_contains($nodes, node))),
             top AS (SELECT series FROM p GROUP BY series ORDER BY max(used_bytes) DESC, series LIMIT $top)
        SELECT series, any_value(node) AS node, any_value(pid) AS pid, any_value(gpu_index) AS gpu_index,
               bucket, min(used_bytes) / $gib AS proc_mem_min, avg(used_bytes) / $gib AS proc_mem_mean,
               max(used_bytes) / $gib AS proc_mem_max, count(*) AS samples
        FROM p WHERE series IN (SELECT series FROM top) GROUP BY series, bucket ORDER BY series, bucket""",
        b=int(bucket_s), start=start, end=end, uuids=list(uuids), nodes=list(nodes), top=int(top), gib=GIB)
    ran = process_jobs(store, start, end) if t.num_rows else {}
    labels = {}
    for key, node, pid, idx in sorted(set(zip(t["series"].to_pylist(), t["node"].to_pylist(),
                                              t["pid"].to_pylist(), t["gpu_index"].to_pylist()))):
        job = ran.get((node, pid), {}).get("jobs")
        job = short_jobs(job) if job else job
        labels[key] = f"{node} · GPU{idx} · pid {pid}" + (f" ({job})" if job else "")
    return t.drop_columns(["node", "pid", "gpu_index"]), labels


def worker_trends(store: Store, start: datetime, end: datetime, bucket_s: int, nodes=(),
                  top: int = 32, labelled: bool = True) -> tuple[pa.Table, dict]:
    """CPU % per worker process (``worker_cpu``: the worker with its codec processes, % of one
    core): series ``node/pid/start``, min/mean/max per bucket, for the ``top`` workers by mean CPU;
    and, when ``labelled``, {series: label} with node, pid, actor id and jobs (the spans of the
    chunks it ran: a read of every spans file, ~0.15 s on 337 jobs, so live refresh skips it)."""
    t = store.sql("""
        WITH g AS MATERIALIZED (
                 SELECT node, pid, coalesce(epoch_us(started), 0) AS born, any_value(actor) AS actor,
                        to_timestamp(floor(epoch(ts) / $b) * $b) AS bucket, min(cpu_percent) AS lo,
                        avg(cpu_percent) AS mean, max(cpu_percent) AS hi, count(*) AS samples
                 FROM worker_cpu WHERE ts >= $start AND ts < $end AND cpu_percent IS NOT NULL
                   AND (len($nodes) = 0 OR list_contains($nodes, node))
                 GROUP BY node, pid, born, bucket),
             top AS (SELECT node, pid, born FROM g GROUP BY ALL
                     ORDER BY sum(mean * samples) / sum(samples) DESC, node, pid, born LIMIT $top)
        SELECT node || '/' || pid || '/' || born AS series, node, pid, actor, bucket, lo AS worker_cpu_min,
               mean AS worker_cpu_mean, hi AS worker_cpu_max, samples
        FROM g SEMI JOIN top USING (node, pid, born) ORDER BY series, bucket""",
        b=int(bucket_s), start=start, end=end, nodes=list(nodes), top=int(top))
    if not labelled:
        return t.drop_columns(["node", "pid", "actor"]), {}
    ran = process_jobs(store, start, end) if t.num_rows else {}
    labels = {}
    cols = (t[c].to_pylist() for c in ("series", "node", "pid", "actor"))
    for key, node, pid, actor in sorted(set(zip(*cols))):
        r = ran.get((node, pid), {})
        who = f"{actor} {r['actor_id'][:8]}" if r.get("actor_id") else (actor or "worker")
        labels[key] = f"{node} · {who} · pid {pid}" + (f" ({short_jobs(r['jobs'])})" if r.get("jobs") else "")
    return t.drop_columns(["node", "pid", "actor"]), labels


def process_jobs(store: Store, start: datetime, end: datetime) -> dict:
    """{(node, pid): {"jobs": "a, b", "actor_id": ...}} of the processes whose chunk spans
    overlap [start, end) (the spans of the chunks each ran)."""
    return {(r["node"], r["pid"]): r for r in store.rows("""
        SELECT node, pid, string_agg(DISTINCT job_id, ', ' ORDER BY job_id) AS jobs,
               min(actor_id) AS actor_id FROM spans
        WHERE pid IS NOT NULL AND "end" >= $start AND start < $end GROUP BY node, pid""",
        start=start, end=end)}


def short_jobs(jobs: str) -> str:
    """A long-lived worker's job list: its first two jobs and how many more."""
    names = jobs.split(", ")
    return jobs if len(names) <= 3 else f"{', '.join(names[:2])} +{len(names) - 2} more"
