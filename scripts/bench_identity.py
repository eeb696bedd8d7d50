"""Benchmark: the identity pipeline end to end (probe, plan, Ray workers decode+encode, assembly).

    python scripts/bench_identity.py [--seconds 20] [--width 1920 --height 1080] [--actors N]

Prints JSON: frames/s over the whole job and the share of wall time spent outside the workers
(driver planning + assembly). Record results in docs/benchmarks.md with date, machine, command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from ffray.cluster.jobs import SwapRequest, prepare_swap, run_job
from ffray.processors import ProcessorSpec
from ffray.video import sample


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--fps", type=float, default=30)
    ap.add_argument("--actors", type=int)
    ap.add_argument("--chunk-seconds", type=float, default=5)
    ap.add_argument("--processor", default="identity")
    ap.add_argument("--workdir")
    a = ap.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="ffray-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    src = work / f"sample_{a.height}p.mp4"
    if not src.exists():
        t = time.perf_counter()
        n = int(a.seconds * a.fps)
        sample.write_video(src, sample.pan_zoom_frames(sample.faces_image(), n, a.width, a.height),
                           fps=a.fps, gop=60)
        print(f"made {src} in {time.perf_counter() - t:.1f} s", flush=True)
    out = work / "out.mp4"
    t0 = time.perf_counter()
    t_wall0 = time.time()
    ledger = prepare_swap(SwapRequest(input=str(src), output=str(out), overwrite=True,
                                      chunk_seconds=a.chunk_seconds,
                                      processor=ProcessorSpec(kind=a.processor),
                                      actors=a.actors), work / "data")
    res = run_job(ledger)
    wall = time.perf_counter() - t0
    stats = ledger.chunk_stats()
    outside = res.plan_s + res.assemble_s
    report = {
        "machine": f"{platform.node()} {os.cpu_count()} cpu {platform.processor()}",
        "frames": res.frames, "resolution": f"{a.width}x{a.height}", "chunks": res.chunks,
        "actors": len({s['actor_id'] for s in stats}), "wall_s": round(wall, 2),
        "fps": round(res.frames / wall, 2),
        "plan_s": round(res.plan_s, 2), "assemble_s": round(res.assemble_s, 2),
        "pool_s": round(ledger.spec["pool_s"], 2),
        "first_chunk_start_after_s": round(min(s["start"] for s in stats) - t_wall0, 2),
        "outside_workers_share": round(outside / wall, 3),
        "worker_stage_s": {k: round(sum(s[k] for s in stats), 2)
                           for k in ("decode_s", "convert_s", "process_s", "encode_s", "wall_s")},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
