"""Cost of the offline swap per face on the host: --classic-warp 5point vs dense.

The face-swap processor's own stages (host backend, one thread each) on frames of the demo's clip
(960x540 pan/zoom over t1.jpg's six faces), astronaut as the source: the swap and paste stages'
seconds per swapped face (detection is the same for both and reported apart), the best of
``--runs`` runs (the machine may be shared). Then the dense render's parts on one face crop,
repeated, in thread CPU time.

    python scripts/bench_offline_swap.py [--frames 40] [--runs 3] [--repeat 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffray.engine.api import BatchInfo, WorkerContext  # noqa: E402
from ffray.faces.pipeline import FaceSwap  # noqa: E402
from ffray.video.sample import astronaut_face, faces_image, pan_zoom_frames  # noqa: E402


def stage_costs(frames: list[np.ndarray], warp: str, batch: int = 8) -> dict[str, float]:
    src = cv2.imencode(".png", astronaut_face())[1].tobytes()
    proc = FaceSwap(WorkerContext(sources=(src,)), detector="mtcnn", swapper="classic",
                    classic_warp=warp, track=False)
    proc.process(frames[:1], BatchInfo(0, (0,), (0,)))  # warm-up
    proc.stats()
    for i in range(0, len(frames), batch):
        part = frames[i:i + batch]
        idx = tuple(range(i, i + len(part)))
        proc.process(part, BatchInfo(0, idx, idx))
    s = proc.stats()
    n = s["faces_swapped"]
    return {"faces": n, "frames": s["frames"], "swap_ms": 1000 * s["swap_s"] / n,
            "paste_ms": 1000 * s["paste_s"] / n, "detect_ms_per_frame": 1000 * s["detect_s"] / s["frames"]}


def render_parts(repeat: int) -> dict[str, float]:
    from ffray.faces import dense as D
    from ffray.faces.align import crop
    from ffray.faces.landmarks import EYES, SIZE, Landmarks68
    from ffray.faces.mtcnn import MTCNN
    from ffray.models.sessions import make_session

    mt = MTCNN(lambda p: make_session(p, ["CPUExecutionProvider"]))
    lm = Landmarks68()
    src = astronaut_face()
    ds = D.DenseSwapper(src, mt.detect([src])[0][0], lm)
    img = faces_image()
    f = mt.detect([img])[0][0]
    tc = crop(img, ds.matrix(f), SIZE)
    from ffray.faces.blend import BlendOptions
    from ffray.faces.classic import ClassicSwapper

    cs = ClassicSwapper(src, mt.detect([src])[0][0], BlendOptions())
    t = {k: 0.0 for k in ("5-point render (all of it)", "landmarks", "mesh maps + remap",
                          "region + feather", "colour transfer", "poisson (--blend poisson)")}
    for _ in range(repeat):
        tc0 = time.thread_time()
        cs.render(tc)
        t0 = time.thread_time()
        pts = lm.predict([tc])[0]
        t1 = time.thread_time()
        mesh = D.inner_mesh(pts)
        mx, my, cov = D.mesh_maps(ds.mesh, mesh, ds.tri, SIZE)
        w = cv2.remap(ds.source, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        t2 = time.thread_time()
        region = D.face_region(mesh, SIZE) & cov
        D.feathered(region)
        t3 = time.thread_time()
        eyes = np.linalg.norm(pts[EYES][:6].mean(0) - pts[EYES][6:].mean(0))
        D.local_colour(w, tc, region, D.COLOUR_SIGMA * eyes)
        t4 = time.thread_time()
        D.seamless(w, tc, region)
        t5 = time.thread_time()
        for k, d in zip(t, (t0 - tc0, t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            t[k] += d
    return {k: 1000 * v / repeat for k, v in t.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=200)
    a = ap.parse_args()
    frames = list(pan_zoom_frames(faces_image(), a.frames, 960, 540))
    print("| warp | faces | swap ms/face | paste ms/face | swap + paste ms/face | detect ms/frame |")
    print("|---|---|---|---|---|---|")
    for warp in ("5point", "dense"):
        runs = [stage_costs(frames, warp) for _ in range(a.runs)]
        c = {k: min(r[k] for r in runs) for k in runs[0]}
        print(f"| {warp} | {c['faces']:.0f} | {c['swap_ms']:.2f} | {c['paste_ms']:.2f} | "
              f"{c['swap_ms'] + c['paste_ms']:.2f} | {c['detect_ms_per_frame']:.1f} |")
    print("\ndense render parts, one 256 crop (ms):")
    for k, v in render_parts(a.repeat).items():
        print(f"- {k}: {v:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
