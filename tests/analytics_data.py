"""Constructed jobs with known costs, written through the real telemetry store API
(``TelemetryStore`` + roll for GPU and per-process samples, ``span_rows``/``write_spans`` for chunk
attempts, ``job_record``/``write_job_record`` for job rows), for the analytics tests.

Each GPU is sampled once a second. A chunk starts on a whole second; while it runs its GPU shows
the job's utilization, device memory and power, and the worker process its memory; between
chunks the GPU idles (``IDLE_W``). The energy counter grows by the power of each second, so a
chunk of whole seconds costs exactly ``watts x seconds``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ffray.telemetry.schema import SCHEMA_VERSION
from ffray.telemetry.spans import job_record, span_rows, write_job_record, write_spans
from ffray.telemetry.store import TelemetryStore

T0 = 1_795_000_000  # 2026-11-18, a whole second
IDLE_W = 50.0
IDLE_MEM = 400_000_000


@dataclass(frozen=True)
class Gpu:
    uuid: str
    name: str
    node: str = "n0"
    index: int = 0
    mem_total: int = 80 << 30


@dataclass
class Chunk:
    seconds: float
    frames: int = 100
    faces: int = 100
    util: float = 80.0
    mem_proc: int = 3_000_000_000
    failed_s: float | None = None  # a failed attempt of this many seconds came first


@dataclass
class Job:
    job_id: str
    gpus: list[Gpu]
    chunks: list[Chunk]
    width: int = 1920
    height: int = 1080
    watts: float = 300.0
    mem_device: int = 5_000_000_000
    share: float = 1.0
    processor: str = "faceswap"
    status: str = "done"
    placed: list = field(default_factory=list)  # filled by write_store: (chunk, gpu, start, end)


def write_store(root: Path, jobs: list[Job]) -> None:
    """Place the jobs one after another on their GPUs and write everything under ``root``."""
    clock: dict[str, float] = {}
    busy: dict[str, list] = {}
    stats, events = {}, {}
    for job in jobs:
        t = max(clock.get(g.uuid, T0 + 2) for g in job.gpus)
        lanes = {g.uuid: t for g in job.gpus}
        stats[job.job_id], events[job.job_id] = [], []
        for i, c in enumerate(job.chunks):
            g = job.gpus[i % len(job.gpus)]
            s = lanes[g.uuid]
            attempt = 1
            if c.failed_s is not None:
                events[job.job_id].append({"kind": "attempt_failed", "chunk": i, "attempt": 1,
                                           "submitted": float(s), "time": float(s + c.failed_s)})
                s, attempt = math.ceil(s + c.failed_s) + 1, 2
            e = s + c.seconds
            job.placed.append((i, g, s, e))
            busy.setdefault(g.uuid, []).append((s, e, job, c))
            stats[job.job_id].append({
                "chunk": i, "attempt": attempt, "node_id": g.node, "gpu_uuids": [g.uuid],
                "pid": 1000 + g.index, "actor_id": f"actor-{g.uuid}", "start": float(s),
                "end": float(e), "frames": c.frames, "gpus": job.share, "decode_s": 0.1,
                "process_s": c.seconds / 2, "encode_s": 0.1,
                "stages": {"faces_detected": c.faces, "faces_swapped": c.faces}})
            lanes[g.uuid] = math.ceil(e) + 1
        for g in job.gpus:
            clock[g.uuid] = lanes[g.uuid] + 1
    end = max(clock.values()) + 2
    gpus = {g.uuid: g for j in jobs for g in j.gpus}
    by_node: dict[str, list[Gpu]] = {}
    for g in gpus.values():
        by_node.setdefault(g.node, []).append(g)
    for node, here in by_node.items():
        store = TelemetryStore(root / "telemetry", node, roll_seconds=1e9)
        energy = {g.uuid: 0 for g in here}
        gpu_rows, proc_rows = [], []
        for ts in range(T0, int(end) + 1):
            for g in here:
                cur = next(((j, c) for s, e, j, c in busy.get(g.uuid, []) if s <= ts <= e), None)
                nxt = next((j for s, e, j, c in busy.get(g.uuid, []) if s <= ts < e), None)
                gpu_rows.append(_gpu_row(ts, g, cur, energy[g.uuid]))
                energy[g.uuid] += int(round((nxt.watts if nxt else IDLE_W) * 1000))
                if cur:
                    proc_rows.append({"schema_version": SCHEMA_VERSION, "ts": _dt(ts), "node": node,
                                      "gpu_uuid": g.uuid, "gpu_index": g.index, "pid": 1000 + g.index,
                                      "used_bytes": cur[1].mem_proc, "sm_util": cur[1].util})
            if len(gpu_rows) >= 5000 or ts == int(end):  # appended in batches, rolled at close
                store.append({"gpu": gpu_rows, "gpu_proc": proc_rows}, float(ts))
                gpu_rows, proc_rows = [], []
        store.close()
    for job in jobs:
        write_spans(root, job.job_id, span_rows(job.job_id, stats[job.job_id], events[job.job_id]))
        first = min(s for _, _, s, _ in job.placed)
        last = max(e for _, _, _, e in job.placed)
        spec = {"job_id": job.job_id, "status": job.status, "created": first - 1.0, "started": first - 0.5,
                "ended": last + 0.5, "input": f"/videos/{job.job_id}.mp4",
                "video": {"width": job.width, "height": job.height, "avg_frame_rate": "30/1"},
                "frames": sum(c.frames for c in job.chunks), "chunks": len(job.chunks),
                "retries": sum(c.failed_s is not None for c in job.chunks), "wall_s": last - first + 1.0,
                "processor": {"kind": job.processor}, "pipeline": "scrfd+inswapper",
                "actors_used": len(job.gpus), "gpu_per_actor_used": job.share}
        write_job_record(root, job_record(spec, len(job.chunks)))


def _gpu_row(ts: int, g: Gpu, cur, energy_mj: int) -> dict:
    job, c = cur if cur else (None, None)
    return {"schema_version": SCHEMA_VERSION, "ts": _dt(ts), "node": g.node, "gpu_uuid": g.uuid,
            "gpu_index": g.index, "gpu_name": g.name, "util_gpu": c.util if c else 0.0,
            "util_mem": 10.0, "mem_used_bytes": job.mem_device if job else IDLE_MEM,
            "mem_total_bytes": g.mem_total, "temp_c": 60.0, "power_w": job.watts if job else IDLE_W,
            "energy_mj": energy_mj, "sm_clock_mhz": 1980, "mem_clock_mhz": 2619,
            "clock_event_reasons": 0, "throttled": False, "pcie_tx_bytes": 0, "pcie_rx_bytes": 0,
            "enc_util": 0.0, "dec_util": 0.0}


def _dt(x: float):
    from datetime import datetime, timezone

    return datetime.fromtimestamp(x, tz=timezone.utc)


def law_job(job_id: str, gpu: Gpu, law: dict, rel: float, width: int, height: int, faces_per_frame: float,
            chunk_frames: list[int], noise: float = 1.0, mem_proc: int | None = None) -> Job:
    """A job whose GPU-seconds follow ``(A*frames*MP + B*faces + C*frames + D) / rel`` exactly
    (times ``noise``); ``D`` lands on the first chunk."""
    mp = width * height / 1e6
    chunks = []
    for i, f in enumerate(chunk_frames):
        faces = int(round(f * faces_per_frame))
        s = (law["A"] * f * mp + law["B"] * faces + law["C"] * f + (law["D"] if i == 0 else 0.0)) / rel
        chunks.append(Chunk(seconds=s * noise, frames=f, faces=faces,
                            mem_proc=mem_proc if mem_proc is not None else int(law["M0"] + law["M1"] * mp)))
    return Job(job_id, [gpu], chunks, width=width, height=height)
