"""A small data dir with known contents, written through the real telemetry API: 2 nodes x 2 GPUs
sampled every second for 120 s (FakeGpus -> Sampler -> TelemetryStore -> Parquet, alerts by the
real AlertEngine), and 2 jobs whose spans (``span_rows`` + ``write_spans``) and job records
(``job_record`` + ``write_job_record``) are written as the driver writes them.

job-a (node n0): chunk 0 on GPU 0 [10, 30], chunk 1 fails once [10, 14] then runs on GPU 1
[15, 35], chunk 2 on GPU 0 [40, 60], chunk 3 on GPU 1 [40, 50].
job-b (node n1): chunk 0 on GPU 0 [60, 100] (throttled at 100 % during [70, 80]), chunk 1 on
GPU 1 [60, 80]. Times are seconds after T0. A busy GPU draws WATTS[node] at 90 % utilization and
its worker process holds PROC_MEM[(node, gpu)] bytes; an idle one draws IDLE_W at 0 %.
"""

from __future__ import annotations

from pathlib import Path

from ffray.telemetry.alerts import AlertEngine, parse_rules
from ffray.telemetry.sampler import Sampler
from ffray.telemetry.spans import job_record, span_rows, write_job_record, write_spans
from ffray.telemetry.store import TelemetryStore
from tests.fake_nvml import FakeGpus

T0 = 1_795_000_000.0  # 2026-11-18
SECONDS = 120
WATTS = {"n0": 300.0, "n1": 200.0}
IDLE_W = 50.0
PROC_MEM = {("n0", 0): 3_000_000_000, ("n0", 1): 4_000_000_000, ("n1", 0): 5_000_000_000,
            ("n1", 1): 6_000_000_000}
THROTTLED = ("n1", 0, 70, 80)
# job, chunk, attempt, node, gpu (None: failed), start, end, frames, faces
SPANS = [("job-a", 0, 1, "n0", 0, 10, 30, 100, 100), ("job-a", 1, 1, "n0", None, 10, 14, 0, 0),
         ("job-a", 1, 2, "n0", 1, 15, 35, 100, 200), ("job-a", 2, 1, "n0", 0, 40, 60, 100, 100),
         ("job-a", 3, 1, "n0", 1, 40, 50, 50, 50),
         ("job-b", 0, 1, "n1", 0, 60, 100, 200, 600), ("job-b", 1, 1, "n1", 1, 60, 80, 100, 100)]


def pid(node: str, gpu: int) -> int:
    return 1000 + 10 * int(node[1:]) + gpu


def uuid(node: str, gpu: int) -> str:
    return f"GPU-{node}-{gpu:02d}"


def expected(job: str) -> dict:
    """The job's totals as constructed (done attempts only)."""
    done = [s for s in SPANS if s[0] == job and s[4] is not None]
    return {"gpu_seconds": sum(s[6] - s[5] for s in done),
            "energy_j": sum((s[6] - s[5]) * WATTS[s[3]] for s in done),
            "frames": sum(s[7] for s in done), "faces": sum(s[8] for s in done),
            "peak_mem_process": max(PROC_MEM[(s[3], s[4])] for s in done),
            "attempts": len([s for s in SPANS if s[0] == job]),
            "failed": len([s for s in SPANS if s[0] == job and s[4] is None])}


def build(root: Path) -> Path:
    """Write the data dir under ``root`` and return it."""
    engine = AlertEngine(parse_rules(["throttle:util_gpu>99@5"]))
    for node in ("n0", "n1"):
        gpus = FakeGpus(2, node)
        store = TelemetryStore(root / "telemetry", node, roll_seconds=30)
        sampler = Sampler(node, gpus)
        for i in range(SECONDS):
            for g in (0, 1):
                busy = any(s[3] == node and s[4] == g and s[5] <= i <= s[6] for s in SPANS)
                hot = THROTTLED[:2] == (node, g) and THROTTLED[2] <= i <= THROTTLED[3]
                gpus.util[g] = 100.0 if hot else 90.0 if busy else 0.0
                gpus.watts[g] = WATTS[node] if busy else IDLE_W
                gpus.procs[g] = [(pid(node, g), PROC_MEM[(node, g)], 80.0)] if busy else []
            rows = sampler.sample(T0 + i)
            rows["alerts"] = engine.check(rows["gpu"])
            store.append(rows, T0 + i)
            gpus.advance(1.0)
        store.close()
    for job in ("job-a", "job-b"):
        stats, events = [], []
        for j, chunk, attempt, node, g, a, b, frames, faces in SPANS:
            if j != job:
                continue
            if g is None:
                events.append({"kind": "attempt_failed", "chunk": chunk, "attempt": attempt,
                               "submitted": T0 + a, "time": T0 + b})
                continue
            stats.append({"chunk": chunk, "attempt": attempt, "node_id": node, "gpu_uuids": [uuid(node, g)],
                          "pid": pid(node, g), "actor_id": f"actor-{node}-{g}", "start": T0 + a,
                          "end": T0 + b, "frames": frames, "gpus": 1.0, "decode_s": 0.5,
                          "process_s": (b - a) - 1.0, "encode_s": 0.5,
                          "stages": {"faces_detected": faces, "faces_swapped": faces}})
        write_spans(root, job, span_rows(job, stats, events))
        done = [s for s in SPANS if s[0] == job]
        spec = {"job_id": job, "status": "done", "created": T0 + 1, "started": T0 + 2,
                "ended": T0 + max(s[6] for s in done) + 1, "input": f"/videos/{job}.mp4",
                "video": {"width": 1920, "height": 1080, "avg_frame_rate": "30/1"},
                "frames": sum(s[7] for s in done if s[4] is not None),
                "chunks": len({s[1] for s in done}), "retries": len([s for s in done if s[4] is None]),
                "wall_s": float(max(s[6] for s in done) - min(s[5] for s in done)),
                "processor": {"kind": "faceswap"}, "pipeline": "mtcnn+classic", "actors": 2,
                "gpu_per_actor": 1.0}
        write_job_record(root, job_record(spec, spec["chunks"]))
    return root
