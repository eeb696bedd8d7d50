"""The same input and options give byte-identical output whatever the layout: one worker or
several, many chunks at once or one (fixed encoder threads and parameters, batch results that do
not depend on which frames shared a batch)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tests.media import swap


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("processor", ["identity", "stamp"])
def test_output_is_byte_identical_across_layouts(processor, cluster, media, data_dir, tmp_path):
    """On a tapered plan (whole and half-length chunks, as a long video's default plan has);
    ``stamp``: a BGR processor (YUV -> BGR -> processor -> YUV in the worker)."""
    outs = []
    for i, layout in enumerate([dict(actors=1, slots=None), dict(actors=3, slots=1),
                                dict(actors=2, slots=4)]):
        out = tmp_path / f"id{i}.mp4"
        ledger, res = swap(media.faces_video, out, data_dir / str(i), processor=processor,
                           gpu_per_actor=1, chunk_seconds=0.3, chunk_taper=0.5, **layout)
        plan = [c.frames for c in ledger.load_plan()]
        assert res.chunks >= 4 and max(plan[-3:]) < min(plan[:2]), plan
        assert len({s["actor_id"] for s in ledger.chunk_stats()}) == min(layout["actors"], res.chunks)
        outs.append(out)
    assert len({_md5(o) for o in outs}) == 1


@pytest.mark.parametrize("suffix,muxer", [(".mkv", "matroska"), (".mov", "mov")])
def test_other_containers_are_byte_identical_run_to_run(suffix, muxer, cluster, media, data_dir,
                                                       tmp_path):
    """Matroska's muxer writes the date and a random segment UID unless told ``bitexact``: two
    runs of one job (one worker, then two) give the same file, audio included; MOV too."""
    import av

    outs = [tmp_path / f"m{i}{suffix}" for i in range(2)]
    for i, out in enumerate(outs):
        swap(media.vfr_mkv, out, data_dir / f"m{i}", processor="stamp", actors=1 + i,
             gpu_per_actor=1, chunk_seconds=0.5)
    with av.open(str(outs[0])) as c:
        assert [s.type for s in c.streams] == ["video", "audio"] and muxer in c.format.name
    assert _md5(outs[0]) == _md5(outs[1])


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Two 'people' for the contract detector and a source, plus the contract models."""
    import cv2

    from ffray.video.sample import write_video
    from scripts.make_test_models import write_all

    d = tmp_path_factory.mktemp("scene")
    write_all(d / "models")

    def frames():
        for i in range(30):
            f = np.full((240, 320, 3), 30, np.uint8)
            f[90:150, 40 + 2 * i:100 + 2 * i] = (255, 255, 255)
            f[100:160, 200 - 2 * i:260 - 2 * i] = (40, 40, 250)
            yield f
    video = write_video(d / "people.mp4", frames(), fps=20, gop=10, audio=False, crf=12)
    src = np.zeros((200, 200, 3), np.uint8)
    src[68:132, 68:132] = (0, 255, 255)
    cv2.imwrite(str(d / "s.png"), src)
    return video, d / "s.png", d / "models"


FACESWAP = dict(processor="faceswap", params={"detector": "auto", "swapper": "auto"},
                gpu_per_actor=1, chunk_seconds=0.3)


@pytest.fixture(scope="module")
def calm(cluster, scene, tmp_path_factory):
    """The reference: the faceswap job at the default layout (one worker, its derived chunks in
    flight, codec processes), run once for the tests below to compare their bytes with."""
    video, source, models = scene
    d = tmp_path_factory.mktemp("calm")
    ledger, res = swap(video, d / "calm.mp4", d / "data", sources=[str(source)],
                       model_dirs=[str(models)], actors=1, telemetry=False, **FACESWAP)
    assert ledger.spec["pipeline"].startswith("scrfd detector + inswapper swapper")
    assert sum(s["stages"]["faces_swapped"] for s in ledger.chunk_stats()) > 30
    assert res.chunks >= 3 and ledger.load_plan()[1].context > 0  # chunks skip context frames
    return _md5(d / "calm.mp4")


def test_faceswap_output_is_byte_identical_across_layouts(calm, scene, data_dir, tmp_path):
    """Three workers with one chunk each in flight (telemetry on), and in-process codecs: both
    give the default layout's bytes."""
    video, source, models = scene
    for i, layout in enumerate([dict(actors=3, slots=1),
                                dict(actors=1, slots=None, codec_processes=False, telemetry=False)]):
        out = tmp_path / f"fs{i}.mp4"
        ledger, res = swap(video, out, data_dir / str(i), sources=[str(source)],
                           model_dirs=[str(models)], **FACESWAP, **layout)
        assert sum(s["stages"]["faces_swapped"] for s in ledger.chunk_stats()) > 30
        if layout["actors"] > 1:
            assert len({s["actor_id"] for s in ledger.chunk_stats()}) == 3
        assert _md5(out) == calm, layout


def test_worker_side_decoding_gives_the_same_bytes(calm, scene, data_dir, tmp_path, monkeypatch):
    """FFRAY_WORKER_DECODE (an experiment switch, set on the driver and passed to the workers'
    environment): the worker decodes and its codec processes only encode. With the CPU decoder
    (the NVDEC source needs a GPU) the output is byte for byte the default path's."""
    from ffray.cluster.worker import experiment_env

    video, source, models = scene
    monkeypatch.delenv("FFRAY_WORKER_DECODE", raising=False)
    assert "FFRAY_WORKER_DECODE" not in experiment_env()  # the reference ran without it
    monkeypatch.setenv("FFRAY_WORKER_DECODE", "cpu")
    assert experiment_env()["FFRAY_WORKER_DECODE"] == "cpu"
    ledger, res = swap(video, tmp_path / "b.mp4", data_dir / "b", sources=[str(source)],
                       model_dirs=[str(models)], actors=1, telemetry=False, **FACESWAP)
    stats = ledger.chunk_stats()
    assert res.chunks >= 3 and all(s["decode_report"].get("worker_decoded") == "cpu" for s in stats)
    assert sum(s["stages"]["faces_swapped"] for s in stats) > 30
    assert sum(s["frames"] for s in stats) == res.frames
    assert _md5(tmp_path / "b.mp4") == calm


def test_a_worker_killed_mid_chunk_changes_nothing_in_the_output(calm, scene, data_dir, tmp_path):
    """SIGKILL a busy worker while its chunks run: they are redone elsewhere and the output is
    byte for byte the undisturbed run's."""
    import os
    import signal
    import threading

    import psutil

    from ffray.cluster.jobs import SwapRequest, prepare_swap, run_job
    from ffray.processors import ProcessorSpec

    video, source, models = scene
    out = tmp_path / "hit.mp4"
    ledger = prepare_swap(SwapRequest(
        input=str(video), output=str(out),
        processor=ProcessorSpec(kind="faceswap", params=FACESWAP["params"], batch_size=4),
        gpu_per_actor=1, chunk_seconds=FACESWAP["chunk_seconds"], sources=[str(source)],
        model_dirs=[str(models)], actors=2, telemetry=False), data_dir / "hit")
    got: dict = {}
    t = threading.Thread(target=lambda: got.update(res=run_job(ledger)))
    t.start()
    victim = None
    while t.is_alive() and victim is None:
        if ledger.chunk_stats():  # the workers are up and busy: kill one that is in a chunk
            busy = [p for p in psutil.process_iter(["name"])
                    if p.info["name"] == "ray::ChunkWorker.process"]
            if busy:
                victim = busy[0].pid
                os.kill(victim, signal.SIGKILL)
        t.join(0.02)
    t.join(240)
    assert victim is not None and "res" in got, got
    events = ledger.events()
    assert any(e["kind"] == "actor_died" for e in events)
    assert any(e["kind"] == "attempt_failed" and "worker died" in e["reason"] for e in events)
    assert victim not in {s["pid"] for s in ledger.chunk_stats() if s["attempt"] > 1}
    assert _md5(out) == calm
