"""The share of the aligned crop each paste-back mask keeps (alpha > 0.5), ours and the field's.

    python scripts/mask_coverage.py

insightface's is measured by running its own ``INSwapper.get(paste_back=True)`` (on a black frame,
with a contract model whose output is one flat colour, so the pasted frame is that colour times
its mask), then warping that mask into the crop. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffray.faces.align import FFHQ_512, insightface_template, similarity  # noqa: E402
from ffray.faces.masks import MaskSpec, box_mask, coverage, ellipse_mask, static_mask  # noqa: E402

S = 128


def insightface_coverage(angle: float, scale: float = 2.2) -> float:
    import onnx
    from insightface.model_zoo.inswapper import INSwapper

    from scripts.make_test_models import make_inswapper

    model = make_inswapper(False)
    model.ir_version = 9
    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "inswapper_128.onnx")
        onnx.save(model, path)
        sw = INSwapper(model_file=path)
    frame = np.zeros((720, 1280, 3), np.uint8)
    c, s = np.cos(angle), np.sin(angle)
    kps = ((insightface_template(112) - 56) @ np.array([[c, -s], [s, c]]).T * scale + [640, 360])
    target = SimpleNamespace(kps=kps.astype(np.float32))
    emb = np.random.default_rng(0).standard_normal(512).astype(np.float32)
    source = SimpleNamespace(normed_embedding=emb / np.linalg.norm(emb))
    out = sw.get(frame, target, source, paste_back=True)
    colour = sw.get(frame, target, source, paste_back=False)[0]
    ch = int(np.argmax(colour.reshape(-1, 3).mean(0)))
    mask = out[..., ch].astype(np.float32) / max(1.0, float(colour[..., ch].mean()))
    return coverage(cv2.warpAffine(mask, similarity(kps, insightface_template(S)), (S, S)))


def rows() -> list[tuple[str, float]]:
    pts = insightface_template(S)
    return [
        ("ffray default (box, blur 0.15), inswapper 128", coverage(static_mask(MaskSpec(), S, pts))),
        ("ffray default, GFPGAN 512", coverage(static_mask(MaskSpec(), 512, FFHQ_512 * 512))),
        ("box, blur 0.3 (FaceFusion's default)", coverage(box_mask(S, 0.3))),
        ("box + ellipse (inner face)", coverage(static_mask(MaskSpec(kinds=("box", "ellipse")), S, pts))),
        ("ellipse, blur 0.12 (ffray before)", coverage(ellipse_mask(S, pts, 0.12))),
        ("insightface paste-back, upright face", insightface_coverage(0.0)),
        ("insightface paste-back, face turned 17 degrees", insightface_coverage(0.3)),
    ]


def main() -> None:
    print("| mask | share of the crop kept (alpha > 0.5) |\n|---|---|")
    for name, value in rows():
        print(f"| {name} | {value:.1%} |")


if __name__ == "__main__":
    main()
