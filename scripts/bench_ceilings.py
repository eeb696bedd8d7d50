"""The node's stage ceilings, measured in the same lease as the job benchmarks: decode, libx264 in
N parallel processes, and (with --models) each model alone at batch 1 and at larger batches,
fp32 and fp16, through the GPU runner (IO binding). Prints JSON.

    python scripts/bench_ceilings.py --input VIDEO [--streams 1,4,8,16] [--threads 1,2]
        [--models DIR] [--frames 240]

Encode: each process encodes the same decoded frames (yuv420p, the input's size) with libx264
``veryfast`` CRF 18 at the given x264 thread count; aggregate frames/s = total frames / wall time
of the slowest process. Decode: one process, PyAV threads AUTO; and N processes with 1 thread.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def x264_options(auto: bool = False) -> dict:
    """libx264's options as the job encodes (veryfast CRF 18, the pinned instruction set:
    ``ffray.video.encode.X264_ASM``); ``auto``: x264's own instruction-set choice."""
    from ffray.video.encode import EncodeSettings

    opts = EncodeSettings().codec_options()
    if auto:
        opts.pop("x264-params", None)
    return opts


def _frames(path: str, n: int) -> list:
    out = []
    with av.open(path) as c:
        for f in c.decode(video=0):
            out.append(f.reformat(format="yuv420p").to_ndarray())
            if len(out) >= n:
                break
    return out


def _encode_worker(args) -> tuple[int, float]:
    path, n, threads, repeat, auto = args
    arrays = _frames(path, n)
    h, w = arrays[0].shape[0] * 2 // 3, arrays[0].shape[1]
    frames = [av.VideoFrame.from_ndarray(a, format="yuv420p") for a in arrays]
    buf = io.BytesIO()
    out = av.open(buf, "w", format="nut")
    s = out.add_stream("libx264", rate=30, options=x264_options(auto))
    s.width, s.height, s.pix_fmt = w, h, "yuv420p"
    s.codec_context.thread_count = threads
    s.codec_context.thread_type = "FRAME"
    t = time.perf_counter()
    k = 0
    for _ in range(repeat):
        for f in frames:
            f.pts = k
            k += 1
            out.mux(s.encode(f))
    out.mux(s.encode(None))
    out.close()
    return k, time.perf_counter() - t


def _decode_worker(args) -> tuple[int, float]:
    path, threads = args
    t = time.perf_counter()
    n = 0
    with av.open(path) as c:
        st = c.streams.video[0]
        st.thread_type = "AUTO" if threads == 0 else "FRAME"
        st.thread_count = threads
        for f in c.decode(st):
            f.to_ndarray()  # the copy a worker makes (its packed planes)
            n += 1
    return n, time.perf_counter() - t


def _transcode(path: str, auto: bool, start: int | None = None, end: int | None = None,
               limit: int | None = None) -> tuple[int, float]:
    """Decode (1 thread) and encode (libx264 1 thread, the job's options) in one process, from
    pts ``start`` (a keyframe; None: the first frame) to before ``end`` or ``limit`` frames: one
    chunk slot's CPU work, with nothing else in between. (frames, seconds)."""
    buf = io.BytesIO()
    t = time.perf_counter()
    k = 0
    with av.open(path) as c, av.open(buf, "w", format="nut") as out:
        st = c.streams.video[0]
        st.thread_type, st.thread_count = "FRAME", 1
        if start is not None:
            c.seek(start, stream=st, backward=True, any_frame=False)
        s = out.add_stream("libx264", rate=30, options=x264_options(auto))
        s.width, s.height, s.pix_fmt = st.width, st.height, "yuv420p"
        s.codec_context.thread_count, s.codec_context.thread_type = 1, "FRAME"
        for f in c.decode(st):
            if start is not None and f.pts < start:
                continue
            if end is not None and f.pts >= end:
                break
            f.pts, f.pict_type = k, av.video.frame.PictureType.NONE
            out.mux(s.encode(f))
            k += 1
            if limit is not None and k >= limit:
                break
        out.mux(s.encode(None))
    return k, time.perf_counter() - t


def _transcode_worker(args) -> tuple[int, float]:
    """The first ``n`` frames (the 240-frame ceiling's work)."""
    path, n, auto = args
    return _transcode(path, auto, limit=n)


def keyframe_spans(path: str, parts: int) -> list[tuple[int, int | None]]:
    """The input cut into ``parts`` spans of about equal frame counts, each starting on a keyframe:
    [(start pts, end pts or None for the last)], from the packets alone (nothing decoded)."""
    with av.open(path) as c:
        st = c.streams.video[0]
        pts = sorted((p.pts, p.is_keyframe) for p in c.demux(st) if p.pts is not None)
    n = len(pts)
    keys = [(i, t) for i, (t, k) in enumerate(pts) if k]
    starts = []
    for j in range(parts):
        want = j * n / parts
        _, t = min(keys, key=lambda kt: abs(kt[0] - want))
        if t not in starts:
            starts.append(t)
    starts.sort()
    return [(a, b) for a, b in zip(starts, starts[1:] + [None])]


def _transcode_span(args) -> tuple[int, float]:
    """The frames of one keyframe-aligned span: one chunk slot's CPU work on this part of the input."""
    path, start, end, auto = args
    return _transcode(path, auto, start, end)


def whole_transcode_ceiling(path: str, procs: int, auto: bool = False) -> dict:
    """The transcode ceiling on the *whole* input: ``procs`` processes, each decoding and encoding
    its own keyframe-aligned part: the job's own work, where the 240-frame ceiling sees only the
    opening (on the 2-core VM 7 % cheaper than the rest; on the H200 both ceilings agreed within
    the node's swings: docs/benchmarks.md, twelfth pass).
    ``fps_aggregate``: all frames / the slowest part's time; ``fps_sum_of_rates``: the parts' own
    rates added up (every core busy to the end: the stricter, higher figure)."""
    spans = keyframe_spans(path, procs)
    with mp.get_context("spawn").Pool(len(spans)) as pool:
        res = pool.map(_transcode_span, [(path, a, b, auto) for a, b in spans])
    total = sum(n for n, _ in res)
    return {"processes": len(spans), "frames": total, "x264_asm": "auto" if auto else "job's",
            "fps_aggregate": round(total / max(s for _, s in res), 1),
            "fps_sum_of_rates": round(sum(n / s for n, s in res), 1),
            "slowest_fastest_part_fps": [round(min(n / s for n, s in res), 1),
                                         round(max(n / s for n, s in res), 1)]}


def segment_costs(path: str, parts: int, auto: bool = False) -> dict:
    """Decode + encode (1 thread each, the job's options) of each keyframe-aligned part alone,
    one after another on an otherwise idle node: milliseconds a frame along the input (what a
    ceiling measured on one part of it misses about the rest)."""
    ms = []
    with mp.get_context("spawn").Pool(1) as pool:
        for a, b in keyframe_spans(path, parts):
            n, s = pool.apply(_transcode_span, ((path, a, b, auto),))
            ms.append(round(1000 * s / max(1, n), 2))
    return {"parts": len(ms), "ms_per_frame": ms, "first_over_rest": round(
        ms[0] / (sum(ms[1:]) / max(1, len(ms) - 1)), 3) if len(ms) > 1 else None}


def transcode_ceiling(path: str, procs: int, frames: int, auto: bool = False) -> dict:
    """The CPU ceiling of a node whose cores both decode and encode: ``procs`` processes each
    transcoding ``frames`` frames (aggregate frames / slowest process)."""
    with mp.get_context("spawn").Pool(procs) as pool:
        res = pool.map(_transcode_worker, [(path, frames, auto)] * procs)
    total = sum(n for n, _ in res)
    return {"processes": procs, "frames": total, "x264_asm": "auto" if auto else "job's",
            "fps_aggregate": round(total / max(s for _, s in res), 1)}


def encode_ceiling(path: str, streams: int, threads: int, frames: int, auto: bool = False) -> dict:
    with mp.get_context("spawn").Pool(streams) as pool:
        t = time.perf_counter()
        res = pool.map(_encode_worker, [(path, frames, threads, 1, auto)] * streams)
        wall = time.perf_counter() - t
    total = sum(n for n, _ in res)
    slowest = max(s for _, s in res)
    return {"streams": streams, "x264_threads": threads, "frames": total,
            "x264_asm": "auto" if auto else "job's",
            "fps_aggregate": round(total / slowest, 1), "fps_per_stream": round(res[0][0] / slowest, 1),
            "wall_s": round(wall, 2)}


def decode_ceiling(path: str, procs: int, threads: int) -> dict:
    with mp.get_context("spawn").Pool(procs) as pool:
        res = pool.map(_decode_worker, [(path, threads)] * procs)
    total = sum(n for n, _ in res)
    return {"processes": procs, "threads": threads or "auto",
            "fps_aggregate": round(total / max(s for _, s in res), 1)}


def _timed_runs(r, feeds: dict, n: int = 12) -> float:
    """Median seconds of one call of runner ``r`` on ``feeds`` (after 3 warm-up calls)."""
    for _ in range(3):
        r.run(feeds)
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        r.run(feeds)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def model_ceilings(model_dir: Path) -> dict:
    import cupy as cp

    from ffray.models.gpu_loader import DeviceLoader, probe_feeds
    from ffray.models.manifest import MODELS
    from ffray.models.sessions import choose_providers
    from ffray.settings import sha256_file

    providers = choose_providers(None, device_id=0)
    names = ["det_10g", "inswapper_128", "gfpgan_1.4", "w600k_r50"]
    files = {n: model_dir / MODELS[n].file for n in names}
    data = {n: p.read_bytes() for n, p in files.items()}
    sha = {n: sha256_file(p) for n, p in files.items()}
    out = {}
    for prec in ("fp32", "fp16"):
        loader = DeviceLoader(data, sha, 0, providers, prec, cache=Path("/tmp/ffray-ceil-cache"))
        for n in names:
            for b in (1, 2, 4, 8, 16):
                if n == "det_10g" and b > 8:
                    continue
                r = loader.runner(n, flat_outputs=(n == "det_10g"), batch=b)
                feeds = {k: cp.asarray(v) for k, v in probe_feeds(r.session, r.batch).items()}
                ms = _timed_runs(r, feeds) * 1000
                out[f"{n}/{prec}/b{r.batch}"] = {"ms_per_call": round(ms, 3),
                                                 "ms_per_item": round(ms / r.batch, 3)}
                if r.batch != b:
                    break  # the batch edit was refused: larger batches would repeat batch 1
    return out


def worker_model_ceilings(model_dir: Path, seconds: float = 3.0) -> dict:
    """Each model as the GPU worker runs it (its default precision and batch,
    ``ffray.engine.build.GPU_BATCHES``): one thread on one session, and two threads on a session
    each (the worker's two stage threads): items/s and ms per item; and whether the two sessions
    give the same bits for the same batch."""
    import threading

    import cupy as cp

    from ffray.engine.build import GPU_BATCHES
    from ffray.models.gpu_loader import DeviceLoader, probe_feeds
    from ffray.models.manifest import MODELS
    from ffray.models.sessions import choose_providers
    from ffray.settings import sha256_file

    providers = choose_providers(None, device_id=0)
    batch = {"det_10g": GPU_BATCHES["det"], "inswapper_128": GPU_BATCHES["swap"],
             "gfpgan_1.4": GPU_BATCHES["enhance"]}
    files = {n: model_dir / MODELS[n].file for n in batch}
    data = {n: p.read_bytes() for n, p in files.items()}
    sha = {n: sha256_file(p) for n, p in files.items()}
    loader = DeviceLoader(data, sha, 0, providers, "auto", cache=Path("/tmp/ffray-ceil-cache"))
    out = {}
    for n, b in batch.items():
        r = loader.runner(n, flat_outputs=(n == "det_10g"), batch=b, sessions=2)
        feeds = {k: cp.asarray(v) for k, v in probe_feeds(r.session, r.batch).items()}
        res = {"batch": r.batch, "fp16": loader.notes[n]["fp16"]}
        outs, calls = {}, {}

        def loop(tag: str, stop: float) -> None:
            k = 0
            outs[tag] = [cp.asnumpy(o) for o in r.run(feeds)]  # also this thread's warm-up
            while time.perf_counter() < stop:
                r.run(feeds)
                k += 1
            calls[tag] = k

        for threads in (1, 2):
            stop = time.perf_counter() + seconds
            t0 = time.perf_counter()
            ths = [threading.Thread(target=loop, args=(f"{threads}-{i}", stop)) for i in range(threads)]
            for th in ths:
                th.start()
            for th in ths:
                th.join()
            wall = time.perf_counter() - t0
            items = sum(calls[f"{threads}-{i}"] for i in range(threads)) * r.batch
            res[f"threads{threads}_items_per_s"] = round(items / wall, 1)
            res[f"threads{threads}_ms_per_item"] = round(1000 * wall / max(1, items), 4)
        res["sessions_same_bits"] = all(np.array_equal(a, b_) for a, b_ in zip(outs["2-0"], outs["2-1"]))
        out[n] = res
        print(json.dumps({"worker_model": {n: res}}), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--streams", default="1,4,8,16")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--models")
    ap.add_argument("--worker-models", help="model dir: only the models as the GPU worker runs them "
                    "(default precision and batch; one thread vs two threads with a session each)")
    ap.add_argument("--transcode", default="16", help="process counts for the transcode ceiling")
    ap.add_argument("--x264-auto", action="store_true", help="also measure encode and transcode "
                    "with x264's own instruction-set choice (the job pins one: X264_ASM)")
    ap.add_argument("--segments", type=int, default=0, help="only this: the cost a frame of "
                    "each of N keyframe-aligned parts of the input, one at a time")
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.segments:
        print(json.dumps({"segments": segment_costs(a.input, a.segments)}))
        return
    res = {"decode": [decode_ceiling(a.input, 1, 0), decode_ceiling(a.input, 8, 1)], "encode": []}
    for t in [int(x) for x in a.threads.split(",")]:
        for n in [int(x) for x in a.streams.split(",")]:
            for auto in (False, True) if a.x264_auto else (False,):
                r = encode_ceiling(a.input, n, t, a.frames, auto)
                res["encode"].append(r)
                print(json.dumps(r), flush=True)
    res["transcode"] = []
    for n in [int(x) for x in a.transcode.split(",") if x]:
        for auto in (False, True) if a.x264_auto else (False,):
            r = transcode_ceiling(a.input, n, a.frames, auto)
            res["transcode"].append(r)
            print(json.dumps({"transcode": r}), flush=True)
            r = whole_transcode_ceiling(a.input, n, auto)
            res.setdefault("transcode_whole", []).append(r)
            print(json.dumps({"transcode_whole": r}), flush=True)
    if a.models:
        res["models"] = model_ceilings(Path(a.models))
    if a.worker_models:
        res["worker_models"] = worker_model_ceilings(Path(a.worker_models))
    text = json.dumps(res, indent=2)
    if a.out:
        Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
