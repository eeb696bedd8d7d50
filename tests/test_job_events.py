"""Key events derived from a job's attempts and GPU curves (ffray.analytics.events), the CPU job's
timeline figure, failed attempts' places, the submission id of job records, the submitted-jobs
join, and the live GPU utilization of the progress line."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from ffray.analytics import events as ev
from tests import cpu_store

T = datetime(2026, 11, 18, 12, 0, tzinfo=timezone.utc)


def chunk(i, start, seconds, frames=100, faces=100, util=None, samples=0, status="done", attempt=1,
          node="n0", gpu="GPU-aaaa0000"):
    return {"chunk": i, "attempt": attempt, "status": status, "start": T + timedelta(seconds=start),
            "end": T + timedelta(seconds=start + seconds), "seconds": float(seconds), "frames": frames,
            "faces_detected": faces, "mean_util": util, "samples": samples, "node": node,
            "gpu_uuid": gpu, "throttled_share": 0.0}


def test_faces_change_says_when_in_the_video_and_that_the_gpu_saturated():
    chunks = [chunk(i, 10 * i, 10, faces=100, util=60.0, samples=10) for i in range(3)]
    chunks += [chunk(i, 10 * i, 20, faces=200, util=97.0, samples=20) for i in range(3, 6)]
    found = ev.faces_changes(chunks, fps=25.0)
    assert [e.chunk for e in found] == [3]  # one change, where the two-face part starts
    # 3 chunks x 100 frames at 25 frames/s before it: 0:12 of video
    assert found[0].text == "from 0:12 the video has two faces per frame (one before): GPU saturated " \
        "(mean util 97 %)"
    assert found[0].start == chunks[3]["start"]
    back = chunks + [chunk(6, 60, 10, faces=100, util=60.0, samples=10)]
    assert [e.text.split(":")[0] for e in ev.faces_changes(back, fps=25.0)] == ["from 0", "from 0"]
    assert ev.faces_changes(chunks[:3], fps=25.0) == []  # no change, no event


def test_a_one_chunk_flap_of_faces_is_noise_and_many_throttled_chunks_are_one_event():
    faces = [100, 100, 100, 200, 100, 100, 300, 300, 300]  # chunk 3 flaps to two faces for one chunk
    chunks = [chunk(i, 10 * i, 10, faces=f) for i, f in enumerate(faces)]
    found = ev.faces_changes(chunks, fps=25.0)
    assert [(e.chunk, e.text.split(" per frame")[0]) for e in found] == \
        [(6, "from 0:24 the video has three faces")]
    hot = [{**c, "throttled_share": 1.0} for c in chunks]
    assert len(ev.throttled(hot[:ev.MAX_THROTTLED])) == ev.MAX_THROTTLED
    one = ev.throttled(hot)
    assert len(one) == 1 and one[0].text.startswith("9 chunks (0, 1, 2 and 6 more)")


def test_retry_events_name_where_the_attempt_ran_and_where_it_ran_next():
    chunks = [chunk(0, 0, 5), chunk(1, 0, 2, status="failed", node="n1", gpu="GPU-bbbb1111"),
              chunk(1, 3, 5, attempt=2, node="n0", gpu="GPU-aaaa0000"),
              chunk(2, 0, 1, status="failed", node=None, gpu=None)]
    texts = [e.text for e in ev.retries(chunks)]
    assert texts == ["chunk 1: attempt 1 failed on n1 · GPU bbbb1111 after 2.0 s, retried on "
                     "n0 · GPU aaaa0000",
                     "chunk 2: attempt 1 failed after 1.0 s, not retried"]  # no place: none said


def test_saturated_periods_need_the_level_for_the_minimum_time():
    buckets = [(T + timedelta(seconds=s), u) for s, u in
               enumerate([50, 95, 96, 97, 98, 99, 95, 96, 97, 98, 99, 40, 99, 99])]
    found = ev.saturated_periods(buckets, 1.0, level=90.0, min_s=10.0)
    assert len(found) == 1  # 10 s at >= 90 %; the 2 s at the end are too short
    assert (found[0].start, found[0].end) == (buckets[1][0], buckets[11][0])
    assert found[0].text == "GPUs saturated for 10 s (mean util 97 %)"
    gap = buckets[:5] + buckets[7:11]  # a missing bucket breaks the run
    assert ev.saturated_periods(gap, 1.0, level=90.0, min_s=5.0) == []


def test_job_buckets_average_the_jobs_gpus():
    t = pa.table({"series": ["a", "b", "a", "b"], "bucket": [T, T, T + timedelta(seconds=1)] * 1 +
                  [T + timedelta(seconds=1)], "util_mean": [80.0, 100.0, 10.0, None]})
    assert ev.job_buckets(t) == [(T, 90.0), (T + timedelta(seconds=1), 10.0)]


def test_slow_chunks_are_throughput_drops_against_the_median():
    chunks = [chunk(i, i, 4) for i in range(5)] + [chunk(5, 5, 10, faces=300)]
    found = ev.slow_chunks(chunks)
    assert [e.chunk for e in found] == [5]
    assert found[0].text == "chunk 5: 10.0 frames/s, 2.5x the median time per frame, 3.0 faces per frame"


def test_events_of_a_cpu_job_from_the_store(tmp_path):
    """The constructed CPU job through the real store and attribution query."""
    from ffray.analytics.costs import chunk_costs
    from ffray.analytics.source import Store

    root = cpu_store.build(tmp_path)
    store = Store(root)
    try:
        chunks = chunk_costs(store, "cpu-job").to_pylist()
    finally:
        store.close()
    found = ev.job_events(chunks, None, 1.0, cpu_store.FPS)
    kinds = [e.kind for e in found]
    assert kinds.count("faces") == 1 and kinds.count("retry") == 1 and "saturated" not in kinds
    faces = next(e for e in found if e.kind == "faces")
    start = 4 * cpu_store.FRAMES / cpu_store.FPS  # 4 one-face chunks before the two-face part
    assert faces.text.startswith(f"from {ev.clock(start)} the video has two faces per frame (one before)")
    assert faces.text.endswith(": 2.0x the time per frame")  # 16 s vs 8 s per 100 frames
    retry = next(e for e in found if e.kind == "retry")
    assert retry.text == "chunk 5: attempt 1 failed on cpu0 · CPU after 3.0 s, retried on cpu0 · CPU"
    assert [e.start for e in found] == sorted(e.start for e in found)


def test_cpu_job_figure_is_on_real_time_with_worker_lanes(tmp_path):
    from dashboard.data import Data
    from dashboard.pages.jobs import job_layout
    from dashboard.timeline import CPU_NOTE, job_figure

    root = cpu_store.build(tmp_path)
    data = Data(str(root), root)
    job, chunks, trend, bucket, labels = data.job_detail("cpu-job")
    host, _ = data.job_host("cpu-job")
    fig = job_figure(chunks, trend, labels, host, ev.job_events(chunks, trend, bucket, cpu_store.FPS))
    bars = [t for t in fig["data"] if t["type"] == "bar"]
    assert sum(len(t["y"]) for t in bars) == len(cpu_store.CHUNKS)  # the failed attempt too
    lanes = fig["layout"]["yaxis3"]["categoryarray"]
    assert lanes == [f"cpu0 · CPU · worker {w} · slot {s}" for w in (1, 2) for s in (1, 2)]
    failed = next(t for t in bars if t["name"] == "chunks: failed")
    assert failed["y"] == ["cpu0 · CPU · worker 2 · slot 1"]  # w2, where it failed
    t0 = datetime.fromtimestamp(cpu_store.T0, tz=timezone.utc).replace(tzinfo=None)
    for t in bars:  # bars start at the spans' real times (the axis is dates, not 1970)
        assert all(t0 <= datetime.fromisoformat(b) <= t0 + timedelta(seconds=60) for b in t["base"])
    lines = [t for t in fig["data"] if t["type"] == "scatter"]
    assert {t["yaxis"] for t in lines} == {"y", "y2"} and max(lines[0]["y"]) == pytest.approx(95.0)
    from dashboard.colours import series_colour  # a series has the cluster page's colour
    keys = {labels.get(k, k): k for k in host["series"].to_pylist()}
    assert all(t["line"]["color"] == series_colour(keys[t["name"]]) for t in lines)
    texts = [a["text"] for a in fig["layout"]["annotations"]]
    assert any(CPU_NOTE in t for t in texts)
    assert all(a["xref"] in ("x", "paper") for a in fig["layout"]["annotations"])  # never "x domain"
    assert any(t.startswith("from 0:16 the video has two faces") for t in texts)
    assert "Key events" in str(job_layout(data, "cpu-job"))


def test_failed_attempt_spans_keep_their_place_and_job_records_their_submission():
    from ffray.cluster.driver import where
    from ffray.telemetry.spans import job_record, span_rows, submission_id

    info = {"node": "h1", "node_id": "ff" * 28, "actor_id": "act", "pid": 7, "gpu_uuids": ["GPU-x"]}
    rows = span_rows("j", [], [{"kind": "attempt_failed", "chunk": 3, "attempt": 1, "submitted": 1.0,
                                "time": 2.0, **where(info)}])
    assert {k: rows[0][k] for k in ("node", "ray_node", "gpu_uuid", "pid", "actor_id")} == \
        {"node": "h1", "ray_node": "ff" * 28, "gpu_uuid": "GPU-x", "pid": 7, "actor_id": "act"}
    env = {"RAY_JOB_CONFIG_JSON_ENV_VAR": '{"runtime_env": {}, "metadata": '
                                          '{"job_submission_id": "ffray-clip-1a2b3c4d", "job_name": "x"}}'}
    assert submission_id(env) == "ffray-clip-1a2b3c4d"
    assert submission_id({}) is None and submission_id({"RAY_JOB_CONFIG_JSON_ENV_VAR": "{bad"}) is None
    rec = job_record({"job_id": "j"}, 0, submission_id(env))
    assert rec["submission_id"] == "ffray-clip-1a2b3c4d"


def test_submitted_rows_join_the_records_their_drivers_published():
    from ffray.analytics.submitted import merge
    from ffray.cluster.jobprogress import JobProgress
    from ffray.cluster.submit import row

    log = JobProgress(120, 480, 3, 12, 24.5, 15).line() + "\n"
    meta = {"ffray": "swap", "input": "/v/a.mp4", "output": "/o/a.mp4"}
    rows = [row("ffray-a-1", "RUNNING", meta, "", log),
            row("ffray-b-2", "PENDING", {"ffray": "swap", "input": "/v/b.mp4", "output": "/o/b.mp4"}, ""),
            row("ffray-c-3", "RUNNING", {"ffray": "swap", "max_running": "1"}, "", "ffray: queued\n")]
    got = merge(rows, [{"job_id": "a-ledger", "submission_id": "ffray-a-1", "frames": 480},
                       {"job_id": "other", "submission_id": None}])
    assert [g.submission_id for g in got] == ["ffray-c-3", "ffray-b-2", "ffray-a-1"]  # newest first
    c, b, a = got
    assert (a.state, a.job_id, a.frames_done, a.frames_total) == ("running", "a-ledger", 120, 480)
    assert a.progress() == "120/480 frames (25 %), 24.5 frames/s, ETA 15 s"
    assert (b.state, b.job_id, b.progress()) == ("pending", None, "waiting for Ray to start its driver")
    assert (c.state, c.progress()) == ("queued", "waiting for a --max-running slot")


def test_progress_line_shows_the_gpus_utilization_or_cpu():
    from rich.console import Console

    from ffray.cluster.driver import Progress
    from ffray.cluster.jobtelemetry import job_utilization
    from ffray.progress import gpu_text, progress_bar

    p = Progress(total_frames=100, total_chunks=4)
    assert gpu_text(p) == ""  # no sample yet
    samples = [{"gpu_available": True, "util": {"GPU-a": 70.0, "GPU-b": 90.0, "GPU-other": 0.0}}]
    p.gpu_util, p.gpus = job_utilization(samples, {"GPU-a", "GPU-b"})
    assert gpu_text(p) == "GPU 80 %"  # the job's two GPUs, not the node's idle third
    p.gpu_util, p.gpus = job_utilization([{"gpu_available": False, "util": {}}], set())
    assert gpu_text(p) == "cpu"
    assert job_utilization([], {"GPU-a"}) == (None, None)
    out = io.StringIO()
    bar = progress_bar(Console(file=out, force_terminal=True, width=200))
    with bar:
        bar.add_task("swap", total=100, completed=40, fps=12.5, gpu="GPU 80 %", model_eta="", chunks="1/4",
                     inflight=2, retries=0)
    assert "12.5 fps GPU 80 %" in out.getvalue()


def test_recorder_keeps_its_last_samples_utilization(tmp_path):
    from ffray.telemetry.recorder import Recorder
    from tests.fake_nvml import FakeGpus

    gpus = FakeGpus(2)
    gpus.util = {0: 33.0, 1: 77.0}
    rec = Recorder(tmp_path, "n0", gpus)
    assert rec.latest() == {}
    rec.step(1000.0)
    rec.close()
    got = rec.latest()
    assert got["gpu_available"] and got["util"] == {"GPU-n0-00": 33.0, "GPU-n0-01": 77.0}
