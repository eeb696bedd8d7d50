"""GPU machine check of the worker-side NVDEC source (``engine.sources.nvdec_frames``): a job's
chunks of a generated 1080p clip decoded by NVDEC into device buffers must equal the CPU
decoder's frames unpacked into ring slots, slot by slot. Prints one JSON line.

    python scripts/check_nvdec.py [--seconds 3] [--chunk-seconds 1]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


class FakeRing:
    """A codec process's ring as the sources see it: slots to take, views to fill."""

    def __init__(self, nbytes: int, slots: int = 4):
        self.views = [np.zeros(nbytes, np.uint8) for _ in range(slots)]
        self._next = itertools.cycle(range(slots))
        self.pinned = False

    def take_slot(self) -> int:
        return next(self._next)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--chunk-seconds", type=float, default=1.0)
    a = ap.parse_args()
    import cupy as cp

    from ffray.engine.colour import Matrix
    from ffray.engine.frames import layout_for
    from ffray.engine.ops_gpu import GpuOps
    from ffray.engine.sources import cpu_frames, nvdec_frames, usable
    from ffray.faces.track import CONTEXT_FRAMES
    from ffray.video import sample
    from ffray.video.decode import DecodeReport, iter_payloads
    from ffray.video.plan import plan_chunks
    from ffray.video.probe import probe

    d = Path(tempfile.mkdtemp(prefix="ffray-nvdec-"))
    n = int(a.seconds * 30)
    path = sample.write_video(d / "clip.mp4", sample.pan_zoom_frames(sample.faces_image(), n, 1920,
                                                                     1080), fps=30, gop=15)
    info, index = probe(path)
    v = info.video
    chunks = plan_chunks(index, v.time_base, a.chunk_seconds, context=CONTEXT_FRAMES)
    payloads = list(iter_payloads(str(path), index, chunks))
    lay = layout_for(v.pix_fmt, v.width, v.height)
    ops = GpuOps(lay, Matrix.of(v.color, v.height, lay.pix_fmt), 0)
    res = {"chunks": len(payloads), "source": usable("nvdec", payloads[0], lay, ops)}
    frames = same = on_device = 0
    t = time.perf_counter()
    for p in payloads:
        ring_cpu, ring_gpu = FakeRing(lay.nbytes), FakeRing(lay.nbytes)
        r = DecodeReport()
        for (pc, sc, fc), (pg, sg, fg) in zip(cpu_frames(p, ring_cpu, lay, DecodeReport()),
                                              nvdec_frames(p, ring_gpu, ops, r, 0)):
            frames += 1
            if fg.device is not None:
                on_device += 1
                got = cp.asnumpy(fg.device)
            else:
                got = fg.host
            same += int(pc == pg and np.array_equal(got, fc.host))
        res["hardware"] = r.hardware
    res.update(frames=frames, same=same, on_device=on_device,
               seconds=round(time.perf_counter() - t, 2))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
