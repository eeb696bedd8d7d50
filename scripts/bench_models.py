"""Per-model latency of the face models on ONNX Runtime (CUDA when available).

    python scripts/bench_models.py --model-dir DIR [--providers CUDAExecutionProvider] [--runs 30]

With the cost-matched contract models (scripts/make_test_models.py --cost-matched) the numbers
approximate the real models' cost per call; prints JSON (ms per call, GFLOP/s by the reference
MAC counts: det 13.3 GMAC at 640x640, ArcFace 6.3 GMAC per face, inswapper 174.7 GMAC per face,
GFPGAN ~198 GMAC per face).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ffray.models.sessions import choose_providers, make_session

CASES = {  # file, feeds, GMAC per call
    "det_10g": ("det_10g.onnx", {"input.1": (1, 3, 640, 640)}, 13.3),
    # the ArcFace contract model is not cost-matched: its time is not the real model's
    "w600k_r50_x8": ("w600k_r50.onnx", {"input.1": (8, 3, 112, 112)}, None),
    "inswapper_128": ("inswapper_128.onnx", {"target": (1, 3, 128, 128), "source": (1, 512)}, 174.7),
    "gfpgan_1.4": ("GFPGANv1.4.onnx", {"input": (1, 3, 512, 512)}, 198.0),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--providers")
    ap.add_argument("--runs", type=int, default=30)
    a = ap.parse_args()
    prov = choose_providers(a.providers.split(",") if a.providers else None)
    out = {"providers": [p if isinstance(p, str) else p[0] for p in prov]}
    rng = np.random.default_rng(0)
    for name, (file, shapes, gmac) in CASES.items():
        t = time.perf_counter()
        s = make_session(Path(a.model_dir) / file, prov)
        load_s = time.perf_counter() - t
        feeds = {k: rng.standard_normal(v).astype(np.float32) for k, v in shapes.items()}
        for _ in range(3):
            s.run(None, feeds)
        t = time.perf_counter()
        for _ in range(a.runs):
            s.run(None, feeds)
        ms = (time.perf_counter() - t) / a.runs * 1000
        out[name] = {"ms_per_call": round(ms, 3), "load_s": round(load_s, 2),
                     "tflops": round(2 * gmac / ms, 1) if ms and gmac else None}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
