"""Decoding a job's chunks in one process: the CPU decoder (what each codec process does now)
against NVDEC with frames kept on the GPU (PyAV's ``HWAccel(is_hw_owned=True)``, the device's
primary CUDA context, planes handed to CuPy by DLPack), the measurement behind the plan to decode
in the worker's own CUDA context (docs/benchmarks.md, sixth pass).

    python scripts/bench_nvdec.py INPUT [--threads 16] [--modes cpu,nvdec-device,nvdec-host]

Chunks are planned as a face-swap job plans them (auto length, the face tracks' context frames);
``threads`` threads decode a share of the chunks each. Each mode prints one JSON line: frames/s, the
process's CPU time per frame (core-ms), and for the NVDEC modes whether every frame of the first
chunk equals the CPU decoder's packed planes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from ffray.engine.frames import layout_for, planes, unpack  # noqa: E402
from ffray.faces.track import CONTEXT_FRAMES  # noqa: E402
from ffray.video.decode import decode_payload, iter_payloads, padded_packet  # noqa: E402
from ffray.video.plan import auto_chunk_seconds, plan_chunks  # noqa: E402
from ffray.video.probe import probe  # noqa: E402


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def decode_cpu(payload, lay, keep):
    out = np.empty(lay.nbytes, np.uint8)
    n = 0
    for f in decode_payload(payload, threads=1):
        unpack(f, lay, out=out)
        if keep is not None:
            keep.append(out.copy())
        n += 1
    return n


class _Plane:
    """A PyAV CUDA plane for ``cupy.from_dlpack``: PyAV exports without a stream argument only
    (the caller synchronises first), CuPy passes its current stream."""

    def __init__(self, plane):
        self.plane = plane

    def __dlpack_device__(self):
        return self.plane.__dlpack_device__()

    def __dlpack__(self, stream=None, **_):
        return self.plane.__dlpack__()


def decode_nvdec_device(payload, lay, keep, cp, stream):
    """NVDEC into CUDA frames; each NV12 frame de-interleaved into a packed yuv420p CuPy buffer
    on ``stream`` (the frame's memory goes back to FFmpeg's pool at once)."""
    import av
    from av.codec.hwaccel import HWAccel

    # FFmpeg refuses the primary context when it is already active (CuPy made it) with other
    # flags than its own (blocking sync): "current" uses the thread's current context instead
    opts = {"primary_ctx": "0", "current_ctx": "1"} if CTX == "current" else None
    hw = HWAccel("cuda", device="0", allow_software_fallback=True, is_hw_owned=True, options=opts)
    ctx = av.CodecContext.create(payload.codec, "r", hwaccel=hw)
    if payload.extradata:
        ctx.extradata = payload.extradata
    ctx.width, ctx.height = payload.width, payload.height
    lo, hi = payload.frame_pts[0], payload.frame_pts[-1]
    n = 0

    def take(frames):
        nonlocal n
        for f in frames:
            if f.pts is None or f.pts < lo or f.pts > hi:
                continue
            # FFmpeg copied the picture on the legacy stream of the same (primary) context
            cp.cuda.Stream.null.synchronize()
            y_src = cp.from_dlpack(_Plane(f.planes[0]))
            uv_src = cp.from_dlpack(_Plane(f.planes[1]))
            with stream:
                buf = cp.empty(lay.nbytes, cp.uint8)
                y, u, v = planes(buf, lay)
                y[...] = y_src[:lay.height, :lay.width]
                uv = uv_src.reshape(uv_src.shape[0], -1)[:lay.ch, :2 * lay.cw]
                u[...] = uv[:, 0::2]
                v[...] = uv[:, 1::2]
                stream.synchronize()
            if keep is not None:
                keep.append(cp.asnumpy(buf))
            n += 1

    for data, pts, dts in zip(payload.packets, payload.pts, payload.dts):
        pkt = padded_packet(data)
        pkt.pts, pkt.time_base = pts, payload.time_base
        if dts is not None:
            pkt.dts = dts
        take(ctx.decode(pkt))
    take(ctx.decode(None))
    return n


def decode_nvdec_host(payload, lay, keep):
    """The existing switch (FFRAY_NVDEC): NVDEC, frames downloaded as NV12, unpacked on the host."""
    out = np.empty(lay.nbytes, np.uint8)
    n = 0
    for f in decode_payload(payload, threads=1, hw_device=0):
        unpack(f, lay, out=out)
        if keep is not None:
            keep.append(out.copy())
        n += 1
    return n


CTX = os.environ.get("NVDEC_CTX", "current")  # current | flags (primary context set to FFmpeg's)


def _primary_flags() -> None:
    """The primary context's flags set to what FFmpeg asks for (blocking sync), before CuPy
    creates it."""
    import ctypes

    cu = ctypes.CDLL("libcuda.so.1")
    cu.cuInit(0)
    dev = ctypes.c_int()
    cu.cuDeviceGet(ctypes.byref(dev), 0)
    print(json.dumps({"cuDevicePrimaryCtxSetFlags": cu.cuDevicePrimaryCtxSetFlags(dev, 4)}))


def run(mode: str, payloads, lay, threads: int) -> dict:
    cp = None
    if mode == "nvdec-device":
        if CTX == "flags":
            _primary_flags()
        import cupy as cp
    counts, errors = [0] * threads, []

    def loop(i: int) -> None:
        stream = cp.cuda.Stream(non_blocking=True) if cp is not None else None
        try:
            for p in payloads[i::threads]:  # every thread its share of the chunks
                if mode == "cpu":
                    counts[i] += decode_cpu(p, lay, None)
                elif mode == "nvdec-host":
                    counts[i] += decode_nvdec_host(p, lay, None)
                else:
                    counts[i] += decode_nvdec_device(p, lay, None, cp, stream)
        except BaseException:  # noqa: BLE001
            import traceback

            errors.append(traceback.format_exc(limit=4)[-600:])

    c0, t0 = _cpu_s(), time.perf_counter()
    ths = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    frames = sum(counts)
    res = {"mode": mode, "threads": threads, "frames": frames, "fps": round(frames / wall, 1),
           "core_ms_per_frame": round(1000 * cpu / max(1, frames), 2), "errors": errors[:3]}
    if mode != "cpu" and not errors:  # the first chunk, frame by frame, against the CPU decoder
        ref: list = []
        decode_cpu(payloads[0], lay, ref)
        got: list = []
        if mode == "nvdec-host":
            decode_nvdec_host(payloads[0], lay, got)
        else:
            decode_nvdec_device(payloads[0], lay, got, cp, cp.cuda.Stream(non_blocking=True))
        res["same_frames"] = len(got) == len(ref) and all(np.array_equal(a, b) for a, b in zip(got, ref))
        res["max_diff"] = int(max(int(np.abs(a.astype(np.int16) - b).max()) for a, b in zip(got, ref))) \
            if got and len(got) == len(ref) else None
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input")
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--modes", default="cpu,nvdec-device,nvdec-host")
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    info, index = probe(a.input)
    v = info.video
    secs = float(v.duration_s or 0) or len(index.frame_pts) / float(v.avg_rate or 30)
    chunks = plan_chunks(index, v.time_base, auto_chunk_seconds(secs), context=CONTEXT_FRAMES)
    payloads = list(iter_payloads(a.input, index, chunks))
    lay = layout_for(payloads[0].pix_fmt or "yuv420p", v.width, v.height)
    for r in range(a.repeat):
        for mode in [m for m in a.modes.split(",") if m]:
            res = run(mode, payloads, lay, a.threads)
            res.update(run=r, chunks=len(payloads),
                       decoded_frames_per_output_frame=round(
                           sum(c.last_packet - c.key_packet + 1 for c in chunks)
                           / sum(c.frames for c in chunks), 3))
            print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
