"""Test media, generated offline with PyAV, and helpers to read results back."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ffray.video import sample


@dataclass
class Media:
    root: Path
    cfr_audio: Path  # 30 fps, B-frames, GOP 25, AAC, rotation 90, BT.709 tags
    cfr_silent: Path  # 25 fps, no audio
    vfr_audio: Path  # variable frame rate mp4 with audio
    vfr_mkv: Path  # variable frame rate Matroska (1/1000 time base), PCM audio
    face: Path  # a real face photo (skimage astronaut)
    faces_video: Path  # pan/zoom over the six faces of insightface's t1.jpg, 640x360, with audio


def make_media(root: Path) -> Media:
    import cv2

    face = root / "astronaut.jpg"
    cv2.imwrite(str(face), sample.astronaut_face())
    return Media(
        root=root,
        cfr_audio=sample.write_video(root / "cfr_audio.mp4", sample.pattern_frames(96), fps=30,
                                     gop=25, rotation=90, color=(1, 1, 1, 1)),
        cfr_silent=sample.write_video(root / "cfr_silent.mp4", sample.pattern_frames(60, seed=1),
                                      fps=25, gop=12, audio=False),
        vfr_audio=sample.write_video(root / "vfr_audio.mp4", sample.pattern_frames(80, seed=2),
                                     fps=30, gop=20, pts_step=lambda i: 512 if i % 4 else 1536),
        vfr_mkv=sample.write_video(root / "vfr.mkv", sample.pattern_frames(70, seed=3), fps=25,
                                   gop=30, time_base=Fraction(1, 1000), audio_codec="pcm_s16le",
                                   pts_step=lambda i: 40 if i % 5 else 100),
        face=face,
        faces_video=sample.write_video(root / "faces.mp4", sample.pan_zoom_frames(
            sample.faces_image(), 30, 640, 360), fps=25, gop=12))


def write_silence(out, stream, count: int = 10) -> None:
    """Mux ``count`` frames of stereo silence through an audio encoder stream."""
    for i in range(count):
        f = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp",
                                       layout="stereo")
        f.sample_rate, f.pts = 48000, i * 1024
        out.mux(stream.encode(f))
    out.mux(stream.encode(None))


def audio_only_file(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        write_silence(out, out.add_stream("aac", rate=48000, layout="stereo"))
    return path


def frames(path: Path) -> list[tuple[Fraction, np.ndarray]]:
    """(presentation time in seconds, BGR image) of every frame."""
    with av.open(str(path)) as c:
        return [(f.pts * f.time_base, f.to_ndarray(format="bgr24")) for f in c.decode(video=0)]


def audio_packets(path: Path) -> list[tuple[bytes, Fraction]]:
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [(bytes(p), p.pts * p.time_base) for p in c.demux(audio=0) if p.size]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Luma PSNR (chroma is 4:2:0-resampled by every BGR round trip; luma must survive)."""
    import cv2

    a, b = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY), cv2.cvtColor(b, cv2.COLOR_BGR2GRAY)
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def swap(src: Path, out: Path, data_dir: Path, processor: str = "identity", params: dict | None = None,
         **kw):
    """Plan and run a job in-process on the already connected Ray cluster."""
    from ffray.cluster.jobs import SwapRequest, prepare_swap, run_job
    from ffray.processors import ProcessorSpec

    kw.setdefault("chunk_seconds", 0.7)
    req = SwapRequest(input=str(src), output=str(out),
                      processor=ProcessorSpec(kind=processor, params=params or {}, batch_size=4),
                      **kw)
    ledger = prepare_swap(req, data_dir)
    return ledger, run_job(ledger)
