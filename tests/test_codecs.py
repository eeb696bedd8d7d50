"""Codec processes: a chunk decoded and encoded in a process of its own gives the bytes the
in-process encoder gives; frames changed in the shared ring are the ones encoded; a bad chunk
fails with one line and its process is replaced; no codec process outlives its worker."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import av
import numpy as np
import pytest

from ffray.engine.codec_child import ChunkJob
from ffray.engine.codec_pool import CodecPool, ring_slots
from ffray.engine.frames import Frame, layout_for, planes
from ffray.errors import MediaError
from ffray.video.decode import decode_payload, iter_payloads
from ffray.video.encode import ChunkEncoder, EncodeSettings
from ffray.video.plan import plan_chunks
from ffray.video.probe import probe


@pytest.fixture(scope="module")
def chunk(media):
    info, index = probe(media.cfr_silent)
    chunks = plan_chunks(index, info.video.time_base, 1.0)
    payload = next(iter_payloads(str(media.cfr_silent), index, chunks[1:2]))
    return info.video, payload


def _job(video, payload, passthrough: bool) -> ChunkJob:
    return ChunkJob(payload=payload, encode=EncodeSettings(), rate=video.avg_rate,
                    pix_fmt=video.pix_fmt, encoder_threads=1, decoder_threads=1,
                    passthrough=passthrough)


def _in_process(video, payload) -> bytes:
    enc = ChunkEncoder(EncodeSettings(), payload.width, payload.height, payload.time_base,
                       video.avg_rate, payload.color, video.pix_fmt,
                       layout=layout_for(video.pix_fmt, video.width, video.height), threads=1)
    for f in decode_payload(payload, threads=1):
        enc.write_frame(Frame(decoded=f), f.pts)
    return enc.finish()


def _luma(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data), format="nut") as c:
        return [f.to_ndarray(format="gray") for f in c.decode(video=0)]


def test_codec_process_gives_the_in_process_bytes(chunk):
    video, payload = chunk
    lay = layout_for(video.pix_fmt, video.width, video.height)
    pool = CodecPool(lay, slots=1, ring=ring_slots(lay, 6))
    try:
        passthrough, st = pool.run(0, _job(video, payload, True))
        assert st["frames"] == payload.spec.frames and st["pid"] != os.getpid()

        def untouched(proc):  # every frame through the ring, none changed
            for seq, slot, _pts in proc.frames():
                proc.encode(seq, slot, False)

        ring, _ = pool.run(0, _job(video, payload, False), untouched)
    finally:
        pool.close()
    assert passthrough == ring == _in_process(video, payload)


def test_frames_changed_in_the_ring_are_encoded(chunk):
    video, payload = chunk
    lay = layout_for(video.pix_fmt, video.width, video.height)
    pool = CodecPool(lay, slots=1, ring=3)  # fewer slots than frames: slots are reused
    changed = []
    try:
        def paint_even(proc):
            for seq, slot, _pts in proc.frames():
                if seq % 2 == 0:
                    y, _, _ = planes(proc.views[slot], lay)
                    y[:16, :16] = 250
                    changed.append(seq)
                proc.encode(seq, slot, seq % 2 == 0)

        data, st = pool.run(0, _job(video, payload, False), paint_even)
    finally:
        pool.close()
    lumas = _luma(data)
    ref = [f.to_ndarray(format="gray") for f in decode_payload(payload)]
    assert len(lumas) == st["frames"] == payload.spec.frames > 3
    for i, (got, orig) in enumerate(zip(lumas, ref)):
        corner = float(got[2:14, 2:14].mean())
        if i in changed:
            assert corner > 235, (i, corner)
        else:
            assert abs(corner - float(orig[2:14, 2:14].mean())) < 12, (i, corner)


def test_frames_encoded_in_place_from_reused_slots_give_the_copied_bytes(chunk):
    """Changed 4:2:0 frames are encoded from their ring slot's memory (no copy), and the slot is
    written with the next decoded frame as soon as the encode call returns: the bytes must equal
    those of encoding a copy, and of encoding the decoded frames themselves."""
    from ffray.engine import frames as frames_mod

    video, payload = chunk
    lay = layout_for(video.pix_fmt, video.width, video.height)
    buf = np.arange(lay.nbytes, dtype=np.uint32).astype(np.uint8)
    wrapped = frames_mod.wrap(buf, lay)
    assert wrapped is not None  # the test video is 4:2:0 with even sizes
    assert np.array_equal(wrapped.to_ndarray().ravel(), buf)  # the same samples, I420 order
    buf[0] = 7
    assert wrapped.to_ndarray()[0, 0] == 7  # ... read from the buffer itself, not a copy

    def all_dirty(proc):
        for seq, slot, _pts in proc.frames():
            proc.encode(seq, slot, True)

    results = []
    for in_place in (True, False):  # in-process: a 2-slot ring, every frame changed
        ring = [np.empty(lay.nbytes, np.uint8) for _ in range(2)]
        enc = ChunkEncoder(EncodeSettings(), payload.width, payload.height, payload.time_base,
                           video.avg_rate, payload.color, video.pix_fmt, layout=lay, threads=1)
        enc.in_place = in_place
        for i, f in enumerate(decode_payload(payload, threads=1)):
            slot = ring[i % 2]
            frames_mod.unpack(f, lay, out=slot)
            enc.write_frame(Frame(decoded=f, host=slot, dirty=True), f.pts)
            slot[:] = 0  # reused at once
        results.append(enc.finish())
    assert results[0] == results[1] == _in_process(video, payload)
    pool = CodecPool(lay, slots=1, ring=3)  # the codec process: slots refilled by its decoder
    try:
        data, _ = pool.run(0, _job(video, payload, False), all_dirty)
    finally:
        pool.close()
    assert data == results[0]


def test_encode_only_chunks_take_frames_the_worker_decoded(chunk):
    """Worker-side decoding (``engine.sources``): the worker decodes, writes each frame into a
    ring slot it takes, and the codec process only encodes, freeing the slot when it has the
    frame. With a ring smaller than the chunk the worker must wait for freed slots; the bytes
    equal the in-process encode's. Frames given back unencoded (context frames) are not in the
    output and their slots are reused."""
    from ffray.engine.sources import cpu_frames
    from ffray.video.decode import DecodeReport

    video, payload = chunk
    lay = layout_for(video.pix_fmt, video.width, video.height)
    pool = CodecPool(lay, slots=1, ring=3)
    job = ChunkJob(payload=payload, encode=EncodeSettings(), rate=video.avg_rate,
                   pix_fmt=video.pix_fmt, encoder_threads=1, decoder_threads=1, encode_only=True)
    used: list[int] = []

    def put_all(proc, skip=0):
        for i, (pts, frame) in enumerate(cpu_frames(payload, proc, lay, DecodeReport())):
            slot = frame.slot
            assert frame.host is proc.views[slot] and not frame.dirty
            used.append(slot)
            if i < skip:
                proc.skip(i, slot)
            else:
                proc.encode(i, slot, True, pts)

    try:
        data, st = pool.run(0, job, put_all)
        assert st["decode_s"] == 0 and st["frames"] == payload.spec.frames
        assert sorted(set(used)) == [0, 1, 2] and len(used) == payload.spec.frames
        part, st2 = pool.run(0, job, lambda proc: put_all(proc, skip=2))
    finally:
        pool.close()
    assert data == _in_process(video, payload)
    assert st2["frames"] == payload.spec.frames - 2
    ref = [f.to_ndarray(format="gray") for f in decode_payload(payload)][2:]
    got = _luma(part)
    assert len(got) == len(ref)
    assert all(float(np.abs(a.astype(int) - b).mean()) < 3 for a, b in zip(got, ref))


def test_encode_only_slots_given_back_by_another_thread_wake_the_source(chunk):
    """Context frames come back from the sink thread while the source waits for a slot (a ring
    smaller than a chunk's context: 4K frames, 8 context frames): the waiting source must take
    them, not wait for the encoder alone."""
    import queue
    import threading

    from ffray.engine.sources import cpu_frames
    from ffray.video.decode import DecodeReport

    video, payload = chunk
    lay = layout_for(video.pix_fmt, video.width, video.height)
    pool = CodecPool(lay, slots=1, ring=3)
    job = ChunkJob(payload=payload, encode=EncodeSettings(), rate=video.avg_rate,
                   pix_fmt=video.pix_fmt, encoder_threads=1, decoder_threads=1, encode_only=True)
    context = 5  # more than the ring holds

    def body(proc):
        handed: queue.SimpleQueue = queue.SimpleQueue()

        def sink():
            for i in range(payload.spec.frames):
                pts, slot = handed.get()
                time.sleep(0.01)  # the source is waiting by now
                if i < context:
                    proc.skip(i, slot)
                else:
                    proc.encode(i, slot, True, pts)

        th = threading.Thread(target=sink)
        th.start()
        for pts, frame in cpu_frames(payload, proc, lay, DecodeReport()):
            handed.put((pts, frame.slot))
        th.join()

    done: list = []
    runner = threading.Thread(target=lambda: done.append(pool.run(0, job, body)), daemon=True)
    runner.start()
    runner.join(60)
    try:
        assert done, "the source waited for a slot the sink had given back"
        assert done[0][1]["frames"] == payload.spec.frames - context
    finally:
        pool.close()


def test_a_stage_failure_wakes_a_source_waiting_on_its_codec_process(chunk):
    """Every ring slot held by frames in the stages, the source waiting on the codec process for
    the next frame: when a stage fails those frames are dropped and no slot comes back, so the
    failure stops the codec process (``on_fail``) and the chunk fails with the stage's error
    instead of waiting for ever."""
    import threading

    from ffray.engine.chunk import run_chunk
    from ffray.engine.pipeline import Engine, StageError

    class Stuck:
        name, threads, batch, pure = "stuck", 1, 8, True

        def process(self, items):
            time.sleep(0.3)  # the source is waiting on the socket by now
            raise ValueError("stuck stage")

    video, payload = chunk
    lay = layout_for(video.pix_fmt, video.width, video.height)
    pool = CodecPool(lay, slots=1, ring=3)
    eng = Engine([Stuck()], queue_size=4)
    errors: list = []

    def body(proc):
        frames = ((seq, pts, Frame(host=proc.views[ring], slot=ring)) for seq, ring, pts in proc.frames())
        run_chunk(eng, 0, payload.spec.frames, 8, frames, lambda item: None, on_fail=proc.abort)

    def go():
        try:
            pool.run(0, _job(video, payload, False), body)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    th = threading.Thread(target=go, daemon=True)
    th.start()
    th.join(60)
    try:
        assert not th.is_alive(), "the source kept waiting after the chunk failed"
        assert len(errors) == 1 and isinstance(errors[0], StageError) and "stuck stage" in str(errors[0])
        data, st = pool.run(0, _job(video, payload, True))  # the slot works again (new process)
        assert st["frames"] == payload.spec.frames
    finally:
        pool.close()
        eng.close()


def test_payload_packets_carry_ffmpegs_zeroed_padding():
    """FFmpeg's decoders may read 64 bytes past a packet's end and need them zero;
    ``av.Packet(bytes)`` wraps the bytes object itself (what follows is Python's heap)."""
    import ctypes

    from ffray.video.decode import padded_packet

    data = bytes(range(256)) * 7
    pkt = padded_packet(data)
    assert bytes(pkt) == data and pkt.size == len(data)
    assert ctypes.string_at(pkt.buffer_ptr + pkt.size, 64) == bytes(64)
    assert padded_packet(b"").size == 0


def test_x264_runs_one_pinned_instruction_set(chunk, monkeypatch):
    """x264's bytes depend on the SIMD level it picks, and its AVX-512 path gave other bytes for
    the same chunk in a few runs of dozens: where the CPU has AVX2 every encoder is pinned to it
    (user x264-params are kept, an explicit asm= wins), and the same chunk encodes to the same
    bytes run after run."""
    from ffray.video import encode

    if encode.x264_asm():
        assert EncodeSettings().codec_options()["x264-params"] == f"asm={encode.X264_ASM}"
        mine = EncodeSettings(options={"x264-params": "keyint=30"}).codec_options()
        assert mine["x264-params"] == f"keyint=30:asm={encode.X264_ASM}"
    assert EncodeSettings(options={"x264-params": "asm=0"}).codec_options()["x264-params"] == "asm=0"
    assert "x264-params" not in EncodeSettings(codec="hevc").codec_options()
    video, payload = chunk
    runs = {_in_process(video, payload) for _ in range(24)}
    assert len(runs) == 1
    monkeypatch.setattr(encode, "_X264_NEEDS", frozenset({"no-such-cpu-flag"}))
    encode.x264_asm.cache_clear()
    try:
        assert "x264-params" not in EncodeSettings().codec_options()  # such CPUs: x264's choice
    finally:
        encode.x264_asm.cache_clear()


def test_sample_videos_are_the_same_bytes_every_time(tmp_path):
    """The demo's and the tests' sample writer pins x264's instruction set as the jobs do: on an
    AVX-512 VM, unpinned, three of the five test inputs came out as other bytes (other pixels)
    every time they were written in one process."""
    import hashlib

    from tests.media import make_media

    def packets(p) -> str:
        with av.open(str(p)) as c:
            return hashlib.md5(b"".join(bytes(k) for k in c.demux(video=0))).hexdigest()

    names = ("cfr_audio", "cfr_silent", "vfr_audio", "vfr_mkv", "faces_video")
    runs = []
    for i in range(3):
        (tmp_path / str(i)).mkdir()
        m = make_media(tmp_path / str(i))
        runs.append([packets(getattr(m, n)) for n in names])
    assert runs[0] == runs[1] == runs[2] and len(set(runs[0])) == len(names)


def test_a_bad_chunk_fails_in_one_line_and_its_process_is_replaced(chunk):
    video, payload = chunk
    lay = layout_for(video.pix_fmt, video.width, video.height)
    pool = CodecPool(lay, slots=1, ring=4)
    try:
        first = pool.get(0).pid
        bad = type(payload)(**{**payload.__dict__, "packets": payload.packets[:-3],
                               "pts": payload.pts[:-3], "dts": payload.dts[:-3]})
        with pytest.raises(MediaError, match="chunk 1: 3 of its .* frames have no packet") as e:
            pool.run(0, _job(video, bad, True))
        assert "\n" not in str(e.value)
        assert pool.get(0).pid != first
        data, st = pool.run(0, _job(video, payload, True))  # the new process works
        assert st["frames"] == payload.spec.frames
    finally:
        pool.close()


def test_codec_processes_run_below_the_workers_cpu_priority(chunk, monkeypatch):
    """The priority switch: with FFRAY_CODEC_NICE=N each codec process lowers its own priority
    (niceness + N, SCHED_BATCH) before any work, and still works; by default (CODEC_NICE) and
    with 0 it keeps the worker's."""
    from ffray.engine.codec_child import CODEC_NICE

    video, payload = chunk
    lay = layout_for(video.pix_fmt, video.width, video.height)
    for env, want in (("4", min(19, os.nice(0) + 4)), (None, min(19, os.nice(0) + CODEC_NICE)),
                      ("0", os.nice(0))):
        if env is None:
            monkeypatch.delenv("FFRAY_CODEC_NICE", raising=False)
        else:
            monkeypatch.setenv("FFRAY_CODEC_NICE", env)
        pool = CodecPool(lay, slots=1, ring=4)
        try:
            proc = pool.get(0)
            data, st = pool.run(0, _job(video, payload, True))
            assert st["frames"] == payload.spec.frames  # it works at that priority
            fields = open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()
            assert int(fields[16]) == want  # niceness (field 19 of /proc/PID/stat)
            lowered = want > os.nice(0)
            assert (int(fields[38]) == os.SCHED_BATCH) == lowered  # policy (field 41)
        finally:
            pool.close()


def test_rings_are_page_locked_once_and_unlocked_before_they_go(chunk):
    """The GPU backend page-locks each ring (``ops.pin``) so frames go up and down by DMA: every
    ring gets locked exactly once, a replaced process's new ring too, and each is unlocked
    before its mapping is closed. Here a recorder stands in for cudaHostRegister."""
    video, payload = chunk
    lay = layout_for(video.pix_fmt, video.width, video.height)
    log = []

    def pin(buf):
        addr = np.frombuffer(buf, np.uint8).ctypes.data
        log.append(("pin", addr, len(buf)))
        return lambda: log.append(("unpin", addr, len(buf)))

    pool = CodecPool(lay, slots=2, ring=3)
    try:
        pool.pin_rings(pin)
        pool.pin_rings(pin)  # again: nothing locked twice
        assert [e[0] for e in log] == ["pin", "pin"] and all(e[2] == 3 * lay.nbytes for e in log)
        assert pool.get(0).pinned and pool.get(1).pinned
        pool.discard(0)  # a failed chunk's process goes: its ring is unlocked, the new one locked
        assert pool.get(0).pinned and [e[0] for e in log] == ["pin", "pin", "unpin", "pin"]
        data, st = pool.run(0, _job(video, payload, True))  # and it works
        assert st["frames"] == payload.spec.frames
    finally:
        pool.close()
    pins = sorted(e[1:] for e in log if e[0] == "pin")
    assert len(pins) == 3 and pins == sorted(e[1:] for e in log if e[0] == "unpin")


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie is gone too
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_no_codec_process_outlives_a_killed_worker(tmp_path):
    code = ("import sys; from ffray.engine.codec_pool import CodecPool; "
            "from ffray.engine.frames import layout_for; "
            "p = CodecPool(layout_for('yuv420p', 64, 48), 2, 4); "
            "[p.get(i).wait_ready() for i in range(2)]; "
            "print(*p.pids(), flush=True); import time; time.sleep(60)")
    worker = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pids = [int(x) for x in worker.stdout.readline().split()]
    assert len(pids) == 2 and all(not _gone(p) for p in pids)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(_gone(p) for p in pids):
        time.sleep(0.1)
    assert all(_gone(p) for p in pids), pids


def test_nvdec_request_falls_back_to_the_same_frames(chunk):
    """``hw_device`` asks for NVDEC; where it cannot open (no GPU here, or a codec it lacks) the
    CPU decoder gives the chunk's frames, the same pixels, and the report says which ran."""
    from ffray.video.decode import DecodeReport, decoder_context

    video, payload = chunk
    _, on_gpu = decoder_context(payload.codec, 1, 0)
    soft_r, hw_r = DecodeReport(), DecodeReport()
    soft = [f.to_ndarray() for f in decode_payload(payload, 1, soft_r)]
    hw = [f.reformat(format=video.pix_fmt).to_ndarray()
          for f in decode_payload(payload, 1, hw_r, hw_device=0)]
    assert len(soft) == len(hw) == payload.spec.frames
    assert all(np.array_equal(a, b) for a, b in zip(soft, hw))
    assert not soft_r.hardware and hw_r.hardware == on_gpu
    assert decoder_context("rawvideo", 1, 0)[1] is False  # NVDEC has no such codec


@pytest.mark.parametrize("size", [(64, 48), (66, 50)])
def test_nv12_frames_unpack_like_planar_ones(size):
    """NVDEC's NV12 frames go into the ring with their chroma de-interleaved: the same bytes as
    the planar frame (and as swscale's NV12 -> yuv420p)."""
    from ffray.engine.frames import unpack

    w, h = size
    img = np.random.default_rng(w).integers(0, 256, (h, w, 3), np.uint8)
    planar = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p")
    lay = layout_for("yuv420p", w, h)
    want = unpack(planar, lay)
    assert np.array_equal(unpack(planar.reformat(format="nv12"), lay), want)
    assert np.array_equal(unpack(planar.reformat(format="nv12").reformat(format="yuv420p"), lay), want)


def test_slot_cpus_spread_the_slots_over_the_mask():
    from ffray.engine.codec_pool import slot_cpus

    mask = [0, 1, 2, 3, 8, 9]  # a sparse mask: the CPUs a container or Ray gave the worker
    assert slot_cpus(0, 0, mask) is None  # off: the kernel places them
    assert [slot_cpus(i, 1, mask) for i in range(7)] == [(0,), (1,), (2,), (3,), (8,), (9,), (0,)]
    assert [slot_cpus(i, 2, mask) for i in range(4)] == [(0, 1), (2, 3), (8, 9), (0, 1)]
    assert slot_cpus(1, 4, mask) == (0, 1, 8, 9)  # wraps
    assert slot_cpus(0, 9, mask) == tuple(mask)  # never more than the mask


def _pool_with(chunk, monkeypatch, switch: str):
    """A two-slot pool started with ``switch``=1: (video, payload, the CPU mask, pool)."""
    video, payload = chunk
    lay = layout_for(video.pix_fmt, video.width, video.height)
    monkeypatch.setenv(switch, "1")
    return video, payload, sorted(os.sched_getaffinity(0)), CodecPool(lay, slots=2,
                                                                       ring=ring_slots(lay, 6))


def test_worker_cpus_split_the_mask_between_the_worker_and_its_codec_processes():
    from ffray.engine.codec_pool import split_cpus

    assert split_cpus([9, 8, 3, 2, 1, 0], 2) == ((8, 9), (0, 1, 2, 3))  # the last CPUs: the worker's
    assert split_cpus([0, 1], 1) == ((1,), (0,))
    assert split_cpus([0, 1, 2], 0) is None and split_cpus([0, 1], 2) is None  # off; nothing left
    assert split_cpus([0], 1) is None


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="Linux affinity calls, two CPUs")
def test_worker_cpus_keep_codec_processes_off_the_workers_cpus(chunk, monkeypatch):
    """FFRAY_WORKER_CPUS=1: the pool's codec processes (a replaced one too) run on every CPU but
    the last, which it names as the worker's; ``pin_to`` moves every thread of a process, and a
    thread started after it inherits the mask. The chunk's bytes are the unpinned ones."""
    video, payload, mask, pool = _pool_with(chunk, monkeypatch, "FFRAY_WORKER_CPUS")
    try:
        assert pool.worker_cpus == (mask[-1],)
        pool.get(1).kill()  # a process that died: its replacement gets the same CPUs
        data, _ = pool.run(1, _job(video, payload, passthrough=True))
        pool.get(0).wait_ready()
        for pid in pool.pids():
            for tid in os.listdir(f"/proc/{pid}/task"):
                assert os.sched_getaffinity(int(tid)) == set(mask[:-1]), (pid, tid)
    finally:
        pool.close()
    assert data == _in_process(video, payload)
    # the worker's side, in a process of its own: threads already running and started after
    code = ("import os, threading\n"
            "from ffray.engine.codec_child import pin_to\n"
            "ev = threading.Event(); t = threading.Thread(target=ev.wait); t.start()\n"
            f"pin_to('{mask[-1]}')\n"
            "seen = []; u = threading.Thread(target=lambda: seen.append(os.sched_getaffinity(0)))\n"
            "u.start(); u.join()\n"
            "print(sorted({min(os.sched_getaffinity(int(x))) for x in os.listdir('/proc/self/task')}),"
            " sorted(seen[0])); ev.set()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == [f"[{mask[-1]}]", f"[{mask[-1]}]"], out


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux affinity calls")
def test_pinned_codec_processes_run_on_their_cpus(chunk, monkeypatch):
    """FFRAY_CODEC_AFFINITY=1: every thread of a slot's codec process, the decoder's and the
    encoder's included, runs on that slot's CPU, and the chunk's bytes are the unpinned ones."""
    video, payload, mask, pool = _pool_with(chunk, monkeypatch, "FFRAY_CODEC_AFFINITY")
    try:
        data, _ = pool.run(1, _job(video, payload, passthrough=True))
        pool.get(0).wait_ready()  # slot 0 ran nothing: it may still be starting (and unpinned)
        for slot, pid in enumerate(pool.pids()):
            want = {mask[slot % len(mask)]}
            for tid in os.listdir(f"/proc/{pid}/task"):
                assert os.sched_getaffinity(int(tid)) == want, (slot, tid)
    finally:
        pool.close()
    assert data == _in_process(video, payload)


def test_rings_lock_in_the_background_and_close_waits_for_a_locking(chunk):
    """``pin_rings`` returns while the page-locking still runs (the worker is
    ready without waiting for it), a chunk runs on a ring that is not locked yet (its frames are
    staged: the same bytes), every ring ends locked, and ``close`` waits for a locking in progress
    and unlocks every ring it locked."""
    import threading

    video, payload = chunk
    lay = layout_for(video.pix_fmt, video.width, video.height)
    pool = CodecPool(lay, slots=3, ring=ring_slots(lay, 6))
    go, locked, unlocked = threading.Event(), [], []

    def pin(buf):
        assert go.wait(timeout=60)
        locked.append(id(buf))
        return lambda: unlocked.append(id(buf))

    try:
        pool.pin_rings(pin)
        assert locked == []  # returned with every locking still waiting
        procs = [pool.get(i) for i in range(3)]
        assert not any(p.pinned for p in procs)
        data, _ = pool.run(2, _job(video, payload, passthrough=True))
        go.set()
        pool._pinning.join(timeout=60)
        assert len(locked) == 3 and all(p.pinned for p in procs)
    finally:
        go.set()
        pool.close()
    assert sorted(unlocked) == sorted(locked) and not any(p.pinned for p in procs)
    assert data == _in_process(video, payload)

    # close while a locking blocks: it waits for it, then unlocks
    pool = CodecPool(lay, slots=1, ring=ring_slots(lay, 6))
    go.clear()
    locked.clear()
    unlocked.clear()
    pool.pin_rings(pin)
    closer = threading.Thread(target=pool.close)
    closer.start()
    closer.join(timeout=0.5)
    assert closer.is_alive()  # held by the locking in progress
    go.set()
    closer.join(timeout=60)
    assert not closer.is_alive() and len(locked) == 1 and unlocked == locked
