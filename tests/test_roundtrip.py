"""Frame-exact round trips through the whole distributed path (shared fake-GPU cluster)."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from ffray.processors import read_stamp
from ffray.video.encode import EncodeSettings
from ffray.video.probe import probe
from tests.media import audio_packets, frames, psnr, swap

CASES = ["cfr_audio", "cfr_silent", "vfr_audio", "vfr_mkv"]


@pytest.mark.parametrize("name", CASES)
def test_identity_round_trip_is_frame_exact(cluster, media, data_dir, tmp_path, name):
    src = getattr(media, name)
    out = tmp_path / "out.mp4"
    ledger, res = swap(src, out, data_dir, actors=2, gpu_per_actor=0.5)
    assert res.chunks > 2 and res.chunks_run == res.chunks
    a, b = frames(src), frames(out)
    assert len(b) == len(a)
    assert [t for t, _ in b] == [t for t, _ in a]  # presentation times identical (VFR stays VFR)
    for i, ((_, x), (_, y)) in enumerate(zip(a, b)):
        assert psnr(x, y) > 34  # one generation of lossy re-encoding
        assert psnr(x, y) > psnr(a[i - 1][1], y) + 8  # and clearly this frame, not its neighbour
    bias = np.mean([(y.astype(float) - x).mean() for (_, x), (_, y) in zip(a, b)])
    assert abs(bias) < 0.5  # no brightness/colour shift from the YUV<->BGR conversions
    si, so = probe(src)[0].video, probe(out)[0].video
    assert so.rotation == si.rotation and so.vfr == si.vfr and so.color == si.color
    assert so.codec == "h264" and so.frame_count == si.frame_count
    if name in ("cfr_audio", "vfr_audio"):
        assert audio_packets(out) == audio_packets(src)  # stream copy: same bytes, same times
    elif name == "vfr_mkv":  # PCM cannot go in mp4: re-encoded to AAC, same duration
        with av.open(str(out)) as c:
            assert c.streams.audio[0].codec_context.name == "aac"
        assert abs(float(audio_packets(out)[-1][1]) - float(audio_packets(src)[-1][1])) < 0.1
    else:
        assert audio_packets(out) == []
    # chunk boundaries are not keyframe-aligned in the source
    info, index = probe(src)
    starts = [c.first_frame for c in ledger.load_plan()]
    src_keys = {int(p) for p in index.pts[index.key]}
    assert any(int(index.frame_pts[s]) not in src_keys for s in starts[1:])


def test_stamped_frames_come_from_the_right_input_frames(cluster, media, data_dir, tmp_path):
    out = tmp_path / "stamped.mov"
    ledger, res = swap(media.vfr_audio, out, data_dir, processor="stamp", actors=3,
                       gpu_per_actor=1, chunk_seconds=0.4)
    a, b = frames(media.vfr_audio), frames(out)
    assert [read_stamp(img) for _, img in b] == list(range(len(a)))
    for i, ((_, x), (_, y)) in enumerate(zip(a, b)):  # below the stamp: the same picture
        assert psnr(x[16:], y[16:]) > 34
        assert psnr(x[16:], y[16:]) > psnr(a[i - 1][1][16:], y[16:]) + 8
    plan = ledger.load_plan()
    assert len(plan) >= 5  # many chunk boundaries crossed


def test_trim_keeps_only_the_window_and_starts_at_zero(cluster, media, data_dir, tmp_path):
    out = tmp_path / "trim.mp4"
    swap(media.cfr_audio, out, data_dir, processor="stamp", trim_start=1.0, trim_end=2.5, actors=2)
    b = frames(out)
    assert [read_stamp(img) for _, img in b] == list(range(30, 75))
    assert b[0][0] == 0 and b[-1][0] == Fraction(44, 30)
    ap = audio_packets(out)
    assert ap and float(ap[0][1]) >= -0.05 and float(ap[-1][1]) < 1.6


def test_hevc_into_mkv(cluster, media, data_dir, tmp_path):
    out = tmp_path / "out.mkv"
    swap(media.cfr_silent, out, data_dir, processor="stamp", actors=2,
         encode=EncodeSettings(codec="hevc", crf=24))
    info = probe(out)[0].video
    assert info.codec == "hevc" and info.frame_count == 60
    assert [read_stamp(img) for _, img in frames(out)] == list(range(60))


def test_chunks_shorter_than_the_reorder_delay(cluster, data_dir, tmp_path):
    """One-frame chunks (--chunk-seconds 0.04 at 25 fps) of a file with 3 B-frames: once refused
    late ("ended before chunk N"), now every frame comes back in order."""
    from ffray.video import sample

    src = sample.write_video(tmp_path / "b.mp4", sample.pattern_frames(20, seed=9), fps=25, gop=10,
                             bframes=3, audio=False)
    out = tmp_path / "o.mp4"
    _, res = swap(src, out, data_dir, chunk_seconds=0.04, actors=2, gpu_per_actor=1)
    assert res.chunks == 20
    got, ref = frames(out), frames(src)
    assert [t for t, _ in got] == [t for t, _ in ref]
    assert min(psnr(a, b) for (_, a), (_, b) in zip(got, ref)) > 35
