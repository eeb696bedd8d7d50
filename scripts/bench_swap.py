"""Benchmark a whole `ffray swap` job: probe, plan, Ray workers (decode, process, encode), assembly.

    python scripts/bench_swap.py [--processor identity|faceswap] [--seconds 20] [--width 1920
        --height 1080] [--actors N] [--gpu-per-actor F] [--input FILE] [--source IMG]
        [--model-dir DIR] [--detector D] [--swapper S]

Prints JSON: frames/s over the whole job, the share of wall time outside the workers (driver
planning + assembly), and per-stage seconds summed over chunks. Record results in
docs/benchmarks.md with date, machine and command.
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
    ap.add_argument("--input", help="use this video instead of generating one")
    ap.add_argument("--source", help="source face image (default: skimage's astronaut)")
    ap.add_argument("--gpu-per-actor", type=float)
    ap.add_argument("--model-dir", action="append", default=[])
    ap.add_argument("--detector", default="auto")
    ap.add_argument("--swapper", default="auto")
    ap.add_argument("--batch-size", type=int, default=8)
    a = ap.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="ffray-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    src = Path(a.input) if a.input else work / f"sample_{a.height}p.mp4"
    if not src.exists():
        t = time.perf_counter()
        n = int(a.seconds * a.fps)
        sample.write_video(src, sample.pan_zoom_frames(sample.faces_image(), n, a.width, a.height),
                           fps=a.fps, gop=60)
        print(f"made {src} in {time.perf_counter() - t:.1f} s", flush=True)
    out = work / "out.mp4"
    source = a.source
    if a.processor == "faceswap" and not source:
        import cv2

        source = str(work / "source.jpg")
        cv2.imwrite(source, sample.astronaut_face())
    params = {"detector": a.detector, "swapper": a.swapper} if a.processor == "faceswap" else {}
    t0 = time.perf_counter()
    t_wall0 = time.time()
    ledger = prepare_swap(SwapRequest(input=str(src), output=str(out), overwrite=True,
                                      chunk_seconds=a.chunk_seconds,
                                      processor=ProcessorSpec(kind=a.processor, params=params,
                                                              batch_size=a.batch_size),
                                      sources=[source] if source else [], actors=a.actors,
                                      gpu_per_actor=a.gpu_per_actor, model_dirs=a.model_dir),
                          work / "data")
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
        "pipeline": ledger.spec.get("pipeline"),
        "worker_stage_s": {k: round(sum(s[k] for s in stats), 2)
                           for k in ("decode_s", "convert_s", "process_s", "encode_s", "wall_s")},
        "processor_stage_s": {k: round(sum(s["stages"].get(k, 0) for s in stats), 2)
                              for k in ("detect_s", "embed_s", "swap_s", "paste_s", "enhance_s")},
        "faces_swapped": int(sum(s["stages"].get("faces_swapped", 0) for s in stats)),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
