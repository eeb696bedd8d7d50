"""Benchmark a whole `ffray swap` job: probe, plan, Ray workers (decode, stages, encode), assembly.

    python scripts/bench_swap.py [--processor identity|faceswap] [--seconds 20] [--width 1920
        --height 1080] [--input FILE] [--source IMG] [--model-dir DIR] [--detector D]
        [--swapper S] [--enhance gfpgan] [--actors N --gpu-per-actor F] [--chunk-seconds S]

With no layout options the job runs at ffray's defaults. Prints JSON: frames/s for the whole job
and for processing (first chunk start to last chunk end), time from the job's start to its first
chunk, mean GPU utilization (NVML, every 0.2 s, while processing), each stage's busy share, GPU
memory and worker RSS in the first and last minute of processing, CPU time per frame (the
host's, the workers', the codec processes') and, with ``--ceiling-frames N``, the transcode
ceiling measured on the input right before and right after the job (runs drift within a lease:
the job is compared with the ceiling of its own minutes); with ``--ceiling-whole``, the same on
the whole input (one keyframe-aligned part a CPU). Record results in docs/benchmarks.md with
date, machine and command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ffray.cluster.jobs import SwapRequest, prepare_swap, run_job  # noqa: E402
from ffray.processors import ProcessorSpec  # noqa: E402
from ffray.video import sample  # noqa: E402
from ffray.video.encode import EncodeSettings  # noqa: E402


class Sampler(threading.Thread):
    """GPU utilization and memory (NVML) and the workers' RSS, every ``period`` seconds."""

    def __init__(self, period: float = 0.2):
        super().__init__(daemon=True)
        self.period, self.rows, self.pids, self.codec_pids = period, [], set(), set()
        self.cpu_s: dict[int, float] = {}
        self.ctx: dict[int, tuple[int, int]] = {}  # pid -> (voluntary, involuntary) switches so far
        self.affinity: dict[int, int] = {}  # pid -> CPUs it may run on
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        try:
            import pynvml

            pynvml.nvmlInit()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception:  # noqa: BLE001 - no GPU
            pynvml, handles = None, []
        psutil.cpu_percent()
        while not self._halt.wait(self.period):
            ct = psutil.cpu_times()
            row = {"t": time.time(), "util": [], "mem": [],
                   "ctx": psutil.cpu_stats().ctx_switches,
                   "cpu": psutil.cpu_percent(),
                   "host_s": ct.user + ct.nice + ct.system + ct.irq + ct.softirq}
            for h in handles:
                row["util"].append(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
                row["mem"].append(pynvml.nvmlDeviceGetMemoryInfo(h).used)
            workers, codecs = set(self.pids), set(self.codec_pids)
            rss = {}
            for pid in workers | codecs:
                try:
                    p = psutil.Process(pid)
                    rss[pid] = p.memory_info().rss
                    t = p.cpu_times()
                    self.cpu_s[pid] = t.user + t.system
                    c = p.num_ctx_switches()
                    self.ctx[pid] = (c.voluntary, c.involuntary)
                    self.affinity[pid] = len(p.cpu_affinity())  # as last seen
                except psutil.Error:
                    pass
            row["rss"] = {q: rss[q] for q in workers if q in rss}
            row["crss"] = sum(rss[q] for q in codecs if q in rss)
            # CPU seconds so far by process (a process's last value is kept once it has gone)
            row["worker_s"] = {q: self.cpu_s[q] for q in workers if q in self.cpu_s}
            row["codec_s"] = {q: self.cpu_s[q] for q in codecs if q in self.cpu_s}
            self.rows.append(row)

    def stop(self) -> None:
        self._halt.set()
        self.join(2)


def window(rows, t0, t1, key):
    sel = [r for r in rows if t0 <= r["t"] <= t1]
    if key == "util":
        vals = [sum(r["util"]) / max(1, len(r["util"])) for r in sel if r["util"]]
        return round(sum(vals) / len(vals), 1) if vals else None
    if key in ("cpu", "crss"):
        vals = [r[key] for r in sel]
        if not vals:
            return None
        return round(sum(vals) / len(vals), 1) if key == "cpu" else round(max(vals) / 2**30, 2)
    if key == "mem":
        vals = [max(r["mem"]) for r in sel if r["mem"]]
        return round(max(vals) / 2**30, 2) if vals else None
    vals = [max(r["rss"].values()) for r in sel if r["rss"]]
    return round(max(vals) / 2**30, 2) if vals else None


def core_ms_per_frame(rows, t0: float, t1: float, fps: float) -> dict | None:
    """CPU time per frame between ``t0`` and ``t1`` (at ``fps``): the host's (every process),
    the worker processes' and the codec processes', in core-milliseconds."""
    sel = [r for r in rows if t0 <= r["t"] <= t1]
    if len(sel) < 2 or fps <= 0:
        return None
    a, b = sel[0], sel[-1]
    frames = fps * (b["t"] - a["t"])

    def used(key: str) -> float:
        if key == "host":
            return b["host_s"] - a["host_s"]
        total = 0.0  # each process from its first sample in the window (none of its start-up)
        for pid, last in b[key + "_s"].items():
            first = next(r[key + "_s"][pid] for r in sel if pid in r[key + "_s"])
            total += last - first
        return total

    return {k: round(1000 * used(k) / frames, 1) for k in ("host", "worker", "codec")}


def switches_per_frame(sampler: Sampler, rows, t0: float, t1: float, frames: int) -> dict:
    """Context switches an output frame: the host's between ``t0`` and ``t1``, and the worker and
    codec processes' over their lives (voluntary: a thread waited; involuntary: it was preempted)."""
    out = {}
    sel = [r for r in rows if t0 <= r["t"] <= t1]
    if len(sel) >= 2:
        out["host_processing"] = round((sel[-1]["ctx"] - sel[0]["ctx"])
                                       / max(1e-9, (sel[-1]["t"] - sel[0]["t"]) * frames / (t1 - t0)), 1)
    for name, pids in (("worker", sampler.pids), ("codec", sampler.codec_pids)):
        vals = [sampler.ctx[q] for q in pids if q in sampler.ctx]
        out[name + "_voluntary"] = round(sum(v[0] for v in vals) / max(1, frames), 1)
        out[name + "_involuntary"] = round(sum(v[1] for v in vals) / max(1, frames), 1)
    return out


def transcode_ceiling(path: str, frames: int) -> float:
    """bench_ceilings' transcode ceiling (one process per CPU, decode + libx264 as the job
    encodes), measured here so that it sits right before or after the job it is compared with."""
    from bench_ceilings import transcode_ceiling as measure

    return measure(path, os.cpu_count() or 1, frames)["fps_aggregate"]


def whole_ceiling(path: str) -> dict:
    """bench_ceilings' transcode ceiling on the whole input (one keyframe-aligned part a CPU):
    the same frames as the job's codecs, where the 240-frame ceiling sees only the opening."""
    from bench_ceilings import whole_transcode_ceiling as measure

    return measure(path, os.cpu_count() or 1)


def whole_share(report: dict, wholes: list[dict]) -> dict:
    """The job's frames/s as a share of the whole-input ceiling (mean of before and after): of its
    parts' rates summed (every CPU busy to the end: the stricter) and of its aggregate (frames over
    the slowest part's time, the static split's tail included)."""
    rates = [w["fps_sum_of_rates"] for w in wholes]
    aggs = [w["fps_aggregate"] for w in wholes]
    rate, agg = sum(rates) / len(rates), sum(aggs) / len(aggs)
    out = {"ceiling_whole_sum_of_rates": rates, "ceiling_whole_aggregate": aggs,
           "ceiling_whole_parts_fps": [w["slowest_fastest_part_fps"] for w in wholes]}
    for k in ("processing", "steady"):
        fps = report.get("fps_" + k)
        if fps:
            out[f"share_whole_{k}"] = round(fps / rate, 3)
            out[f"share_whole_{k}_aggregate"] = round(fps / agg, 3)
    return out


def steady_window(stats: list[dict]):
    """(t0, t1, frames/s) while every slot of the worker(s) ran a chunk, or None (too few chunks).
    Frames of a chunk count in proportion to its span's overlap with the window."""
    slots = sum({s["actor_id"]: s.get("slots") or 1 for s in stats}.values())
    starts = sorted(s["start"] for s in stats)
    if len(starts) <= slots:
        return None
    t0, t1 = starts[slots - 1], starts[-1]
    if t1 - t0 < 1.0:
        return None
    done = 0.0
    for s in stats:
        span = max(1e-9, s["end"] - s["start"])
        done += (s.get("frames") or 0) * max(0.0, min(s["end"], t1) - max(s["start"], t0)) / span
    return t0, t1, round(done / (t1 - t0), 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--fps", type=float, default=30)
    ap.add_argument("--actors", type=int)
    ap.add_argument("--gpu-per-actor", type=float)
    ap.add_argument("--chunk-seconds", type=float)
    ap.add_argument("--chunk-taper", type=float,
                    help="the last share of the input in half-length chunks (default: the job's "
                    "auto taper; 0: none)")
    ap.add_argument("--processor", default="identity")
    ap.add_argument("--workdir")
    ap.add_argument("--input", help="use this video instead of generating one")
    ap.add_argument("--source", help="source face image (default: skimage's astronaut)")
    ap.add_argument("--model-dir", action="append", default=[])
    ap.add_argument("--detector", default="auto")
    ap.add_argument("--swapper", default="auto")
    ap.add_argument("--enhance")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--slots", type=int, help="chunks in flight per worker (default: from its CPUs)")
    ap.add_argument("--no-telemetry", action="store_true")
    ap.add_argument("--in-process-codecs", action="store_true")
    ap.add_argument("--ceiling-frames", type=int, default=0,
                    help="also measure the transcode ceiling on the input (this many frames a "
                    "process) right before and right after the job, and the job's share of it")
    ap.add_argument("--ceiling-whole", action="store_true",
                    help="also measure the transcode ceiling on the whole input (one part a CPU) "
                    "right before and right after the job, and the job's share of it")
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
    params = {"detector": a.detector, "swapper": a.swapper, "enhance": a.enhance} \
        if a.processor == "faceswap" else {}
    ceilings = [transcode_ceiling(str(src), a.ceiling_frames)] if a.ceiling_frames else []
    wholes = [whole_ceiling(str(src))] if a.ceiling_whole else []
    sampler = Sampler()
    sampler.start()
    t0 = time.perf_counter()
    t_wall0 = time.time()
    req = SwapRequest(input=str(src), output=str(out), overwrite=True, chunk_seconds=a.chunk_seconds,
                      chunk_taper=a.chunk_taper,
                      processor=ProcessorSpec(kind=a.processor, params=params, batch_size=a.batch_size),
                      sources=[source] if source else [], actors=a.actors, gpu_per_actor=a.gpu_per_actor,
                      model_dirs=a.model_dir, telemetry=not a.no_telemetry, encode=EncodeSettings(),
                      codec_processes=not a.in_process_codecs)
    ledger = prepare_swap(req, work / "data")
    if a.slots:
        ledger.update(slots=a.slots)

    def on_progress(p):
        for i in p.worker_info:
            sampler.pids.add(i["pid"])
            sampler.codec_pids.update(i.get("codec_pids") or [])
    res = run_job(ledger, on_progress=on_progress, on_note=lambda s: print(s, file=sys.stderr))
    wall = time.perf_counter() - t0
    sampler.stop()
    stats = ledger.chunk_stats()
    spec = ledger.spec
    first, last = min(s["start"] for s in stats), max(s["end"] for s in stats)
    proc_s = last - first
    engine = max(stats, key=lambda s: s["end"]).get("engine", {})
    busy = {k: v.get("busy_share") for k, v in engine.get("stages", {}).items()}
    rows = sampler.rows
    steady = steady_window(stats)
    report = {
        "machine": f"{platform.node()} {os.cpu_count()} cpu", "input": str(src), "frames": res.frames,
        "chunks": res.chunks, "chunk_seconds": spec.get("chunk_seconds"),
        "chunk_taper": spec.get("chunk_taper"),
        "workers": len({s['actor_id'] for s in stats}), "pipeline": spec.get("pipeline"),
        "backend": stats[0].get("backend"), "slots_per_worker": stats[0].get("slots"),
        "wall_s": round(wall, 2), "fps_whole_job": round(res.frames / wall, 2),
        "fps_processing": round(res.frames / proc_s, 2), "processing_s": round(proc_s, 2),
        "start_to_first_chunk_s": round(first - t_wall0, 2),
        "after_last_chunk_s": round(t_wall0 + wall - last, 2),  # assembly, teardown, report
        "report_s": round(res.report_s, 2), "teardown_wait_s": round(res.teardown_wait_s, 2),
        "fps_from_first_chunk": round(res.frames / (t_wall0 + wall - first), 2),
        "startup": {k: v for k, v in spec.get("startup", {}).items() if k != "workers"},
        "workers_ready_s": spec.get("startup", {}).get("workers_ready_s"),
        "worker_setup_s": [round(i.get("setup_s", 0), 2) for i in spec.get("startup", {}).get("workers", [])],
        "worker_setup_phases": [{**i.get("setup_phases", {}), **(i.get("notes") or {}).get("setup", {})}
                                for i in spec.get("startup", {}).get("workers", [])],
        "plan_s": round(res.plan_s, 2), "assemble_s": round(res.assemble_s, 2),
        "gpu_util_mean_processing": window(rows, first, last, "util"),
        "gpu_mem_gib_first_min": window(rows, first, first + 60, "mem"),
        "gpu_mem_gib_last_min": window(rows, last - 60, last, "mem"),
        "worker_rss_gib_first_min": window(rows, first, first + 60, "rss"),
        "worker_rss_gib_last_min": window(rows, last - 60, last, "rss"),
        "host_cpu_percent_processing": window(rows, first, last, "cpu"),
        "codec_rss_gib_first_min": window(rows, first, first + 60, "crss"),
        "codec_rss_gib_last_min": window(rows, last - 60, last, "crss"),
        "codec_processes": spec.get("codec_processes"),
        "stage_busy_share": busy, "engine_wall_s": engine.get("wall_s"),
        "faces_swapped": int(sum(s["stages"].get("faces_swapped", 0) for s in stats)),
        "chunk_encode_s_mean": round(sum(s["encode_s"] for s in stats) / len(stats), 2),
        "chunk_wall_s_mean": round(sum(s["wall_s"] for s in stats) / len(stats), 2),
        # the encoders' share of their chunks' time: below 1, an encoder waited for frames
        "encoder_busy_share": round(sum(s["encode_s"] for s in stats)
                                    / max(1e-9, sum(s["wall_s"] for s in stats)), 3),
        "models": (stats[0].get("notes") or {}).get("models"),
        "cuda_graphs": {k: [v.get("cuda_graph"), v.get("graphs", 0), v.get("graph_refused"),
                            v.get("shared_streams", 0)]
                        for k, v in ((stats[0].get("notes") or {}).get("models") or {}).items()},
        "chunks_worker_decoded": dict(Counter((s.get("decode_report") or {}).get("worker_decoded", "")
                                              for s in stats)),
        # every slot busy: from the start of the last chunk of the first wave to the start of the
        # last chunk (before it ramp-up, after it slots fall idle one by one)
        **({"fps_steady": steady[2], "steady_s": round(steady[1] - steady[0], 2),
            "gpu_util_mean_steady": window(rows, steady[0], steady[1], "util"),
            "host_cpu_percent_steady": window(rows, steady[0], steady[1], "cpu")} if steady else {}),
        "chunk_spans": [[round(s["start"] - first, 2), round(s["end"] - first, 2), s.get("frames")]
                        for s in sorted(stats, key=lambda s: s["start"])],
    }
    if steady:
        report["core_ms_per_frame_steady"] = core_ms_per_frame(rows, steady[0], steady[1], steady[2])
    report["core_ms_per_frame_processing"] = core_ms_per_frame(rows, first, last, res.frames / proc_s)
    report["switches_per_frame"] = switches_per_frame(sampler, rows, first, last, res.frames)
    report["codec_affinity_cpus"] = dict(Counter(sampler.affinity[q] for q in sampler.codec_pids
                                                 if q in sampler.affinity))
    report["worker_affinity_cpus"] = dict(Counter(sampler.affinity[q] for q in sampler.pids
                                                  if q in sampler.affinity))
    if a.ceiling_frames:
        ceilings.append(transcode_ceiling(str(src), a.ceiling_frames))
        ceiling = sum(ceilings) / 2
        report.update(ceiling_transcode_before_after=ceilings,
                      share_processing=round(report["fps_processing"] / ceiling, 3),
                      share_steady=round(report["fps_steady"] / ceiling, 3) if steady else None)
    if a.ceiling_whole:
        wholes.append(whole_ceiling(str(src)))
        report.update(whole_share(report, wholes))
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
