"""Decoding a job's chunks in one process as the worker would: the CPU decoder (what each codec
process does by default) against NVDEC with frames kept on the GPU (``engine.sources``: PyAV's
``HWAccel(is_hw_owned=True)`` in the thread's current CUDA context, each NV12 frame unpacked
into a packed buffer by one kernel) and NVDEC downloaded to the host (the ``FFRAY_NVDEC`` switch).

    python scripts/bench_nvdec.py INPUT [--threads 16] [--modes cpu,nvdec-device,nvdec-host]

Chunks are planned as a face-swap job plans them (auto length, the face tracks' context frames);
``threads`` threads decode a share of the chunks each, into a ring of slots per thread. Each mode
prints one JSON line: frames/s, the process's CPU time per frame (core-ms), and for the NVDEC
modes whether every frame of the first chunk equals the CPU decoder's. (The sixth pass's figures
in docs/benchmarks.md were measured with this script's own copy of the same steps, before they
moved into ``engine.sources``; FFmpeg's ``primary_ctx`` there failed with ENOTSUP once CuPy had
made the primary context active with other flags, hence the current context.)
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from ffray.engine.colour import Matrix  # noqa: E402
from ffray.engine.frames import layout_for, unpack  # noqa: E402
from ffray.engine.sources import cpu_frames, nvdec_frames  # noqa: E402
from ffray.faces.track import CONTEXT_FRAMES  # noqa: E402
from ffray.video.decode import DecodeReport, decode_payload, iter_payloads  # noqa: E402
from ffray.video.plan import SNAP_TO_KEYFRAMES, auto_chunk_seconds, plan_chunks  # noqa: E402
from ffray.video.probe import probe  # noqa: E402


class Ring:
    """A codec process's ring as the sources see it: slots to take (in turn), views to fill."""

    def __init__(self, nbytes: int, slots: int = 4):
        self.views = [np.zeros(nbytes, np.uint8) for _ in range(slots)]
        self._next = itertools.cycle(range(slots))
        self.pinned = False

    def take_slot(self) -> int:
        return next(self._next)


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def frames_of(mode: str, payload, lay, ring: Ring, ops):
    """The chunk's frames as host arrays (views valid until the next frame) or device buffers."""
    if mode == "cpu":
        for _, f in cpu_frames(payload, ring, lay, DecodeReport()):
            yield f.host
    elif mode == "nvdec-host":
        for f in decode_payload(payload, threads=1, hw_device=0):
            yield unpack(f, lay, out=ring.views[0])
    else:
        for _, f in nvdec_frames(payload, ring, ops, DecodeReport(), 0):
            yield f.device if f.device is not None else f.host


def run(mode: str, payloads, lay, threads: int, ops) -> dict:
    counts, errors = [0] * threads, []

    def loop(i: int) -> None:
        ring = Ring(lay.nbytes)
        try:
            for p in payloads[i::threads]:  # every thread its share of the chunks
                for _ in frames_of(mode, p, lay, ring, ops):
                    counts[i] += 1
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
        ref = [x.copy() for x in frames_of("cpu", payloads[0], lay, Ring(lay.nbytes), ops)]
        got = [ops.cp.asnumpy(x) if not isinstance(x, np.ndarray) else x.copy()
               for x in frames_of(mode, payloads[0], lay, Ring(lay.nbytes), ops)]
        res["same_frames"] = len(got) == len(ref) and all(np.array_equal(a, b) for a, b in zip(got, ref))
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
    chunks = plan_chunks(index, v.time_base, auto_chunk_seconds(secs), context=CONTEXT_FRAMES,
                         snap=SNAP_TO_KEYFRAMES)
    payloads = list(iter_payloads(a.input, index, chunks))
    lay = layout_for(payloads[0].pix_fmt or "yuv420p", v.width, v.height)
    ops = None
    if "nvdec-device" in a.modes.split(","):
        from ffray.engine.ops_gpu import GpuOps

        ops = GpuOps(lay, Matrix.of(v.color, v.height, lay.pix_fmt), 0)
    for r in range(a.repeat):
        for mode in [m for m in a.modes.split(",") if m]:
            res = run(mode, payloads, lay, a.threads, ops)
            res.update(run=r, chunks=len(payloads),
                       decoded_frames_per_output_frame=round(
                           sum(c.last_packet - c.key_packet + 1 for c in chunks)
                           / sum(c.frames for c in chunks), 3))
            print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
