"""The detector stage alone on the GPU, taken apart: where a batch's time goes, and frames/s with
several stage threads, for the two ways of decoding SCRFD's outputs (all anchors copied to the host
and thresholded in NumPy, as before; or thresholded and gathered on the device, only candidates
copied back: ``ffray.engine.anchors.hits_cp``). Both must find the same faces.

    python scripts/bench_detect.py --input faces1_1080p.mp4 --models CM_DIR [--batch 8] [--out F]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import av
import numpy as np


def _frames(path: str, n: int):
    from ffray.engine.frames import Frame

    out = []
    with av.open(path) as c:
        s = c.streams.video[0]
        for f in c.decode(s):
            out.append(Frame(decoded=f))
            if len(out) >= n:
                break
        return out, s.codec_context.pix_fmt, s.codec_context.width, s.codec_context.height


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--out")
    a = ap.parse_args()

    from ffray.engine.colour import Matrix
    from ffray.engine.frames import layout_for
    from ffray.engine.ops_cpu import host_anchor_hits
    from ffray.engine.ops_gpu import GpuOps
    from ffray.faces import scrfd
    from ffray.models.gpu_loader import DeviceLoader
    from ffray.models.manifest import MODELS
    from ffray.models.sessions import choose_providers
    from ffray.settings import sha256_file
    from ffray.video.probe import Color

    frames, pix, w, h = _frames(a.input, a.frames)
    ops = GpuOps(layout_for(pix, w, h), Matrix.of(Color(1, 1, 1, 1), h), 0)
    ops.upload(frames)
    p = Path(a.models) / MODELS["det_10g"].file
    loader = DeviceLoader({"det_10g": p.read_bytes()}, {"det_10g": sha256_file(p)}, 0,
                          choose_providers(None, device_id=0), cache=Path("/tmp/ffray-det-cache"))
    det = scrfd.SCRFD(loader.runner("det_10g", flat_outputs=True, batch=a.batch))
    ih, iw = det.input_size[1], det.input_size[0]
    groups = [frames[i:i + a.batch] for i in range(0, len(frames) - a.batch + 1, a.batch)]

    def old_hits(*args):  # every anchor's outputs to the host, thresholded there
        sc, bb, kk = (ops.host_many(g) for g in args[:3])
        return host_anchor_hits(sc, bb, kk, *args[3:])

    def detect(g, hits):
        blob, backs = ops.det_blob(g, det.input_size)
        return det._decode(hits, det.runner.run({det.input_name: blob}), backs, det.threshold)

    res: dict = {"batch": det.runner.batch, "frames": len(groups) * a.batch}
    same = all(
        [[(f.box.tobytes(), f.kps.tobytes(), f.score) for f in fs] for fs in detect(g, old_hits)] ==
        [[(f.box.tobytes(), f.kps.tobytes(), f.score) for f in fs] for fs in detect(g, ops.anchor_hits)]
        for g in groups)
    res["same_faces"] = bool(same)
    res["faces_per_frame"] = float(np.mean([len(fs) for g in groups for fs in detect(g, ops.anchor_hits)]))

    # one thread: the phases of a batch
    ph = {"blob_and_run": [], "decode_host": [], "decode_device": []}
    for _ in range(3):
        for g in groups:
            t0 = time.perf_counter()
            blob, backs = ops.det_blob(g, det.input_size)
            outs = det.runner.run({det.input_name: blob})
            t1 = time.perf_counter()
            named = dict(zip(det.out_names, outs))
            parts = [[named[n[j]] for n in scrfd.STRIDES.values()] for j in range(3)]
            t2 = time.perf_counter()
            old_hits(*parts, (ih, iw), list(scrfd.STRIDES), scrfd.ANCHORS, det.threshold)
            t3 = time.perf_counter()
            ops.anchor_hits(*parts, (ih, iw), list(scrfd.STRIDES), scrfd.ANCHORS, det.threshold)
            t4 = time.perf_counter()
            ph["blob_and_run"].append(t1 - t0)
            ph["decode_host"].append(t3 - t2)
            ph["decode_device"].append(t4 - t3)
    res["ms_per_batch_1thread"] = {k: round(float(np.median(v)) * 1000, 3) for k, v in ph.items()}

    def throughput(threads: int, hits) -> float:
        stop = time.perf_counter() + 3.0
        counts = [0] * threads

        def loop(k: int) -> None:
            i = k
            while time.perf_counter() < stop:
                detect(groups[i % len(groups)], hits)
                counts[k] += a.batch
                i += threads

        ts = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
        t = time.perf_counter()
        for x in ts:
            x.start()
        for x in ts:
            x.join()
        return round(sum(counts) / (time.perf_counter() - t), 1)

    for n in (1, 2, 4):
        res[f"fps_{n}threads"] = {"host": throughput(n, old_hits), "device": throughput(n, ops.anchor_hits)}
    print(json.dumps(res, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
