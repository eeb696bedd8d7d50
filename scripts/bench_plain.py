"""The plain single-process transcode that the identity pipeline is measured against: PyAV
decode -> bgr24 -> libx264 veryfast CRF 18 (default threading), one pass, same input.

    python scripts/bench_plain.py INPUT [--out FILE]

Prints JSON: frames, seconds, frames/s.
"""

from __future__ import annotations

import argparse
import json
import time

import av


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("--out", default="/tmp/ffray-plain.mp4")
    a = ap.parse_args()
    t = time.perf_counter()
    n = 0
    with av.open(a.input) as src, av.open(a.out, "w") as dst:
        vs = src.streams.video[0]
        vs.thread_type = "AUTO"
        out = dst.add_stream("libx264", rate=vs.average_rate, options={"crf": "18", "preset": "veryfast"})
        out.width, out.height, out.pix_fmt = vs.codec_context.width, vs.codec_context.height, "yuv420p"
        for f in src.decode(vs):
            img = f.to_ndarray(format="bgr24")
            g = av.VideoFrame.from_ndarray(img, format="bgr24")
            g.pts = None
            dst.mux(out.encode(g))
            n += 1
        dst.mux(out.encode(None))
    s = time.perf_counter() - t
    print(json.dumps({"frames": n, "seconds": round(s, 2), "fps": round(n / s, 2)}))


if __name__ == "__main__":
    main()
