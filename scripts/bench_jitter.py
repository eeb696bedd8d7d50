"""Temporal stability, before and after tracking: landmark jitter and swapped-region flicker on a
pan/zoom over real faces (insightface's t1.jpg), with the offline pipeline (MTCNN + classic).

    python scripts/bench_jitter.py [--seconds 4] [--workdir DIR]

1. Landmark jitter: MTCNN's five points per frame, per track (faces followed by ffray's tracker),
   raw and smoothed; jitter = mean |second difference| in pixels (the pan is smooth, so a steady
   detector would give ~0).
2. Flicker: the whole job (`ffray swap` through the jobs API, local Ray) with `track=False` and
   with the defaults; flicker = mean |second temporal difference| of luma inside the faces'
   boxes, output minus input (the pan's own change; ~0 for a swapped face that moves as
   smoothly as the face it covers), over all frames and over the frames at chunk starts (chunks
   of ``--chunk-seconds``, 1 s by default: 3 boundaries). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffray.faces.track import CONTEXT_FRAMES, Smoothing, Tracker, jitter  # noqa: E402
from ffray.video import sample  # noqa: E402


def _luma(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="gray") for f in c.decode(video=0)]).astype(np.float32)


def landmark_jitter(frames: list[np.ndarray], fps: float) -> tuple[dict, list]:
    import onnxruntime as ort

    from ffray.faces.mtcnn import MTCNN

    det = MTCNN(lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]))
    tr = Tracker(Smoothing())
    raw: dict[int, list] = {}
    smooth: dict[int, list] = {}
    boxes, detections = [], []
    t = time.perf_counter()
    for i, img in enumerate(frames):
        faces = det.detect([img])[0]
        detections.append(faces)
        boxes.append([f.box for f in faces])
        for (tid, s), f in zip(tr.update(faces, i / fps), faces):
            raw.setdefault(tid, []).append(f.kps)
            smooth.setdefault(tid, []).append(s.kps)
    det_s = time.perf_counter() - t
    long = [k for k, v in raw.items() if len(v) >= 10]
    return {**boundary_jitter(detections, fps), "tracks": len(raw), "tracks_10_frames": len(long),
            "jitter_raw_px": round(float(np.mean([jitter(raw[k]) for k in long])), 3),
            "jitter_smoothed_px": round(float(np.mean([jitter(smooth[k]) for k in long])), 3),
            "detect_ms_per_frame": round(1000 * det_s / len(frames), 1)}, boxes


def _centre(f) -> np.ndarray:
    return (f.box[:2] + f.box[2:]) / 2


def _nearest(faces: list, f):
    """The face in ``faces`` whose box centre is nearest ``f``'s (None if there is none)."""
    return min(faces, key=lambda g: float(np.hypot(*(_centre(g) - _centre(f)))), default=None)


def boundary_jitter(detections: list, fps: float, chunk: int = 25,
                    context: int = CONTEXT_FRAMES) -> dict:
    """Landmark jitter at chunk starts when each chunk tracks on its own, with and without
    ``context`` frames before it: second differences of the smoothed points whose centre frame
    is a chunk's first frame, matched across the boundary by position."""
    out = {}
    for name, ctx in (("no_context", 0), ("context", context)):
        series: list[list] = [[] for _ in detections]  # per frame: smoothed faces used
        for s0 in range(0, len(detections), chunk):
            c = min(ctx, s0)
            tr = Tracker(Smoothing())
            for i in range(s0 - c, min(len(detections), s0 + chunk)):
                res = tr.update(detections[i], i / fps)
                if i >= s0:
                    series[i] = [f for _, f in res]
        vals = []
        for s0 in range(chunk, len(detections) - 1, chunk):
            for f in series[s0]:
                a, b = _nearest(series[s0 - 1], f), _nearest(series[s0 + 1], f)
                if a is not None and b is not None:
                    vals.append(jitter([a.kps, f.kps, b.kps]))
        out[f"jitter_at_chunk_starts_{name}_px"] = round(float(np.mean(vals)), 3) if vals else None
    return out


def flicker(video: np.ndarray, boxes: list, at: set | None = None) -> float:
    """Mean |second temporal difference| of luma in the face boxes (centred on frame i + 1 for
    d2[i]); ``at``: only those centre frames."""
    d2 = np.abs(video[2:] - 2 * video[1:-1] + video[:-2])
    vals = []
    for i in range(len(d2)):
        if at is not None and i + 1 not in at:
            continue
        for b in boxes[i + 1]:
            x0, y0, x1, y1 = (int(round(v)) for v in b)
            x0, y0 = max(0, x0), max(0, y0)
            region = d2[i, y0:y1, x0:x1]
            if region.size:
                vals.append(float(region.mean()))
    return float(np.mean(vals)) if vals else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--fps", type=float, default=25)
    ap.add_argument("--chunk-seconds", type=float, default=1.0)
    ap.add_argument("--workdir")
    a = ap.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="ffray-jitter-"))
    work.mkdir(parents=True, exist_ok=True)
    n = int(a.seconds * a.fps)
    frames = list(sample.pan_zoom_frames(sample.faces_image(), n, 640, 360))
    src = sample.write_video(work / "pan.mp4", iter(frames), fps=a.fps, gop=25, audio=False, crf=12)
    report, boxes = landmark_jitter(frames, a.fps)

    import cv2

    from ffray.cluster.jobs import SwapRequest, prepare_swap, run_job
    from ffray.processors import ProcessorSpec

    face = work / "source.jpg"
    cv2.imwrite(str(face), sample.astronaut_face())
    inp = _luma(src)
    base = flicker(inp, boxes)
    for name, track in (("untracked", False), ("tracked", True)):
        out = work / f"{name}.mp4"
        params = {"detector": "mtcnn", "swapper": "classic", "track": track}
        req = SwapRequest(input=str(src), output=str(out), overwrite=True, sources=[str(face)],
                          processor=ProcessorSpec(kind="faceswap", params=params), telemetry=False,
                          chunk_seconds=a.chunk_seconds)
        ledger = prepare_swap(req, work / "data")
        run_job(ledger)
        starts = [c.first_frame for c in ledger.load_plan()][1:]
        near = {s + d for s in starts for d in (-1, 0, 1)}
        outv = _luma(out)
        report[f"flicker_excess_{name}"] = round(flicker(outv, boxes) - base, 3)
        report[f"flicker_excess_at_chunk_starts_{name}"] = round(
            flicker(outv, boxes, near) - flicker(inp, boxes, near), 3)
        report["chunk_starts"] = starts
    report["flicker_input"] = round(base, 3)
    report["frames"], report["video"] = n, str(src)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
