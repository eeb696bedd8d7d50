"""Issue 13, item 2: what the probe can tell is decided before work starts (odd sizes get a
padding policy, an undecodable stream or a bad pixel format is refused in one line), and what
only decoding shows is mended, counted and reported, never retried: damaged packets are
concealed, a resolution change mid-stream is scaled to the first size."""

from __future__ import annotations

import io
import json
from fractions import Fraction

import av
import numpy as np
import pytest

from ffray.cli import main
from ffray.video import sample
from ffray.video.decode import DecodeReport, decode_payload, iter_payloads
from ffray.video.encode import ChunkEncoder, EncodeSettings, coded_size, size_note
from ffray.video.pictures import pad_frame
from ffray.video.plan import plan_chunks
from ffray.video.probe import Color, probe
from tests import awkward as A
from tests.media import frames, psnr, swap


def _plane(frame, i: int, bytes_per_sample: int = 1) -> np.ndarray:
    p = frame.planes[i]
    return np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:p.height, :p.width * bytes_per_sample]


def _events(ledger) -> list[dict]:
    return [e for e in ledger.events() if e["kind"] == "attempt_failed"]


def test_coded_size_rounds_up_to_the_chroma_subsampling_only():
    assert coded_size(641, 361, "yuv420p") == (642, 362)
    assert coded_size(641, 361, "yuv422p") == (642, 361)
    assert coded_size(641, 361, "yuv444p") == (641, 361)
    assert coded_size(641, 361, "yuv420p10le") == (642, 362)
    assert coded_size(640, 360, "yuv420p") == (640, 360)
    assert size_note(640, 360, EncodeSettings(), "yuv420p") is None
    note = size_note(641, 361, EncodeSettings(), "yuv420p")
    assert "642x362" in note and "yuv444p keeps 641x361" in note


@pytest.mark.parametrize("fmt", ["yuv420p", "yuv420p10le", "nv12"])
def test_pad_repeats_the_last_column_and_row_and_keeps_every_source_pixel(fmt):
    src = av.VideoFrame.from_ndarray(np.zeros((7, 9, 3), np.uint8), format="bgr24").reformat(format=fmt)
    rng = np.random.default_rng(1)
    for p in src.planes:
        a = np.frombuffer(p, np.uint8)
        a[:] = rng.integers(0, 255, a.size)  # noise in every byte, padding included
    out = pad_frame(src, *coded_size(9, 7, fmt))
    assert (out.width, out.height, out.format.name) == (10, 8, fmt)
    bps = 2 if fmt.endswith("10le") else 1
    y0, y = _plane(src, 0, bps), _plane(out, 0, bps)
    assert y.shape == (8, 10 * bps)
    assert np.array_equal(y[:7, :9 * bps], y0)
    assert np.array_equal(y[:7, 9 * bps:], y0[:, 8 * bps:])  # last column repeated
    assert np.array_equal(y[7], y[6])  # last row repeated
    cb = 2 if fmt == "nv12" else bps  # odd 4:2:0 chroma already covers 10x8: copied as it is
    assert np.array_equal(_plane(out, 1, cb), _plane(src, 1, cb))


def test_odd_size_job_is_padded_to_even_once_and_yuv444p_keeps_the_size(cluster, tmp_path, data_dir):
    src = A.odd_vp9(tmp_path / "odd.webm")
    ledger, res = swap(src, tmp_path / "o.mp4", data_dir, actors=1, gpu_per_actor=1)
    assert not _events(ledger)  # no chunk failed: libx264 got an even size
    assert any("161x91 cannot be coded in yuv420p" in n for n in ledger.spec["notes"])
    got, ref = frames(tmp_path / "o.mp4"), frames(src)
    assert len(got) == len(ref) == 20
    for (_, g), (_, r) in zip(got, ref):
        assert g.shape == (92, 162, 3)
        assert psnr(g[:91, :161], r) > 30  # every source pixel is there, not scaled
    # 4:4:4 needs no padding: the chunk encoder codes the exact size
    enc = ChunkEncoder(EncodeSettings(pix_fmt="yuv444p"), 161, 91, Fraction(1, 25), Fraction(25),
                       Color(), "yuv420p")
    for i, (_, bgr) in enumerate(ref[:3]):
        enc.write(bgr, i)
    with av.open(io.BytesIO(enc.finish()), format="nut") as c:
        assert [(f.width, f.height) for f in c.decode(video=0)] == [(161, 91)] * 3


def test_resolution_change_is_scaled_into_the_first_size_keeping_aspect(tmp_path):
    path = A.size_change(tmp_path / "sc.mkv")  # 160x120 (4:3), then 192x108 (16:9)
    info, index = probe(path)
    assert (info.video.width, info.video.height) == (160, 120)
    total = DecodeReport()
    got = []
    for p in iter_payloads(str(path), index, plan_chunks(index, info.video.time_base, 0.3)):
        r = DecodeReport()
        fr = list(decode_payload(p, report=r))
        assert [f.pts for f in fr] == p.frame_pts
        got += fr
        total.resized += r.resized
        assert r.concealed == 0
    assert total.resized == 12 and len(got) == 24
    assert all((f.width, f.height) == (160, 120) for f in got)
    late = got[-1].to_ndarray(format="bgr24")
    assert late[:14].max() < 20 and late[-14:].max() < 20  # 160x90 in 160x120: 15-row bars
    assert late[30:90].mean() > 40


def test_resolution_change_job_finishes_with_a_warning(cluster, tmp_path, data_dir):
    path = A.size_change(tmp_path / "sc.mp4")
    ledger, _ = swap(path, tmp_path / "o.mp4", data_dir, actors=1, gpu_per_actor=1,
                     chunk_seconds=0.3)
    assert not _events(ledger)
    assert ledger.spec["status"] == "done"
    assert any("changes size mid-stream: 12 frame(s)" in w for w in ledger.spec["warnings"])
    got = frames(tmp_path / "o.mp4")
    assert len(got) == 24 and {f.shape for _, f in got} == {(120, 160, 3)}


def test_damaged_packets_are_concealed_and_counted(tmp_path, monkeypatch):
    clean = sample.write_video(tmp_path / "c.mp4", sample.pattern_frames(36), fps=25, gop=12,
                               audio=False)
    bad = tmp_path / "bad.mp4"
    A.damage_packets(clean, bad, [1], keyframes=True)  # the second keyframe: its GOP is lost
    info, index = probe(bad)  # the demuxer cannot tell: the probe accepts it
    total = DecodeReport()
    n = 0
    for p in iter_payloads(str(bad), index, plan_chunks(index, info.video.time_base, 0.5)):
        r = DecodeReport()
        fr = list(decode_payload(p, report=r))
        assert [f.pts for f in fr] == p.frame_pts  # every frame there, in order
        n += len(fr)
        for k in ("concealed", "bad_packets", "black"):
            setattr(total, k, getattr(total, k) + getattr(r, k))
    assert n == 36
    # at most the lost GOP (12 frames) and the B-frames (2) before it in display order that are
    # decoded after its keyframe and refer to it
    assert total.bad_packets >= 1 and 1 <= total.concealed <= 12 + 2 and total.black == 0
    # frames kept on the GPU cannot be copied to conceal a loss: where NVDEC really decodes,
    # such a chunk is refused (the worker decodes it on the CPU); where the CPU decoder took
    # over (no GPU here) its frames are mended as usual
    from ffray.video import decode
    from ffray.video.decode import DeviceFramesUnfit

    payloads = list(iter_payloads(str(bad), index, plan_chunks(index, info.video.time_base, 0.5)))
    for p in payloads:
        assert [f.pts for f in decode_payload(p, hw_device=0, on_device=True)] == p.frame_pts
    real = decode.decoder_context
    monkeypatch.setattr(decode, "decoder_context",  # as if NVDEC ran: the same frames, on "device"
                        lambda codec, threads, hw, on_device=False: (real(codec, threads, None)[0], True))
    unfit = 0
    for p in payloads:
        try:
            assert [f.pts for f in decode_payload(p, hw_device=0, on_device=True)] == p.frame_pts
        except DeviceFramesUnfit:
            unfit += 1
    assert unfit >= 1
    assert [f.pts for f in decode_payload(payloads[0], hw_device=0)] == payloads[0].frame_pts


def test_damaged_job_finishes_in_one_attempt_per_chunk_with_a_warning(cluster, tmp_path, data_dir):
    clean = sample.write_video(tmp_path / "c.mp4", sample.pattern_frames(36), fps=25, gop=12,
                               audio=False)
    bad = tmp_path / "bad.mp4"
    A.damage_packets(clean, bad, [5, 20])
    ledger, res = swap(bad, tmp_path / "o.mp4", data_dir, actors=1, gpu_per_actor=1,
                       chunk_seconds=0.5)
    assert not _events(ledger) and res.retries == 0
    (w,) = [w for w in ledger.spec["warnings"] if "damaged input" in w]
    stats = [json.loads(p.read_text()) for p in sorted((ledger.root / "chunks").glob("*.json"))]
    concealed = sum(s["decode_report"]["concealed"] for s in stats)
    assert concealed >= 1 and f"{concealed} frame(s) could not be decoded" in w
    assert len(frames(tmp_path / "o.mp4")) == 36


def test_an_undecodable_chunk_fails_the_job_at_its_first_attempt(cluster, media):
    """A MediaError from a worker is the input's fault: the driver does not retry it."""
    import ray

    from ffray.cluster.driver import PoolOptions, Progress, run_pool
    from ffray.errors import JobFailed
    from tests.procs import UndecodableWorker

    info, index = probe(media.cfr_silent)
    chunks = plan_chunks(index, info.video.time_base, 0.5)
    events = []
    cls = ray.remote(UndecodableWorker)
    with pytest.raises(JobFailed, match="chunk 0: cannot open the h264 decoder.*not retried"):
        run_pool(lambda: cls.options(num_cpus=0).remote(),
                 iter_payloads(str(media.cfr_silent), index, chunks[:1]), lambda r: None,
                 PoolOptions(actors=1, max_attempts=3), Progress(60, 1),
                 on_event=lambda **kw: events.append(kw))
    assert [e["attempt"] for e in events if e["kind"] == "attempt_failed"] == [1]


def _cli(capsys, *args) -> tuple[int, str]:
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


def test_a_stream_of_which_nothing_decodes_is_refused_before_any_work(capsys, tmp_path):
    clean = sample.write_video(tmp_path / "c.mp4", sample.pattern_frames(12), fps=25, gop=100,
                               audio=False)
    bad = tmp_path / "bad.mp4"
    with av.open(str(clean)) as c:
        count = sum(1 for p in c.demux(video=0) if p.size)
    A.damage_packets(clean, bad, list(range(count)))
    rc, err = _cli(capsys, "swap", bad, "--processor", "identity", "-o", tmp_path / "o.mp4",
                   "--data-dir", tmp_path / "data")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and "could be decoded" in lines[0], err
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "data" / "jobs").exists()


def test_a_pixel_format_the_encoder_cannot_code_is_refused_before_any_work(capsys, tmp_path, media):
    for fmt, needle in (("rgb24", "cannot encode 320x240 rgb24"), ("nonsense", "unknown --pix-fmt")):
        rc, err = _cli(capsys, "swap", media.cfr_silent, "--processor", "identity", "-o",
                       tmp_path / "o.mp4", "--pix-fmt", fmt, "--data-dir", tmp_path / "data")
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert rc == 2 and len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "data" / "jobs").exists()
