"""Probe and chunk planning, no Ray."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from ffray.errors import FFrayError
from ffray.video.decode import decode_payload, iter_payloads
from ffray.video.plan import (
    AUTO_CHUNKS,
    CHUNK_TAPER,
    TAPER_MIN_CHUNKS,
    auto_chunk_seconds,
    auto_chunk_taper,
    plan_chunks,
    select_frames,
    snap_starts,
)
from ffray.video.probe import PacketIndex, probe
from tests.media import audio_only_file, frames


def test_probe_counts_frames_from_packets_and_reads_metadata(media):
    info, index = probe(media.cfr_audio)
    decoded = frames(media.cfr_audio)
    v = info.video
    assert v.frame_count == len(decoded) == 96
    assert (v.width, v.height, v.codec, v.pix_fmt) == (320, 240, "h264", "yuv420p")
    assert v.rotation == 90 and not v.vfr
    assert v.avg_rate == 30 and v.time_base == Fraction(1, 15360)
    assert v.color.describe() == {"range": "tv", "space": "bt709", "primaries": "bt709",
                                  "transfer": "bt709"}
    assert [t for t, _ in decoded] == [Fraction(int(p)) * v.time_base for p in index.frame_pts]
    assert v.keyframes == int(index.key.sum()) == 4
    assert len(info.audio) == 1 and info.audio[0].codec == "aac" and info.audio[0].channels == 2
    js = info.to_json()
    assert js["video"]["avg_frame_rate"] == "30/1" and js["video"]["time_base"] == "1/15360"


def test_probe_detects_variable_frame_rate(media):
    assert probe(media.vfr_audio)[0].video.vfr
    info, _ = probe(media.vfr_mkv)
    assert info.video.vfr and info.video.time_base == Fraction(1, 1000)
    assert info.audio[0].codec == "pcm_s16le"
    assert not probe(media.cfr_silent)[0].video.vfr


def test_plan_covers_every_frame_once_with_valid_key_packets(media):
    info, index = probe(media.cfr_audio)
    chunks = plan_chunks(index, info.video.time_base, 0.7)
    assert [c.first_frame for c in chunks] == [0, 21, 42, 63, 84]
    assert chunks[-1].end_frame == 96
    for c in chunks:
        assert index.key[c.key_packet] and c.key_pts <= c.first_pts
        dec = index.frame_packets[c.first_frame:c.end_frame]
        assert c.key_packet <= dec.min() and c.last_packet == dec.max()
    # chunk 1 starts at frame 21, before the keyframe at frame 25: it must start at key 0
    assert chunks[1].key_packet == 0


def test_plan_vfr_by_time_and_merges_short_tail(media):
    info, index = probe(media.vfr_mkv)
    chunks = plan_chunks(index, info.video.time_base, 1.0)
    fpts = index.frame_pts
    for c in chunks[:-1]:
        assert abs((fpts[c.end_frame] - fpts[c.first_frame]) / 1000 - 1.0) < 0.15
    assert sum(c.frames for c in chunks) == info.video.frame_count
    one = plan_chunks(index, info.video.time_base, 100.0)
    assert len(one) == 1 and one[0].frames == info.video.frame_count


def test_plan_open_gop_uses_earlier_keyframe():
    # decode order: I0 P3 B1 B2 | I6(key) B4 B5 P9 B7 B8 ; B4/B5 lead I6 (open GOP)
    pts = np.array([0, 3, 1, 2, 6, 4, 5, 9, 7, 8])
    key = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0], bool)
    idx = PacketIndex(pts, pts - 2, key, np.zeros(10, bool), np.ones(10, np.int64))
    chunks = plan_chunks(idx, Fraction(1, 1), 4.0)  # frames 0-3, 4-9
    assert chunks[1].first_pts == 4
    assert chunks[1].key_packet == 0  # I6 is presented after frame 4: decode from I0


def test_trim_selects_frames_and_rejects_empty_ranges(media):
    info, index = probe(media.cfr_audio)
    a, b = select_frames(index.frame_pts, info.video.time_base, 1.0, 2.0)
    assert (a, b) == (30, 60)
    with pytest.raises(FFrayError, match="selects no frames"):
        select_frames(index.frame_pts, info.video.time_base, 50.0, None)
    with pytest.raises(FFrayError):
        select_frames(index.frame_pts, info.video.time_base, -1.0, None)


def test_payloads_decode_to_exactly_the_reference_frames(media):
    info, index = probe(media.vfr_audio)
    chunks = plan_chunks(index, info.video.time_base, 0.5)
    ref = {t: img for t, img in frames(media.vfr_audio)}
    seen = 0
    for p in iter_payloads(str(media.vfr_audio), index, chunks):
        assert p.packets and len(p.packets) >= p.spec.frames
        for f in decode_payload(p):
            t = f.pts * info.video.time_base
            assert np.array_equal(f.to_ndarray(format="bgr24"), ref[t])
            seen += 1
    assert seen == info.video.frame_count


def test_context_frames_come_before_each_chunk_and_decode(media):
    info, index = probe(media.vfr_audio)
    plain = plan_chunks(index, info.video.time_base, 0.5)
    chunks = plan_chunks(index, info.video.time_base, 0.5, context=5)
    assert [(c.first_frame, c.end_frame) for c in chunks] == [(c.first_frame, c.end_frame) for c in plain]
    assert chunks[0].context == 0 and all(c.context == 5 for c in chunks[1:])
    assert all(c.key_packet <= p.key_packet for c, p in zip(chunks, plain))
    ref = [t for t, _ in frames(media.vfr_audio)]
    for p in iter_payloads(str(media.vfr_audio), index, chunks):
        got = [f.pts * info.video.time_base for f in decode_payload(p)]
        c = p.spec
        assert len(got) == c.decoded_frames
        assert got == ref[c.first_frame - c.context:c.end_frame]
    trimmed = plan_chunks(index, info.video.time_base, 0.5, frame_range=(3, 60), context=5)
    assert trimmed[0].context == 0  # never before the trimmed range
    assert all(c.first_frame - c.context >= 3 for c in trimmed)


def _decoded_before(index, chunks) -> int:
    """Frames each chunk's decoder decodes before its first decoded frame (from its keyframe)."""
    where = {int(p): i for i, p in enumerate(index.frame_packets)}
    return sum(c.first_frame - c.context - where[c.key_packet] for c in chunks)


def test_snapped_boundaries_start_decoding_on_a_keyframe(media):
    info, index = probe(media.cfr_audio)  # 96 frames, keyframes at 0, 25, 50, 75
    keys = [int(i) for i, p in enumerate(index.frame_packets) if index.key[p]]
    assert keys == index.key_frames.tolist() == [0, 25, 50, 75]
    plain = plan_chunks(index, info.video.time_base, 0.8, context=3)
    snapped = plan_chunks(index, info.video.time_base, 0.8, context=3, snap=0.25)
    assert [c.first_frame for c in plain] == [0, 24, 48, 72]
    assert [c.first_frame for c in snapped] == [0, 28, 53, 78]  # keyframe + 3 context frames
    assert [c.first_frame - c.context for c in snapped[1:]] == keys[1:]
    assert _decoded_before(index, snapped) == 0 < _decoded_before(index, plain)
    assert sum(c.frames for c in snapped) == 96 and snapped[-1].end_frame == 96
    ref = [t for t, _ in frames(media.cfr_audio)]
    for p in iter_payloads(str(media.cfr_audio), index, snapped):
        c = p.spec
        assert [f.pts * info.video.time_base for f in decode_payload(p)] == \
            ref[c.first_frame - c.context:c.end_frame]
    # a keyframe further than the tolerance leaves the boundary where the clock put it
    far = plan_chunks(index, info.video.time_base, 0.5, context=3, snap=0.25)  # 15-frame chunks
    assert [c.first_frame for c in far] == [0, 15, 28, 45, 60, 78, 90]  # 53 is 7 from 60


def _cfr_index(n: int, gop: int) -> PacketIndex:
    """``n`` frames at 1 tick each (time base 1/30 s), a keyframe every ``gop`` frames."""
    pts = np.arange(n)
    return PacketIndex(pts, pts - 1, pts % gop == 0, np.zeros(n, bool), np.ones(n, np.int64))


def test_a_taper_cuts_the_last_share_of_the_video_into_half_chunks():
    """2 minutes at 30 frames/s, 3.75 s chunks: 32 whole chunks untapered; with the last third
    tapered, 21 whole chunks (up to the whole-chunk boundary before 80 s), then half chunks; every
    frame once, and snapping keeps both kinds within a quarter of their own length."""
    tb = Fraction(1, 30)
    idx = _cfr_index(3600, 1_000_000)
    plain = plan_chunks(idx, tb, 3.75)
    tapered = plan_chunks(idx, tb, 3.75, taper=1 / 3)
    assert len(plain) == 32 and {c.frames for c in plain[:-1]} == {112}
    assert [c.frames for c in tapered[:21]] == [112] * 21 and tapered[21].first_frame == 21 * 112
    assert {c.frames for c in tapered[21:-1]} == {56} and 0.25 * 56 <= tapered[-1].frames <= 56
    for plan in (plain, tapered):
        assert plan[0].first_frame == 0 and plan[-1].end_frame == 3600
        assert all(x.end_frame == y.first_frame for x, y in zip(plan, plan[1:]))
    keyed = _cfr_index(3600, 25)
    snapped = plan_chunks(keyed, tb, 3.75, context=8, snap=0.25, taper=1 / 3)
    whole = [c.frames for c in snapped if c.first_frame < 21 * 112][:-1]
    half = [c.frames for c in snapped if c.first_frame > 21 * 112 + 56][:-1]
    assert whole and half and all(abs(f - 112) <= 2 * 28 for f in whole)
    assert all(abs(f - 56) <= 2 * 14 for f in half)
    assert all((c.first_frame - c.context) % 25 == 0 for c in snapped[1:] if c.first_frame > 21 * 112)


def test_snap_keeps_every_chunk_non_empty():
    assert snap_starts([0, 10, 20], np.array([11, 12]), 5, 30) == [0, 11, 20]
    assert snap_starts([0, 10, 12], np.array([13]), 5, 20) == [0, 10, 13]
    assert snap_starts([0, 10, 12], np.array([12]), 5, 20) == [0, 10, 12]  # 10 not onto the next start
    assert snap_starts([0, 10], np.array([16]), 5, 15) == [0, 10]  # past the end: stays


def test_decode_detects_missing_frames(media):
    info, index = probe(media.cfr_silent)
    chunks = plan_chunks(index, info.video.time_base, 1.0)
    p = next(iter_payloads(str(media.cfr_silent), index, chunks[1:2]))
    p.packets, p.pts, p.dts = p.packets[:-3], p.pts[:-3], p.dts[:-3]
    with pytest.raises(Exception, match="chunk 1"):
        list(decode_payload(p))


def test_audio_only_file_has_no_video_stream(tmp_path):
    with pytest.raises(FFrayError, match="no video stream"):
        probe(audio_only_file(tmp_path / "tone.m4a"))


def test_cluster_yaml_is_a_launcher_config_with_a_gpu_worker_type():
    import yaml

    from tests.conftest import ROOT

    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    assert any(t["resources"].get("GPU", 0) >= 1 for t in types.values())
    assert any("install-gpu.sh" in c for c in cfg["setup_commands"])


@pytest.mark.parametrize("case", ["tiny chunks, 3 B-frames", "sparse VFR", "long GOP",
                                  "open GOP, tiny chunks"])
def test_no_packet_is_lost_whatever_the_chunking(tmp_path, case):
    """Chunks shorter than the B-frame reorder delay, frames minutes apart, GOPs longer than many
    chunks, open GOPs: every chunk gets its packets and decodes to exactly its frames."""
    from ffray.video import sample

    kw = {"tiny chunks, 3 B-frames": dict(bframes=3, gop=12),
          "sparse VFR": dict(bframes=2, gop=2, time_base=Fraction(1, 1000),
                             pts_step=lambda i: 90_000 if i % 2 else 40),
          "long GOP": dict(bframes=2, gop=300),
          "open GOP, tiny chunks": dict(bframes=3, gop=10, codec_options={"x264-params": "open-gop=1"})}[case]
    chunk_s = {"sparse VFR": 10.0, "long GOP": 0.2}.get(case, 0.04)
    path = sample.write_video(tmp_path / "v.mp4", sample.pattern_frames(36, seed=4), fps=25,
                              audio=False, **kw)
    info, index = probe(path)
    chunks = plan_chunks(index, info.video.time_base, chunk_s)
    assert len(chunks) >= 6
    ref = [t for t, _ in frames(path)]
    got = []
    for p in iter_payloads(str(path), index, chunks):
        got += [f.pts * info.video.time_base for f in decode_payload(p)]
    assert got == ref and len(got) == info.video.frame_count == 36


def test_auto_chunk_length_gives_whole_waves_within_bounds():
    """About AUTO_CHUNKS chunks (a 2-minute video: 32 of 3.75 s, two full waves on 16 slots),
    never shorter than 2 s nor longer than 10 s."""
    assert AUTO_CHUNKS == 32
    assert auto_chunk_seconds(120.0) == 3.75 and 120.0 / auto_chunk_seconds(120.0) == 32
    assert auto_chunk_seconds(160.0) == 5.0
    assert auto_chunk_seconds(10.0) == 2.0 and auto_chunk_seconds(1000.0) == 10.0


def test_auto_taper_only_where_the_input_makes_several_waves():
    """The default taper from the input alone: a third of a 2-minute input (32 chunks), none for
    a 20 s one (10 chunks of 2 s, one wave: half chunks would only cost keyframe decoding)."""
    assert 0 < CHUNK_TAPER < 1 and TAPER_MIN_CHUNKS == 16
    assert auto_chunk_taper(120.0, auto_chunk_seconds(120.0)) == CHUNK_TAPER
    assert auto_chunk_taper(32.0, auto_chunk_seconds(32.0)) == CHUNK_TAPER  # 16 chunks of 2 s
    assert auto_chunk_taper(31.0, auto_chunk_seconds(31.0)) == 0.0
    assert auto_chunk_taper(20.0, auto_chunk_seconds(20.0)) == 0.0


def test_a_long_input_is_planned_tapered_unless_the_chunk_length_is_given(data_dir, tmp_path):
    """prepare_swap on a real 40 s video: auto chunks (2 s) with the last third in 1 s chunks,
    recorded in the job spec; an explicit --chunk-seconds or --chunk-taper 0 gives whole chunks
    only; every plan covers every frame once."""
    from ffray.cluster.jobs import SwapRequest, prepare_swap
    from ffray.video import sample

    video = sample.write_video(tmp_path / "long.mp4", sample.pattern_frames(400, 64, 48), fps=10,
                               gop=10, audio=False)

    def plan(**kw):
        ledger = prepare_swap(SwapRequest(input=str(video), output=str(tmp_path / "o.mp4"),
                                          telemetry=False, **kw), data_dir)
        chunks = ledger.load_plan()
        assert chunks[0].first_frame == 0 and chunks[-1].end_frame == 400
        assert all(x.end_frame == y.first_frame for x, y in zip(chunks, chunks[1:]))
        return ledger.spec, [c.frames for c in chunks]

    spec, frames = plan()
    assert spec["chunk_seconds"] == 2.0 and spec["chunk_taper"] == CHUNK_TAPER
    # boundaries snap to keyframes (each by a quarter of its chunk length at most): 13 chunks of about
    # 20 frames up to the whole-chunk boundary before the last third (260), then 14 of about 10
    cut = int((1 - CHUNK_TAPER) * 400) // 20 * 20
    assert len(frames) == cut // 20 + (400 - cut) // 10 == 27
    assert sum(frames[:13]) in range(cut - 5, cut + 6) and all(10 <= f <= 30 for f in frames[:12])
    assert all(5 <= f <= 15 for f in frames[14:])
    for kw in ({"chunk_seconds": 2.0}, {"chunk_taper": 0.0}):
        spec, frames = plan(**kw)
        assert spec["chunk_taper"] == 0.0 and len(frames) == 20 and all(10 <= f <= 30 for f in frames)
