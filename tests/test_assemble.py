"""Chunk verification before assembly (ffray.video.assemble): chunk files are opened demux-only
(no frame is decoded), and what decoding would have said (profile, pixel format) is still
checked, through the parameter sets in the extradata or, without them, by decoding."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from ffray.errors import MediaError
from ffray.video.assemble import IN_EXTRADATA, check_chunk, verify_chunks
from ffray.video.encode import ChunkEncoder, EncodeSettings
from ffray.video.plan import ChunkSpec
from ffray.video.probe import Color

TB = Fraction(1, 30)
N = 12


def _gradient(i: int) -> np.ndarray:
    """A slowly moving gradient (64x64 BGR): x264 uses B-frames on it."""
    x = np.arange(64, dtype=np.float32)
    img = np.uint8(127 + 100 * np.sin((x[None, :] + x[:, None] + 2 * i) / 9))
    return np.repeat(img[:, :, None], 3, 2)


def write_chunk(path, first: int, profile: str = "high", global_header: bool = True,
                frames: int = N, codec: str = "libx264"):
    """A NUT chunk of ``frames`` 64x64 frames with pts ``first``... With libx264 and a global
    header it is the worker's own encoder (``ChunkEncoder``); otherwise a plain PyAV writer muxing
    as it does, for what that encoder never makes (in-band parameter sets, MJPEG)."""
    if codec == "libx264" and global_header:
        enc = ChunkEncoder(EncodeSettings(crf=30, options={"profile": profile}), 64, 64, TB,
                           Fraction(30), Color(), "yuv420p", threads=1)
        for i in range(frames):
            enc.write(_gradient(first + i), first + i)
        path.write_bytes(enc.finish())
        return path
    with av.open(str(path), "w", format="nut", options={"avoid_negative_ts": "disabled"}) as out:
        s = out.add_stream(codec, rate=30)
        s.width, s.height, s.time_base = 64, 64, TB
        s.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if codec == "libx264":
            s.codec_context.options = {"profile": profile, "preset": "veryfast", "crf": "30"}
        if not global_header:  # the NUT muxer asks for one; in-band SPS/PPS instead
            s.codec_context.flags &= ~int(av.codec.context.Flags.global_header)
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(_gradient(first + i), "bgr24")
            f.pts = first + i
            out.mux(s.encode(f.reformat(format=s.pix_fmt)))
        out.mux(s.encode(None))
    return path


def spec(index: int, first: int) -> ChunkSpec:
    return ChunkSpec(index=index, first_frame=first, end_frame=first + N, first_pts=first,
                     last_pts=first + N - 1, key_packet=first, key_pts=first, last_packet=first + N - 1)


def test_chunks_of_one_encoder_pass_and_their_parameter_sets_stand_for_profile(tmp_path):
    paths = [write_chunk(tmp_path / f"{i}.nut", i * N) for i in range(3)]
    checks = verify_chunks(paths, [spec(i, i * N) for i in range(3)], TB)
    name, profile, pix_fmt, w, h, _, extra = checks[0].params
    assert (name, w, h) == ("h264", 64, 64) and extra  # x264's global header: SPS + PPS
    assert profile == pix_fmt == IN_EXTRADATA  # not decoded to find out
    assert all(c.params == checks[0].params for c in checks)
    assert checks[0].reorder_delay > 0  # B-frames: presentation order differs from decode order


def test_a_chunk_from_another_profile_is_refused(tmp_path):
    paths = [write_chunk(tmp_path / "0.nut", 0), write_chunk(tmp_path / "1.nut", N, profile="main")]
    with pytest.raises(MediaError, match="chunk 1: extradata differ from chunk 0"):
        verify_chunks(paths, [spec(0, 0), spec(1, N)], TB)


def test_in_band_parameter_sets_are_compared_too(tmp_path):
    """Without a global header FFmpeg's probing still extracts the in-band SPS/PPS as extradata
    (no decoding needed), so a chunk of another profile is refused as well."""
    paths = [write_chunk(tmp_path / "0.nut", 0, global_header=False),
             write_chunk(tmp_path / "1.nut", N, profile="main", global_header=False)]
    a = check_chunk(paths[0], spec(0, 0), TB)
    assert a.params[1] == IN_EXTRADATA and a.params[-1]
    with pytest.raises(MediaError, match="chunk 1: extradata differ from chunk 0"):
        verify_chunks(paths, [spec(0, 0), spec(1, N)], TB)


def test_a_codec_without_parameter_sets_is_decoded_for_them(tmp_path):
    """MJPEG carries no extradata: the chunk is opened again and decoded, so its pixel format
    is still compared (here against an H.264 chunk's: the codec differs too)."""
    mj = check_chunk(write_chunk(tmp_path / "0.nut", 0, codec="mjpeg"), spec(0, 0), TB)
    assert mj.params[0] == "mjpeg" and mj.params[2] == "yuvj420p" and mj.params[-1] == b""
    paths = [tmp_path / "0.nut", write_chunk(tmp_path / "1.nut", N)]
    with pytest.raises(MediaError, match="chunk 1: codec, profile, pix_fmt, extradata differ"):
        verify_chunks(paths, [spec(0, 0), spec(1, N)], TB)


def test_a_short_or_shifted_chunk_is_refused(tmp_path):
    short = write_chunk(tmp_path / "s.nut", 0, frames=N - 1)
    with pytest.raises(MediaError, match=f"chunk 0: {N - 1} frames, expected {N}"):
        check_chunk(short, spec(0, 0), TB)
    shifted = write_chunk(tmp_path / "t.nut", 1)
    with pytest.raises(MediaError, match="do not match the plan"):
        check_chunk(shifted, spec(0, 0), TB)
    (tmp_path / "junk.nut").write_bytes(b"not a chunk")
    with pytest.raises(MediaError, match="unreadable chunk file"):
        check_chunk(tmp_path / "junk.nut", spec(0, 0), TB)
