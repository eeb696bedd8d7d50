"""Arrow schemas of every telemetry table (one place; ``schema_version`` is a column of each).

Tables and their hive folders under ``<data-dir>/telemetry``:
- ``gpu``: one row per GPU per sample (device counters and gauges);
- ``gpu_util``: the driver's sub-second utilization samples (``nvmlDeviceGetSamples``);
- ``gpu_proc``: per-process GPU memory and SM utilization;
- ``host``: the node's CPU and memory;
- ``worker_cpu``: CPU % and RSS per ffray worker process with its codec processes summed
  (``ffray.telemetry.workers``);
- ``alerts``: alert events (rule, value, threshold);
and under ``<data-dir>/spans``: one row per chunk attempt.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 4  # 2: ``node`` names the host (ffray.telemetry.nodes); ``ray_node`` added
# 3: ``alerts.state`` ('firing' | 'resolved'; null in older files: a firing row)
# 4: the ``worker_cpu`` table (older stores have none: an empty table)
TS = pa.timestamp("us", tz="UTC")

_COMMON = [("schema_version", pa.int16()), ("ts", TS), ("node", pa.string()), ("ray_node", pa.string())]
_GPU_KEY = [("gpu_uuid", pa.string()), ("gpu_index", pa.int16())]

GPU = pa.schema(_COMMON + _GPU_KEY + [
    ("gpu_name", pa.string()), ("util_gpu", pa.float32()), ("util_mem", pa.float32()),
    ("mem_used_bytes", pa.int64()), ("mem_total_bytes", pa.int64()), ("temp_c", pa.float32()),
    ("power_w", pa.float32()), ("energy_mj", pa.int64()), ("sm_clock_mhz", pa.int32()),
    ("mem_clock_mhz", pa.int32()), ("clock_event_reasons", pa.int64()), ("throttled", pa.bool_()),
    ("pcie_tx_bytes", pa.int64()), ("pcie_rx_bytes", pa.int64()), ("enc_util", pa.float32()),
    ("dec_util", pa.float32())])

GPU_UTIL = pa.schema(_COMMON + _GPU_KEY + [("util_gpu", pa.float32())])

GPU_PROC = pa.schema(_COMMON + _GPU_KEY + [
    ("pid", pa.int64()), ("used_bytes", pa.int64()), ("sm_util", pa.float32())])

HOST = pa.schema(_COMMON + [
    ("gpu_available", pa.bool_()), ("cpu_percent", pa.float32()), ("load1", pa.float32()),
    ("mem_used_bytes", pa.int64()), ("mem_total_bytes", pa.int64())])

# CPU % is of one core (psutil's convention: may exceed 100); ``cpu_percent``/``rss_bytes`` are
# the worker with its descendants (codec processes), ``self_*`` the worker process alone; RSS
# counts shared pages (the codec processes' frame rings) in every process that maps them.
WORKER_CPU = pa.schema(_COMMON + [
    ("pid", pa.int64()), ("actor", pa.string()), ("started", TS), ("cpu_percent", pa.float32()),
    ("self_cpu_percent", pa.float32()), ("rss_bytes", pa.int64()), ("self_rss_bytes", pa.int64()),
    ("procs", pa.int16())])

SPAN = pa.schema([
    ("schema_version", pa.int16()), ("job_id", pa.string()), ("chunk", pa.int32()),
    ("attempt", pa.int16()), ("status", pa.string()), ("node", pa.string()),
    ("gpu_uuid", pa.string()), ("pid", pa.int64()), ("actor_id", pa.string()),
    ("start", TS), ("end", TS), ("frames", pa.int32()), ("faces_detected", pa.int32()),
    ("faces_swapped", pa.int32()), ("decode_s", pa.float32()), ("infer_s", pa.float32()),
    ("encode_s", pa.float32()), ("gpus", pa.float32()), ("ray_node", pa.string())])

ALERT = pa.schema(_COMMON + [
    ("gpu_uuid", pa.string()), ("gpu_index", pa.int16()), ("rule", pa.string()),
    ("value", pa.float64()), ("threshold", pa.float64()), ("message", pa.string()),
    ("state", pa.string())])

TABLES = {"gpu": GPU, "gpu_util": GPU_UTIL, "gpu_proc": GPU_PROC, "host": HOST, "alerts": ALERT,
          "worker_cpu": WORKER_CPU}

# One row per job (``<data-dir>/job_records/date=YYYY-MM-DD/<job-id>.parquet``, date of creation),
# rewritten as the job runs and when it ends: the analytics' copy of the ledger's job.json, so
# analytics and the dashboard read Parquet only (also from a filesystem URI).
JOB = pa.schema([
    ("schema_version", pa.int16()), ("job_id", pa.string()), ("status", pa.string()),
    ("created", TS), ("started", TS), ("ended", TS), ("input", pa.string()),
    ("width", pa.int32()), ("height", pa.int32()), ("fps", pa.float32()), ("frames", pa.int32()),
    ("chunks", pa.int32()), ("chunks_done", pa.int32()), ("retries", pa.int32()),
    ("wall_s", pa.float64()), ("processor", pa.string()), ("pipeline", pa.string()),
    ("actors", pa.int32()), ("gpu_per_actor", pa.float32()), ("error", pa.string()),
    ("submission_id", pa.string())])  # the Ray Jobs submission (``ffray submit``); null otherwise
