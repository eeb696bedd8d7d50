"""Benchmark inputs for the cost-matched contract models: a pan/zoom over real faces (t1.jpg, so
the encoder sees real image content) with N red face markers, each of which the cost-matched
detector (scripts/make_test_models.py --cost-matched) finds exactly once per frame; plus a source
image with one marker.

    python scripts/bench_media.py OUT_DIR [--faces 6] [--seconds 120] [--width 1920 --height 1080]
        [--fps 30] [--background IMG]

Writes OUT_DIR/faces{N}_{H}p.mp4 (H.264 + AAC) and OUT_DIR/source.png; prints their paths.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffray.video import sample  # noqa: E402

MARKER = 190  # px at 1080p: ~two stride-32 cells at the detector's 640 input


def marker_positions(n: int, width: int, height: int, t: float) -> list[tuple[int, int]]:
    """Centres of ``n`` markers (1: the middle; 6: a 3 x 2 grid), drifting slowly."""
    if n == 1:
        base = [(width / 2, height / 2)]
    else:
        cols = 3 if n > 2 else n
        rows = -(-n // cols)
        base = [((c + 0.5) * width / cols, (r + 0.5) * height / rows)
                for r in range(rows) for c in range(cols)][:n]
    dx = 0.06 * width * np.sin(2 * np.pi * t)
    dy = 0.05 * height * np.cos(2 * np.pi * t)
    return [(int(x + dx), int(y + dy)) for x, y in base]


def frames(background: np.ndarray, n: int, count: int, width: int, height: int):
    s = int(MARKER * height / 1080) // 2
    for i, f in enumerate(sample.pan_zoom_frames(background, count, width, height)):
        for cx, cy in marker_positions(n, width, height, i / max(1, count - 1)):
            f[max(0, cy - s):cy + s, max(0, cx - s):cx + s] = (0, 0, 255)
        yield f


def source_image(path: Path) -> Path:
    img = np.full((640, 640, 3), 40, np.uint8)
    img[288:352, 288:352] = (0, 0, 255)  # aligned to stride-32 cells: exactly one detection
    cv2.imwrite(str(path), img)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--faces", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--fps", type=float, default=30)
    ap.add_argument("--background", help="background photo (default insightface's t1.jpg)")
    a = ap.parse_args()
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bg = cv2.imread(a.background) if a.background else sample.faces_image()
    video = out / f"faces{a.faces}_{a.height}p.mp4"
    count = int(round(a.seconds * a.fps))
    sample.write_video(video, frames(bg, a.faces, count, a.width, a.height), fps=a.fps, gop=60)
    print(video)
    print(source_image(out / "source.png"))


if __name__ == "__main__":
    main()
