"""Scaling and per-GPU attribution check: `ffray swap` with several actor/GPU layouts on one
machine, telemetry on, then what the Parquet store says about each run.

    python scripts/bench_scaling.py --input in.mp4 --source face.jpg --model-dir DIR \
        --layout 1x1 --layout 2x1 --layout 4x0.5 --home /tmp/scal --out results.json

A layout ``AxG`` is A actors of G GPUs each (1x1: one actor on one GPU; 4x0.5: two per GPU on two
GPUs). Per run: frames/s, scaling efficiency against the first layout (fps / (GPUs x fps of 1 GPU)),
telemetry rows per GPU in the job's window, finished spans per GPU UUID, whether each span's UUID
is the GPU the worker really used (two independent checks: NVML's process list sampled by the
telemetry actor, `gpu_proc`, and the worker's own NVML lookup of its PID, `gpu_uuids_seen`), the
share of busy GPU-seconds (samples with utilization > 0) that fall inside a chunk span on that GPU,
and peak GPU memory per actor process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ffray.analytics.source import Store  # noqa: E402

CHECK_SQL = """
WITH s AS (SELECT * FROM spans WHERE job_id = $job AND status = 'done'),
w AS (SELECT min(start) AS lo, max("end") AS hi FROM s),
used AS (SELECT DISTINCT gpu_uuid FROM s),
seen AS (
  SELECT s.chunk, s.attempt, list(DISTINCT p.gpu_uuid) AS uuids
  FROM s LEFT JOIN gpu_proc p ON p.pid = s.pid AND p.ts BETWEEN s.start AND s."end"
  GROUP BY ALL
)
SELECT s.chunk, s.attempt, s.gpu_uuid, s.pid, seen.uuids AS proc_uuids
FROM s JOIN seen USING (chunk, attempt) ORDER BY s.chunk
"""

BUSY_SQL = """
WITH s AS (SELECT * FROM spans WHERE job_id = $job AND status = 'done'),
w AS (SELECT min(start) AS lo, max("end") AS hi FROM s),
g AS (SELECT gpu_uuid, ts, util_gpu FROM gpu WHERE ts BETWEEN (SELECT lo FROM w) AND (SELECT hi FROM w)
      AND gpu_uuid IN (SELECT gpu_uuid FROM s))
SELECT g.gpu_uuid, count(*) AS rows, count(*) FILTER (WHERE g.util_gpu > 0) AS busy,
       count(*) FILTER (WHERE g.util_gpu > 0 AND EXISTS (
           SELECT 1 FROM s WHERE s.gpu_uuid = g.gpu_uuid AND g.ts BETWEEN s.start AND s."end")) AS inside
FROM g GROUP BY g.gpu_uuid ORDER BY g.gpu_uuid
"""


def analyse(home: Path, job_id: str) -> dict:
    store = Store(home)
    try:
        job = store.rows("SELECT * FROM jobs WHERE job_id = $job", job=job_id)[0]
        spans = store.rows(CHECK_SQL, job=job_id)
        busy = store.rows(BUSY_SQL, job=job_id)
        mem = store.rows("""SELECT p.pid, max(p.used_bytes) AS peak FROM gpu_proc p
                            WHERE p.pid IN (SELECT pid FROM spans WHERE job_id = $job) GROUP BY p.pid
                            ORDER BY p.pid""", job=job_id)
    finally:
        store.close()
    worker_seen = {}
    for f in sorted((home / "jobs" / job_id / "chunks").glob("*.json")):
        st = json.loads(f.read_text())
        worker_seen[st["chunk"]] = st.get("gpu_uuids_seen")
    per_uuid: dict = {}
    ok_proc = ok_worker = unverifiable = 0
    for s in spans:
        per_uuid[s["gpu_uuid"]] = per_uuid.get(s["gpu_uuid"], 0) + 1
        pu = [u for u in (s["proc_uuids"] or []) if u]
        if not pu:
            unverifiable += 1
        elif pu == [s["gpu_uuid"]]:
            ok_proc += 1
        seen = worker_seen.get(s["chunk"])
        if seen and seen == [s["gpu_uuid"]]:
            ok_worker += 1
    n_busy = sum(b["busy"] for b in busy)
    return {"frames": job["frames"], "wall_s": job["wall_s"],
            "fps": job["frames"] / job["wall_s"] if job["wall_s"] else None,
            "spans": len(spans), "spans_per_gpu": per_uuid,
            "span_uuid_matches_nvml_process_list": ok_proc, "span_uuid_matches_worker_check": ok_worker,
            "spans_without_process_samples": unverifiable,
            "telemetry_rows_per_gpu": {b["gpu_uuid"]: b["rows"] for b in busy},
            "busy_share_inside_spans": (sum(b["inside"] for b in busy) / n_busy) if n_busy else None,
            "peak_mem_per_actor_mib": {str(m["pid"]): round(m["peak"] / 2**20) for m in mem}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--input")
    ap.add_argument("--source")
    ap.add_argument("--model-dir", action="append", default=[])
    ap.add_argument("--layout", action="append", help="ACTORSxGPU_PER_ACTOR")
    ap.add_argument("--home", required=True, help="FFRAY_HOME for the runs")
    ap.add_argument("--chunk-seconds", type=float, default=5.0)
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more `ffray swap` options")
    ap.add_argument("--out")
    ap.add_argument("--no-analyse", action="store_true",
                    help="only run (e.g. on a machine without DuckDB); analyse later with --analyse-only")
    ap.add_argument("--analyse-only", action="store_true", help="analyse the runs listed in --out")
    a = ap.parse_args()
    home = Path(a.home)
    home.mkdir(parents=True, exist_ok=True)
    if a.analyse_only:
        results = json.loads(Path(a.out).read_text())
        for r in results:
            if r.get("job_id"):
                r |= analyse(home, r["job_id"])
        return _finish(results, a.out)
    if not (a.input and a.source and a.layout):
        ap.error("--input, --source and --layout are needed to run (or --analyse-only)")
    results = []
    for layout in a.layout:
        actors, gpa = layout.split("x")
        out = home / f"out-{layout}.mp4"
        cmd = [sys.executable, "-m", "ffray.cli", "swap", a.input, "-s", a.source, "-o", str(out),
               "--overwrite", "--actors", actors, "--gpu-per-actor", gpa, "--chunk-seconds",
               str(a.chunk_seconds), *sum((["--model-dir", d] for d in a.model_dir), []), *a.extra]
        before = set((home / "jobs").iterdir()) if (home / "jobs").is_dir() else set()
        t = time.perf_counter()
        r = subprocess.run(cmd, env={**os.environ, "FFRAY_HOME": str(home)}, capture_output=True, text=True)
        elapsed = time.perf_counter() - t
        new = sorted(set((home / "jobs").iterdir()) - before) if (home / "jobs").is_dir() else []
        row = {"layout": layout, "actors": int(actors), "gpu_per_actor": float(gpa),
               "gpus": round(int(actors) * float(gpa) + 0.4999), "rc": r.returncode,
               "elapsed_s": round(elapsed, 2), "stderr_tail": r.stderr.strip().splitlines()[-4:]}
        if r.returncode == 0 and new:
            row["job_id"] = new[-1].name
            if not a.no_analyse:
                row |= analyse(home, new[-1].name)
            else:
                spec = json.loads((new[-1] / "job.json").read_text())
                row |= {"frames": spec["frames"], "wall_s": spec.get("wall_s"),
                        "fps": spec["frames"] / spec["wall_s"] if spec.get("wall_s") else None}
        results.append(row)
        print(json.dumps(row), flush=True)
    _finish(results, a.out)


def _finish(results: list[dict], out: str | None) -> None:
    for r in results:
        r.pop("speedup_vs_first", None), r.pop("scaling_efficiency", None)
    first = next((r for r in results if r.get("fps")), None)
    base = next((r["fps"] for r in results if r.get("fps") and r["gpus"] == 1 and r["actors"] == 1), None)
    for r in results:
        if first and r.get("fps"):
            r["speedup_vs_first"] = round(r["fps"] / first["fps"], 3)
        if base and r.get("fps") and r["gpus"] > 1:  # fps with N GPUs / (N x fps of 1 actor on 1 GPU)
            r["scaling_efficiency"] = round(r["fps"] / (r["gpus"] * base), 3)
    text = json.dumps(results, indent=2)
    if out:
        Path(out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
