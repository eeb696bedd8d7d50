"""The codec processes alone: what the worker's decode -> ring -> encode path costs per frame,
without the worker's stages, the GPU or Ray, against a plain transcode of the same chunks.

    python scripts/bench_codec.py INPUT [--slots 16] [--modes pass,clean,dirty,transcode]
        [--chunk-seconds 4]

Modes: ``pass``: passthrough (identity: decoded frames straight to the encoder in the codec
process); ``clean``: every frame goes through the ring and back to the worker, which returns it
unchanged (encoded from the decoded frame); ``dirty``: the same, but each frame is marked changed,
so the encoder takes it from its ring slot (the face-swap path: every frame of a 1-face video);
``transcode``: ``slots`` processes each decoding and encoding whole chunks (bench_ceilings'
transcode), nothing shared. Each mode runs every chunk of the input once on ``slots`` slots
(a slot takes the next chunk when it finishes one) and prints one JSON line: frames/s and the
CPU time of the codec processes per frame (core-ms), measured from their /proc stats.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402

from ffray.engine.budget import plan_budget  # noqa: E402
from ffray.engine.codec_child import ChunkJob  # noqa: E402
from ffray.engine.codec_pool import CodecPool, ring_slots  # noqa: E402
from ffray.engine.frames import layout_for  # noqa: E402
from ffray.video.decode import iter_payloads  # noqa: E402
from ffray.video.encode import EncodeSettings  # noqa: E402
from ffray.video.plan import plan_chunks  # noqa: E402
from ffray.video.probe import probe  # noqa: E402

WINDOW = plan_budget(1, gpu=True).window  # frames per chunk in flight, as in the worker


def _cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _transcode_chunk(payload, settings: EncodeSettings, pix_fmt: str, rate) -> int:
    from ffray.engine.frames import Frame
    from ffray.video.decode import decode_payload
    from ffray.video.encode import ChunkEncoder

    p = payload
    enc = ChunkEncoder(settings, p.width, p.height, p.time_base, rate, p.color, pix_fmt,
                       layout=layout_for(pix_fmt, p.width, p.height), threads=1)
    for f in decode_payload(p, threads=1):
        enc.write_frame(Frame(decoded=f), f.pts)
    enc.finish()
    return enc.frames


def _warm() -> None:
    """Pool initializer: the imports a codec process has done before its first chunk, so that
    their CPU time is not counted as transcoding (~0.35 s a process)."""
    from ffray.video.decode import decode_payload  # noqa: F401
    from ffray.video.encode import ChunkEncoder  # noqa: F401


def run_transcode(payloads: list, slots: int, settings, pix_fmt: str, rate) -> dict:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Pool(slots, initializer=_warm) as pool:
        pool.map(time.sleep, [0.2] * slots)  # every process started and warm
        pids = [p.pid for p in pool._pool]  # noqa: SLF001 - CPU time of the pool's processes
        c0 = _cpu_s(pids)
        t = time.perf_counter()
        frames = sum(pool.starmap(_transcode_chunk, [(p, settings, pix_fmt, rate) for p in payloads]))
        wall = time.perf_counter() - t
        cpu = _cpu_s(pids) - c0
    return {"frames": frames, "wall_s": wall, "cpu_s": cpu}


def run_pool(payloads: list, slots: int, mode: str, settings, pix_fmt: str, rate) -> dict:
    p0 = payloads[0]
    lay = layout_for(pix_fmt, p0.width, p0.height)
    pool = CodecPool(lay, slots, ring_slots(lay, WINDOW) if mode != "pass" else 0)
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for p in payloads:
        todo.put(p)
    frames = [0] * slots
    errors: list[BaseException] = []

    def body(proc) -> None:
        q: list = []
        for seq, slot, _pts in proc.frames():
            q.append((seq, slot))
            if len(q) >= WINDOW // 2:  # the worker's stages hold some frames in flight
                s, r = q.pop(0)
                proc.encode(s, r, mode == "dirty")
        for s, r in q:
            proc.encode(s, r, mode == "dirty")

    def slot_loop(i: int) -> None:
        try:
            while True:
                try:
                    p = todo.get_nowait()
                except queue.Empty:
                    return
                job = ChunkJob(payload=p, encode=settings, rate=rate, pix_fmt=pix_fmt,
                               encoder_threads=1, decoder_threads=1, passthrough=mode == "pass")
                _, st = pool.run(i, job, None if mode == "pass" else body)
                frames[i] += int(st["frames"])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    for i in range(slots):  # started and ready before the clock starts
        pool.get(i).wait_ready()
    pids = pool.pids()
    c0 = _cpu_s(pids)
    t = time.perf_counter()
    threads = [threading.Thread(target=slot_loop, args=(i,)) for i in range(slots)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    cpu = _cpu_s(pids) - c0
    me = psutil.Process().cpu_times()
    pool.close()
    if errors:
        raise errors[0]
    return {"frames": sum(frames), "wall_s": wall, "cpu_s": cpu, "driver_cpu_s": me.user + me.system}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input")
    ap.add_argument("--slots", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--modes", default="transcode,pass,clean,dirty")
    ap.add_argument("--chunk-seconds", type=float, default=4.0)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each mode (alternated)")
    a = ap.parse_args()
    info, index = probe(a.input)
    v = info.video
    chunks = plan_chunks(index, v.time_base, a.chunk_seconds)
    payloads = list(iter_payloads(a.input, index, chunks))
    settings = EncodeSettings()
    rate = v.avg_rate or Fraction(30)
    pix_fmt = payloads[0].pix_fmt or "yuv420p"
    for r in range(a.repeat):
        for mode in [m for m in a.modes.split(",") if m]:
            if mode == "transcode":
                res = run_transcode(payloads, a.slots, settings, pix_fmt, rate)
            else:
                res = run_pool(payloads, a.slots, mode, settings, pix_fmt, rate)
            res.update(mode=mode, run=r, slots=a.slots, chunks=len(payloads),
                       fps=round(res["frames"] / res["wall_s"], 1),
                       core_ms_per_frame=round(1000 * res["cpu_s"] / max(1, res["frames"]), 2))
            print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
