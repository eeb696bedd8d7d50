"""Generate a large telemetry store with known costs, for the dashboard and analytics benchmarks.

Writes the real layout through the real writers (``Sink.write_parquet`` for telemetry parts, as a
roll does; ``write_spans`` and ``write_job_record`` per job, as the driver does):
    python scripts/gen_store.py --out /tmp/store24h --days 1 --nodes 16 --gpus-per-node 4 --jobs 300
    python scripts/gen_store.py --out /tmp/store100m --days 18 --nodes 16 --gpus-per-node 4 --jobs 10000

The law behind it (printed, and written to ``<out>/truth.json``): a chunk's seconds on a GPU model
= (A x frames x megapixels + B x frames x faces/frame + C) / relative throughput, times noise;
peak process memory = M0 + M1 x megapixels. Nodes cycle through the GPU models given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ffray.telemetry.schema import ALERT, GPU, GPU_PROC, HOST, SCHEMA_VERSION, WORKER_CPU  # noqa: E402
from ffray.telemetry.sink import Sink  # noqa: E402
from ffray.telemetry.spans import write_job_record, write_spans  # noqa: E402

MODELS = {  # name: (relative throughput, memory GiB, TDP W)
    "NVIDIA H100 80GB HBM3": (1.0, 80, 700), "NVIDIA A100-SXM4-40GB": (0.6, 40, 400),
    "NVIDIA L4": (0.3, 24, 72), "NVIDIA A10G": (0.35, 24, 300)}
LAW = {"A": 0.004, "B": 0.006, "C": 0.5, "M0": 1.5e9, "M1": 1.2e9}
RESOLUTIONS = [(1280, 720), (1920, 1080), (2560, 1440), (3840, 2160)]


def plan_jobs(rng, n_jobs, lanes, t0, t_end, models_of_lane, long_chunks=0, gap_scale=1.0):
    """Place jobs on GPU lanes (one actor per GPU); returns jobs and their chunk spans. Jobs that
    would end after ``t_end`` are dropped: a smaller ``gap_scale`` packs them closer."""
    free = np.full(len(lanes), t0, dtype=float)
    span_s = t_end - t0
    gap = gap_scale * 0.8 * span_s * len(lanes) / (2.0 * max(1, n_jobs))  # a job holds 2 GPUs on average
    jobs = []
    by_node: dict[str, list[int]] = {}
    for i, (node, _) in enumerate(lanes):
        by_node.setdefault(node, []).append(i)
    nodes = sorted(by_node)
    for j in range(n_jobs):
        long = j == 0 and long_chunks > 0
        node = nodes[rng.integers(len(nodes))] if not long else nodes[0]
        k = int(min(len(by_node[node]), rng.choice([1, 1, 2, 4]) if not long else 4))
        chosen = sorted(by_node[node], key=lambda i: free[i])[:k]
        start = max(free[i] for i in chosen) + (rng.exponential(gap) if not long else 600)
        if start > t_end - 60:
            continue
        w, h = RESOLUTIONS[rng.integers(len(RESOLUTIONS))]
        fps, faces = 30.0, float(rng.choice([0.5, 1, 1, 2, 3]))
        n_chunks = int(rng.integers(3, 40)) if not long else long_chunks
        rel = MODELS[models_of_lane[chosen[0]]][0]
        mp = w * h / 1e6
        lane_t = {i: start for i in chosen}
        spans = []
        for c in range(n_chunks):
            frames = 300
            face_c = faces * rng.uniform(0.6, 1.6)
            secs = (LAW["A"] * frames * mp + LAW["B"] * frames * face_c + LAW["C"]) / rel
            secs *= rng.normal(1.0, 0.05)
            if long:  # the long job: 1 hour on 4 GPUs
                secs = 3600.0 * k / n_chunks - 0.05
            lane = chosen[c % k]
            s0 = lane_t[lane]
            spans.append({"chunk": c, "lane": lane, "start": s0, "end": s0 + secs, "frames": frames,
                          "faces": int(round(face_c * frames)), "mem": LAW["M0"] + LAW["M1"] * mp})
            lane_t[lane] = s0 + secs + 0.05
        retried = rng.random() < 0.05
        end = max(lane_t.values())
        if end > t_end:
            continue
        for i in chosen:
            free[i] = lane_t[i]
        jobs.append({"job_id": f"gen-{j:06d}", "width": w, "height": h, "fps": fps, "start": start,
                     "end": end, "spans": spans, "retried": retried, "gpus": chosen})
    return jobs


def gpu_table(gpu_index, node, lanes_here, models_of_lane, uuids, busy, mem, day0, n, t_first, rng,
              energy_base):
    cols: dict[str, list] = {f.name: [] for f in GPU}
    ts = (np.arange(n, dtype=np.int64) + day0) * 1_000_000
    for lane in lanes_here:
        b = busy[lane][day0 - t_first: day0 - t_first + n]
        m = mem[lane][day0 - t_first: day0 - t_first + n]
        name = models_of_lane[lane]
        tdp = MODELS[name][2]
        util = np.where(b, rng.normal(88, 6, n).clip(0, 100), rng.uniform(0, 3, n)).astype(np.float32)
        # rare thermal episodes: one 10-minute window in 37 per GPU, while busy
        hot = b & (((np.arange(n) + day0) // 600 + lane) % 37 == 0)
        util = np.where(hot, 100.0, util).astype(np.float32)
        power = (60 + util / 100 * (tdp - 60)).astype(np.float32)
        energy = (np.cumsum(power.astype(np.float64)) * 1000).astype(np.int64)
        energy += energy_base.get(lane, 0)
        energy_base[lane] = int(energy[-1])  # the counter runs on across days (mJ, samples 1 s apart)
        temp = (35 + util * 0.45 + hot * 40).astype(np.float32)
        throttled = hot
        cols["schema_version"].append(np.full(n, SCHEMA_VERSION, np.int16))
        cols["ts"].append(ts)
        cols["node"].append(np.full(n, node, object))
        cols["ray_node"].append(np.full(n, None, object))
        cols["gpu_uuid"].append(np.full(n, uuids[lane], object))
        cols["gpu_index"].append(np.full(n, gpu_index[lane], np.int16))
        cols["gpu_name"].append(np.full(n, name, object))
        cols["util_gpu"].append(util)
        cols["util_mem"].append((util * 0.4).astype(np.float32))
        cols["mem_used_bytes"].append(np.where(b, m + 5e8, 4e8).astype(np.int64))
        cols["mem_total_bytes"].append(np.full(n, MODELS[name][1] << 30, np.int64))
        cols["temp_c"].append(temp)
        cols["power_w"].append(power)
        cols["energy_mj"].append(energy)
        cols["sm_clock_mhz"].append(np.full(n, 1980, np.int32))
        cols["mem_clock_mhz"].append(np.full(n, 2619, np.int32))
        cols["clock_event_reasons"].append(np.where(throttled, 0x20, 0).astype(np.int64))
        cols["throttled"].append(throttled)
        cols["pcie_tx_bytes"].append(np.cumsum(np.where(b, 2e7, 1e5)).astype(np.int64))
        cols["pcie_rx_bytes"].append(np.cumsum(np.where(b, 5e7, 1e5)).astype(np.int64))
        cols["enc_util"].append(np.zeros(n, np.float32))
        cols["dec_util"].append(np.where(b, 12, 0).astype(np.float32))
    arrays = []
    for f in GPU:
        if not cols[f.name]:  # ray_node: a generated store has no Ray
            arrays.append(pa.nulls(sum(len(c) for c in cols["ts"]), f.type))
            continue
        v = np.concatenate(cols[f.name])
        arrays.append(pa.array(v, type=f.type) if f.name != "ts" else
                      pa.array(v, type=pa.int64()).cast(f.type))
    return pa.Table.from_arrays(arrays, schema=GPU)


def worker_table(node, here, busy, lo, hi, t0, rng) -> pa.Table:
    """A row per second per worker (one per GPU lane, pid 10000 + lane) while it runs a chunk, as
    the telemetry actor records it: the worker with its codec processes ~150-250 % of a core."""
    parts = []
    for lane in here:
        idx = np.nonzero(busy[lane][lo - t0:hi - t0])[0]
        n = len(idx)
        cpu = (200 + 40 * np.sin(idx / 300.0) + rng.normal(0, 15, n)).clip(0, None)
        parts.append(pa.table({
            "schema_version": pa.array(np.full(n, SCHEMA_VERSION, np.int16)),
            "ts": pa.array((lo + idx) * 1_000_000, pa.int64()).cast(WORKER_CPU.field("ts").type),
            "node": pa.array([node] * n), "ray_node": pa.nulls(n, pa.string()),
            "pid": pa.array(np.full(n, 10000 + lane, np.int64)), "actor": pa.array(["ChunkWorker"] * n),
            "started": pa.array(np.full(n, t0 * 1_000_000, np.int64)).cast(WORKER_CPU.field("started").type),
            "cpu_percent": pa.array(cpu.astype(np.float32)),
            "self_cpu_percent": pa.array((cpu * 0.3).astype(np.float32)),
            "rss_bytes": pa.array(np.full(n, 6 << 30, np.int64)),
            "self_rss_bytes": pa.array(np.full(n, 3 << 30, np.int64)),
            "procs": pa.array(np.full(n, 17, np.int16))}, schema=WORKER_CPU))
    return pa.concat_tables(parts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--nodes", type=int, default=16)
    ap.add_argument("--gpus-per-node", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=300)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--end", default="2026-11-20T00:00:00", help="UTC end of the generated range")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--long-job-chunks", type=int, default=0,
                    help="make job gen-000000 a 1-hour job of this many chunks on 4 GPUs of node00")
    ap.add_argument("--gap-scale", type=float, default=1.0,
                    help="scale the idle gaps between jobs (below 1: more of --jobs fit in --days)")
    a = ap.parse_args()
    t_start = time.perf_counter()
    rng = np.random.default_rng(a.seed)
    out = Path(a.out)
    models = a.models.split(",")
    t_end = int(datetime.fromisoformat(a.end).replace(tzinfo=timezone.utc).timestamp())
    t0 = t_end - int(a.days * 86400)
    lanes = [(f"node{n:02d}", g) for n in range(a.nodes) for g in range(a.gpus_per_node)]
    models_of_lane = [models[n % len(models)] for n in range(a.nodes) for _ in range(a.gpus_per_node)]
    uuids = [f"GPU-{i:08x}-gen0-0000-0000-{g:012x}" for i, (_, g) in enumerate(lanes)]
    jobs = plan_jobs(rng, a.jobs, lanes, t0, t_end, models_of_lane, a.long_job_chunks, a.gap_scale)
    total = t_end - t0
    busy = [np.zeros(total, bool) for _ in lanes]
    mem = [np.zeros(total, np.float64) for _ in lanes]
    pid_of = [np.zeros(total, np.int64) for _ in lanes]
    for j in jobs:
        for s in j["spans"]:
            a0, a1 = int(np.ceil(s["start"])) - t0, int(np.floor(s["end"])) - t0 + 1
            busy[s["lane"]][a0:a1] = True
            mem[s["lane"]][a0:a1] = s["mem"]
            pid_of[s["lane"]][a0:a1] = 10000 + s["lane"]
    sink = Sink(out / "telemetry")
    rows, energy_base = 0, {}
    for day0 in range(t0 - t0 % 86400, t_end, 86400):
        lo, hi = max(day0, t0), min(day0 + 86400, t_end)
        date = datetime.fromtimestamp(lo, tz=timezone.utc).strftime("%Y-%m-%d")
        for n in range(a.nodes):
            node = f"node{n:02d}"
            here = [i for i, (nd, _) in enumerate(lanes) if nd == node]
            t = gpu_table([g for _, g in lanes], node, here, models_of_lane, uuids, busy, mem, lo, hi - lo,
                          t0, rng,
                          energy_base)
            stamp = f"{lo}-{hi}"
            sink.write_parquet(t, f"gpu/date={date}/node={node}/part-{stamp}.parquet")
            rows += t.num_rows
            proc = []
            for lane in here:
                sl = slice(lo - t0, hi - t0, 5)
                idx = np.nonzero(busy[lane][sl])[0]
                secs = np.arange(lo, hi, 5)[idx]
                proc.append(pa.table({
                    "schema_version": pa.array(np.full(len(idx), SCHEMA_VERSION, np.int16)),
                    "ts": pa.array(secs * 1_000_000, pa.int64()).cast(GPU_PROC.field("ts").type),
                    "node": pa.array([node] * len(idx)),
                    "ray_node": pa.nulls(len(idx), pa.string()),
                    "gpu_uuid": pa.array([uuids[lane]] * len(idx)),
                    "gpu_index": pa.array(np.full(len(idx), lanes[lane][1], np.int16)),
                    "pid": pa.array(pid_of[lane][sl][idx]),
                    "used_bytes": pa.array(mem[lane][sl][idx].astype(np.int64)),
                    "sm_util": pa.array(np.full(len(idx), 80.0, np.float32))}, schema=GPU_PROC))
            # the node's host row every second: CPU follows its busy GPUs, memory its jobs
            nbusy = np.sum([busy[lane][lo - t0:hi - t0] for lane in here], axis=0)
            secs = np.arange(lo, hi)
            cpu = (5 + 20 * nbusy + rng.normal(0, 2, hi - lo)).clip(0, 100)
            host = pa.table({
                "schema_version": pa.array(np.full(hi - lo, SCHEMA_VERSION, np.int16)),
                "ts": pa.array(secs * 1_000_000, pa.int64()).cast(HOST.field("ts").type),
                "node": pa.array([node] * (hi - lo)), "ray_node": pa.nulls(hi - lo, pa.string()),
                "gpu_available": pa.array(np.ones(hi - lo, bool)),
                "cpu_percent": pa.array(cpu.astype(np.float32)),
                "load1": pa.array((cpu / 100 * 32).astype(np.float32)),
                "mem_used_bytes": pa.array((8e9 + 6e9 * nbusy).astype(np.int64)),
                "mem_total_bytes": pa.array(np.full(hi - lo, 256 << 30, np.int64))}, schema=HOST)
            sink.write_parquet(host, f"host/date={date}/node={node}/part-{stamp}.parquet")
            rows += host.num_rows
            wt = worker_table(node, here, busy, lo, hi, t0, rng)
            sink.write_parquet(wt, f"worker_cpu/date={date}/node={node}/part-{stamp}.parquet")
            rows += wt.num_rows
            pt = pa.concat_tables(proc)
            sink.write_parquet(pt, f"gpu_proc/date={date}/node={node}/part-{stamp}.parquet")
            rows += pt.num_rows
            al = [{"schema_version": SCHEMA_VERSION,
                   "ts": datetime.fromtimestamp(lo + 3600 * k, tz=timezone.utc),
                   "node": node, "gpu_uuid": uuids[here[0]], "gpu_index": 0, "rule": "hot",
                   "value": 80.0, "threshold": 78.0, "message": "temp_c 80 > 78 for 30 s"}
                  for k in range(0, (hi - lo) // 3600, 6)]
            if al:
                sink.write_parquet(pa.Table.from_pylist(al, schema=ALERT),
                                   f"alerts/date={date}/node={node}/part-{stamp}.parquet")
    for j in jobs:
        srows = []
        for s in j["spans"]:
            lane = s["lane"]
            srows.append({"schema_version": SCHEMA_VERSION, "job_id": j["job_id"], "chunk": s["chunk"],
                          "attempt": 2 if (j["retried"] and s["chunk"] == 1) else 1, "status": "done",
                          "node": lanes[lane][0], "gpu_uuid": uuids[lane], "pid": 10000 + lane,
                          "actor_id": f"actor-{lane}", "start": _dt(s["start"]), "end": _dt(s["end"]),
                          "frames": s["frames"], "faces_detected": s["faces"], "faces_swapped": s["faces"],
                          "decode_s": 0.2, "infer_s": s["end"] - s["start"] - 0.5, "encode_s": 0.3,
                          "gpus": 1.0})
        if j["retried"]:
            s = j["spans"][1]
            srows.append({"schema_version": SCHEMA_VERSION, "job_id": j["job_id"], "chunk": 1,
                          "attempt": 1, "status": "failed", "start": _dt(s["start"] - 2),
                          "end": _dt(s["start"] - 0.5)})
        write_spans(out, j["job_id"], srows)
        frames = sum(s["frames"] for s in j["spans"])
        write_job_record(out, {
            "schema_version": SCHEMA_VERSION, "job_id": j["job_id"], "status": "done",
            "created": _dt(j["start"] - 1), "started": _dt(j["start"] - 0.5), "ended": _dt(j["end"] + 1),
            "input": f"{j['job_id']}.mp4", "width": j["width"], "height": j["height"], "fps": j["fps"],
            "frames": frames, "chunks": len(j["spans"]), "chunks_done": len(j["spans"]),
            "retries": int(j["retried"]), "wall_s": j["end"] - j["start"] + 1.5, "processor": "faceswap",
            "pipeline": "scrfd+inswapper", "actors": len(j["gpus"]), "gpu_per_actor": 1.0, "error": None})
    truth = {"law": LAW, "models": {m: MODELS[m] for m in models}, "jobs": len(jobs),
             "telemetry_rows": rows, "seconds": round(time.perf_counter() - t_start, 1)}
    (out / "truth.json").write_text(json.dumps(truth, indent=2))
    print(json.dumps(truth))


def _dt(x: float) -> datetime:
    return datetime.fromtimestamp(x, tz=timezone.utc)


if __name__ == "__main__":
    main()
