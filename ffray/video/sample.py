"""Sample media, made offline: synthetic test videos and the demo's pan/zoom over real faces."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from ffray.errors import FFrayError
from ffray.video.encode import x264_asm


def faces_image() -> np.ndarray:
    """insightface's t1.jpg (six real faces), shipped inside the insightface wheel (BGR)."""
    try:
        import insightface
    except ImportError:  # pragma: no cover - insightface is a hard dependency
        raise FFrayError("insightface is not installed; it ships the sample face photo") from None
    path = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    img = cv2.imread(str(path))
    if img is None:
        raise FFrayError(f"cannot read the sample face photo {path}")
    return img


def astronaut_face() -> np.ndarray:
    """skimage's astronaut photo (one real face), BGR."""
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def write_video(path: str | os.PathLike, frames: Iterator[np.ndarray], *, fps: float = 25,
                pts_step: Callable[[int], int] | None = None, time_base: Fraction | None = None,
                codec: str = "libx264", gop: int = 25, bframes: int = 2, audio: bool = True,
                audio_codec: str = "aac", rotation: int = 0, color: tuple | None = None,
                crf: int = 20, duration_frames: int | None = None,
                codec_options: dict | None = None) -> Path:
    """Encode BGR frames to ``path`` (format from the extension) with optional sine-tone audio.

    ``pts_step(i)`` gives frame i's duration in ``time_base`` ticks, for variable frame rate."""
    path = Path(path)
    tb = time_base or Fraction(1, int(round(fps * 512)))
    rate = Fraction(fps).limit_denominator(1001)
    out = av.open(str(path), "w")
    vs = None
    pts = 0
    n = 0
    audio_stream = None
    try:
        for bgr in frames:
            if vs is None:
                h, w = bgr.shape[:2]
                asm = x264_asm() if codec == "libx264" else None  # as the jobs do: same bytes
                vs = out.add_stream(codec, rate=rate, options={
                    "g": str(gop), "bf": str(bframes), "crf": str(crf), "preset": "veryfast",
                    **({"x265-params": "log-level=error"} if codec == "libx265" else {}),
                    **({"x264-params": f"asm={asm}"} if asm else {}),
                    **(codec_options or {})})
                vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
                vs.time_base = tb
                vs.codec_context.time_base = tb
                if color:
                    cc = vs.codec_context
                    cc.color_range, cc.colorspace, cc.color_primaries, cc.color_trc = color
                if rotation:
                    vs.set_display_rotation(rotation)
                if audio:
                    audio_stream = out.add_stream(audio_codec, rate=48000, layout="stereo")
            f = av.VideoFrame.from_ndarray(bgr, format="bgr24")
            f.pts, f.time_base = pts, tb
            out.mux(vs.encode(f))
            pts += pts_step(n) if pts_step else int(round(1 / (fps * tb)))
            n += 1
        if vs is None:
            raise ValueError("no frames")
        out.mux(vs.encode(None))
        if audio_stream is not None:
            _write_tone(out, audio_stream, seconds=float(pts * tb))
    finally:
        out.close()
    return path


def _write_tone(out, stream, seconds: float) -> None:
    sr = stream.codec_context.sample_rate
    fmt = stream.codec_context.format.name
    total = int(seconds * sr)
    spf = stream.codec_context.frame_size or 1024
    t = 0
    while t < total:
        n = min(spf, total - t)
        x = np.arange(t, t + n) / sr
        tone = (0.2 * np.sin(2 * np.pi * (220 + 220 * (x % 2)) * x)).astype(np.float32)
        stereo = np.stack([tone, tone])
        if fmt in ("s16", "s16p"):
            arr = (stereo * 32767).astype(np.int16)
            arr = arr if fmt == "s16p" else arr.T.reshape(1, -1)
        else:
            arr = stereo if fmt == "fltp" else stereo.T.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(arr, format=fmt, layout="stereo")
        frame.sample_rate, frame.pts = sr, t
        out.mux(stream.encode(frame))
        t += n
    out.mux(stream.encode(None))


def pattern_frames(count: int, width: int = 320, height: int = 240, seed: int = 0) -> Iterator[np.ndarray]:
    """Distinct frames: a moving gradient and a bouncing box, different on every frame."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
    base = cv2.resize(base, (width, height), interpolation=cv2.INTER_CUBIC)
    for i in range(count):
        f = np.roll(base, i * 3, axis=1).copy()
        x = (i * 7) % max(1, width - 40)
        y = (i * 5) % max(1, height - 40)
        cv2.rectangle(f, (x, y), (x + 40, y + 40), (i * 13 % 256, 255 - i * 7 % 256, 128), -1)
        yield f


def pan_zoom_frames(image: np.ndarray, count: int, width: int, height: int) -> Iterator[np.ndarray]:
    """A slow pan and zoom over ``image`` (the demo's sample: real faces, moving)."""
    ih, iw = image.shape[:2]
    aspect = width / height
    for i in range(count):
        t = i / max(1, count - 1)
        zoom = 1.0 + 0.35 * np.sin(np.pi * t)
        cw = min(iw, ih * aspect) / zoom
        ch = cw / aspect
        cx = cw / 2 + (iw - cw) * (0.5 + 0.5 * np.sin(2 * np.pi * t)) * 1.0
        cx = float(np.clip(cx, cw / 2, iw - cw / 2))
        cy = float(np.clip(ih / 2 + (ih - ch) / 4 * np.cos(2 * np.pi * t), ch / 2, ih - ch / 2))
        m = np.array([[width / cw, 0, -(cx - cw / 2) * width / cw],
                      [0, height / ch, -(cy - ch / 2) * height / ch]], np.float32)
        yield cv2.warpAffine(image, m, (width, height), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT)


def make_demo_video(path: str | os.PathLike, seconds: float = 8.0, width: int = 960,
                    height: int = 540, fps: float = 25) -> Path:
    n = int(round(seconds * fps))
    return write_video(path, pan_zoom_frames(faces_image(), n, width, height), fps=fps, gop=50)
