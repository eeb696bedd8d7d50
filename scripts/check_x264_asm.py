"""x264 with the job's pinned instruction set (``ffray.video.encode.X264_ASM``) against x264's own
choice: how many different byte strings one chunk encodes to over many runs in one process, and
(with ``--input``) the CPU time a frame of decode + libx264 costs, alternated.

    python scripts/check_x264_asm.py [--runs 150] [--input VIDEO --frames 150 --rounds 4]

Prints one JSON line per measurement. The chunk is the one the tests use (tests/media.py's
``cfr_silent``: 60 generated frames, 25 fps, GOP 12; its second 1-second chunk).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ffray.video import encode  # noqa: E402

_PINNED = encode.x264_asm


def use(pinned: bool) -> None:
    """The job's pin, or x264's own choice (as on a CPU without AVX2: ``x264_asm`` gives None)."""
    encode.x264_asm = _PINNED if pinned else (lambda: None)


def chunk_hashes(runs: int, pinned: bool) -> dict[str, int]:
    from ffray.engine.frames import Frame, layout_for
    from ffray.video import sample
    from ffray.video.decode import decode_payload, iter_payloads
    from ffray.video.plan import plan_chunks
    from ffray.video.probe import probe

    path = Path(tempfile.mkdtemp(prefix="ffray-asm-")) / "c.mp4"
    sample.write_video(path, sample.pattern_frames(60, seed=1), fps=25, gop=12, audio=False)
    info, index = probe(path)
    v = info.video
    p = next(iter_payloads(str(path), index, plan_chunks(index, v.time_base, 1.0)[1:2]))
    use(pinned)
    seen: dict[str, int] = {}
    for _ in range(runs):
        enc = encode.ChunkEncoder(encode.EncodeSettings(), p.width, p.height, p.time_base,
                                  v.avg_rate, p.color, v.pix_fmt,
                                  layout=layout_for(v.pix_fmt, v.width, v.height), threads=1)
        for f in decode_payload(p, threads=1):
            enc.write_frame(Frame(decoded=f), f.pts)
        h = hashlib.md5(enc.finish()).hexdigest()
        seen[h] = seen.get(h, 0) + 1
    return seen


def core_ms(path: str, frames: int, pinned: bool) -> float:
    from bench_ceilings import _transcode_worker

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    n, _ = _transcode_worker((path, frames, not pinned))
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return round(1000 * (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) / n, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=150)
    ap.add_argument("--input")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=4)
    a = ap.parse_args()
    print(json.dumps({"pin": _PINNED()}), flush=True)
    for pinned in (True, False):
        h = chunk_hashes(a.runs, pinned)
        print(json.dumps({"asm": "pinned" if pinned else "x264's", "runs": a.runs,
                          "byte_strings": len(h), "counts": sorted(h.values(), reverse=True)}),
              flush=True)
    if a.input:
        for r in range(a.rounds):
            for pinned in (True, False):
                print(json.dumps({"round": r, "asm": "pinned" if pinned else "x264's",
                                  "core_ms_per_frame": core_ms(a.input, a.frames, pinned)}),
                      flush=True)


if __name__ == "__main__":
    main()
