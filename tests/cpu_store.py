"""A CPU-only job with known contents, written through the real telemetry API: host samples of
one node every second (``TelemetryStore``), no GPU rows, and the spans and job record the driver
writes (``span_rows`` over chunk stats and ledger events whose failure carries its place from
``driver.where``, ``write_spans``, ``job_record``).

Job ``cpu-job`` on node ``cpu0``: two workers (actors ``w1``, ``w2``; pids 501, 502), two chunk
slots each. Chunks 0-3 have one face per frame and take 8 s; chunks 4-7 two faces and 16 s.
Chunk 5's first attempt fails on ``w2`` after 3 s and is retried on ``w1``. ``CHUNKS`` lists
(chunk, attempt, worker, start, end, faces per frame) in seconds after ``T0``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from ffray.cluster.driver import where
from ffray.telemetry.schema import SCHEMA_VERSION
from ffray.telemetry.spans import job_record, span_rows, write_job_record, write_spans
from ffray.telemetry.store import TelemetryStore

T0 = 1_795_100_000  # 2026-11-19
NODE = "cpu0"
FPS = 25.0
FRAMES = 100  # per chunk: 4 s of video each
WORKERS = {"w1": {"node": NODE, "node_id": "ab" * 28, "actor_id": "w1", "pid": 501, "gpu_uuids": [None]},
           "w2": {"node": NODE, "node_id": "ab" * 28, "actor_id": "w2", "pid": 502, "gpu_uuids": [None]}}
CHUNKS = [(0, 1, "w1", 2, 10, 1), (1, 1, "w1", 2, 10, 1), (2, 1, "w2", 2, 10, 1), (3, 1, "w2", 2, 10, 1),
          (4, 1, "w1", 10, 26, 2), (5, 1, "w2", 10, 13, 2), (6, 1, "w1", 10, 26, 2), (7, 1, "w2", 10, 26, 2),
          (5, 2, "w1", 26, 42, 2)]
SECONDS = 46


def _dt(s: float) -> datetime:
    return datetime.fromtimestamp(T0 + s, tz=timezone.utc)


def build(root: Path, job_id: str = "cpu-job", submission: str | None = None) -> Path:
    """Write the job under ``root``; ``submission``: the Ray Jobs submission id its record names."""
    store = TelemetryStore(root / "telemetry", NODE, roll_seconds=1e9)
    rows = [{"schema_version": SCHEMA_VERSION, "ts": _dt(i), "node": NODE, "ray_node": "ab" * 28,
             "gpu_available": False, "cpu_percent": 95.0 if 2 <= i <= 42 else 5.0, "load1": 2.0,
             "mem_used_bytes": (6 << 30) if 2 <= i <= 42 else (2 << 30), "mem_total_bytes": 16 << 30}
            for i in range(SECONDS)]
    store.append({"host": rows}, float(T0 + SECONDS))
    store.close()
    stats, events = [], []
    for chunk, attempt, w, a, b, fpf in CHUNKS:
        info = WORKERS[w]
        if (chunk, attempt) == (5, 1):
            events.append({"kind": "attempt_failed", "chunk": chunk, "attempt": attempt, "actor": 1,
                           "reason": "worker died", "submitted": T0 + a, "time": T0 + b, **where(info)})
            continue
        stats.append({"chunk": chunk, "attempt": attempt, "node": NODE, "node_id": info["node_id"],
                      "gpu_uuids": [], "pid": info["pid"], "actor_id": w, "start": T0 + a, "end": T0 + b,
                      "frames": FRAMES, "gpus": 0.0, "decode_s": 0.5, "process_s": (b - a) - 1.0,
                      "encode_s": 0.5,
                      "stages": {"faces_detected": FRAMES * fpf, "faces_swapped": FRAMES * fpf}})
    write_spans(root, job_id, span_rows(job_id, stats, events))
    spec = {"job_id": job_id, "status": "done", "created": T0 + 1, "started": T0 + 1.5, "ended": T0 + 43,
            "input": "/videos/cpu.mp4", "video": {"width": 640, "height": 360, "avg_frame_rate": "25/1"},
            "frames": 8 * FRAMES, "chunks": 8, "retries": 1, "wall_s": 41.0,
            "processor": {"kind": "faceswap"}, "pipeline": "mtcnn+classic", "actors": 2, "gpu_per_actor": 0.0}
    write_job_record(root, job_record(spec, 8, submission))
    return root
