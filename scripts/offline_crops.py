"""Before/after crops of the offline swap (docs/img/offline-before.png, offline-after.png).

Frames of the demo's clip (a pan/zoom over t1.jpg at 960x540) swapped with the astronaut by the
face-swap processor's own stages (host backend): ``--classic-warp 5point`` (before) and ``dense``
(after); each face cropped around its box: per frame a row of the target's own faces, then a row
of the swapped ones. Saved as 256-colour PNGs (Pillow's quantizer, dithered) to stay small.

    python scripts/offline_crops.py [--out docs/img] [--frames 0,100] [--side 88]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffray.engine.api import BatchInfo, WorkerContext  # noqa: E402
from ffray.faces.pipeline import FaceSwap  # noqa: E402
from ffray.video.sample import astronaut_face, faces_image, pan_zoom_frames  # noqa: E402


def demo_frames(numbers: list[int], count: int = 200) -> list[np.ndarray]:
    """Frames ``numbers`` of the demo's 8 s clip (same pan/zoom, not re-encoded)."""
    frames = list(pan_zoom_frames(faces_image(), count, 960, 540))
    return [frames[i] for i in numbers]


def swapped(frames: list[np.ndarray], warp: str) -> list[np.ndarray]:
    src = cv2.imencode(".png", astronaut_face())[1].tobytes()
    proc = FaceSwap(WorkerContext(sources=(src,)), detector="mtcnn", swapper="classic", classic_warp=warp,
                    track=False)
    return proc.process(frames, BatchInfo(0, tuple(range(len(frames))), tuple(range(len(frames)))))


def face_tiles(frame: np.ndarray, boxes: list[np.ndarray], side: int) -> list[np.ndarray]:
    tiles = []
    for b in boxes:
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        r = max(b[2] - b[0], b[3] - b[1]) * 0.75
        m = np.array([[side / (2 * r), 0, side / 2 - cx * side / (2 * r)],
                      [0, side / (2 * r), side / 2 - cy * side / (2 * r)]], np.float32)
        tiles.append(cv2.warpAffine(frame, m, (side, side), flags=cv2.INTER_AREA,
                                    borderMode=cv2.BORDER_REPLICATE))
    return tiles


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/img")
    ap.add_argument("--frames", default="0,100")
    ap.add_argument("--side", type=int, default=88)
    a = ap.parse_args()
    from ffray.faces.mtcnn import MTCNN
    from ffray.models.sessions import make_session

    frames = demo_frames([int(x) for x in a.frames.split(",")])
    mt = MTCNN(lambda p: make_session(p, ["CPUExecutionProvider"]))
    boxes = [sorted((f.box for f in faces), key=lambda b: b[0]) for faces in mt.detect(frames)]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, warp in (("offline-before.png", "5point"), ("offline-after.png", "dense")):
        done = swapped(frames, warp)
        rows = []
        for frame, res, bs in zip(frames, done, boxes):
            rows.append(np.hstack(face_tiles(frame, bs, a.side)))
            rows.append(np.hstack(face_tiles(res, bs, a.side)))
        width = max(r.shape[1] for r in rows)
        grid = np.vstack([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows])
        Image.fromarray(grid[:, :, ::-1]).quantize(256).save(out / name, optimize=True)
        print(f"{out / name}: {grid.shape[1]}x{grid.shape[0]}, {(out / name).stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
