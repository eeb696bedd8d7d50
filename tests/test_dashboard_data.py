"""The dashboard's data layer and page builders on a data dir written through the real telemetry
API (tests/store_data.py): values must equal what was constructed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from dashboard.data import Data
from tests import store_data as sd


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = sd.build(tmp_path_factory.mktemp("store"))
    return Data(str(root), root)


def _t(s: float) -> datetime:
    return datetime.fromtimestamp(sd.T0 + s, tz=timezone.utc)


def test_job_list_totals_equal_the_constructed_costs(data):
    rows = {j["job_id"]: j for j in data.jobs()}
    assert set(rows) == {"job-a", "job-b"}
    for job in rows:
        want, got = sd.expected(job), rows[job]
        assert got["gpu_seconds"] == pytest.approx(want["gpu_seconds"])
        assert got["energy_j"] == pytest.approx(want["energy_j"])
        assert got["peak_mem_process"] == want["peak_mem_process"]
        assert got["failed_attempts"] == want["failed"]
        assert got["faces_per_frame"] == pytest.approx(want["faces"] / want["frames"])
        assert got["gpus_used"] == 2 and got["status"] == "done"
    assert rows["job-a"]["retries"] == 1 and rows["job-b"]["retries"] == 0


def test_job_detail_has_every_attempt_with_its_gpu_and_cost(data):
    job, chunks, trend, bucket, labels = data.job_detail("job-a")
    assert labels == {sd.uuid("n0", 0): "n0 · GPU0", sd.uuid("n0", 1): "n0 · GPU1"}
    assert [(c["chunk"], c["attempt"], c["status"]) for c in chunks] == [
        (0, 1, "done"), (1, 1, "failed"), (1, 2, "done"), (2, 1, "done"), (3, 1, "done")]
    c = {(r["chunk"], r["attempt"]): r for r in chunks}
    assert c[(1, 2)]["gpu_uuid"] == sd.uuid("n0", 1) and c[(1, 1)]["gpu_uuid"] is None
    assert c[(1, 2)]["energy_j"] == pytest.approx(20 * sd.WATTS["n0"])
    assert c[(3, 1)]["peak_mem_process"] == sd.PROC_MEM[("n0", 1)]
    assert c[(0, 1)]["mean_util"] == pytest.approx(90.0) and c[(0, 1)]["samples"] == 21
    # the job's curves cover only the GPUs it used, over its window
    assert set(trend["series"].to_pylist()) == {sd.uuid("n0", 0), sd.uuid("n0", 1)}
    assert min(trend["bucket"].to_pylist()) <= _t(10) and max(trend["bucket"].to_pylist()) >= _t(55)
    assert data.job_detail("nope") is None and data.job_detail("../etc") is None


def test_report_files_only_for_known_jobs_and_names(data, tmp_path):
    led = tmp_path / "jobs" / "job-a" / "report"
    led.mkdir(parents=True)
    (led / "trend.png").write_bytes(b"\x89PNG")
    (tmp_path / "secret.txt").write_text("x")
    d = Data(data.target, tmp_path)
    assert d.report_file("job-a", "trend.png") == led / "trend.png"
    assert d.report_file("job-a", "../../secret.txt") is None
    assert d.report_file("..", "trend.png") is None and d.report_file("job-b", "trend.png") is None


def test_gpu_share_splits_energy_and_time_window_is_padded(data):
    job, chunks, trend, bucket, _ = data.job_detail("job-b")
    assert bucket >= 1 and job["gpu_model"] == "Fake H100"
    lo = min(trend["bucket"].to_pylist())
    assert _t(60) - timedelta(seconds=5 + bucket) <= lo <= _t(60)


def test_workers_sharing_a_gpu_get_their_own_timeline_lanes():
    from ffray.analytics.costs import worker_lanes

    t = [_t(s) for s in range(6)]

    def c(chunk, actor, start, gpu="GPU-a", status="done", node="n0"):
        return {"chunk": chunk, "attempt": 1, "status": status, "gpu_uuid": gpu if status == "done" else None,
                "actor_id": actor, "node": node, "start": t[start]}

    chunks = [c(0, "x", 1), c(1, "y", 0), c(2, "x", 3), c(3, "z", 2, gpu="GPU-b"),
              c(4, None, 4, status="failed", node=None), c(5, "w", 5, gpu=None)]
    assert worker_lanes(chunks) == [("GPU-a", 1, 2, "worker 2"), ("GPU-a", 0, 2, "worker 1"),
                                    ("GPU-a", 1, 2, "worker 2"), ("GPU-b", 0, 1, ""),
                                    ("failed", 0, 1, ""), ("cpu:n0", 0, 1, "")]
    # a failed attempt that says where it ran (newer ledgers) takes a lane of its worker
    placed = {**chunks[4], "gpu_uuid": "GPU-b", "actor_id": "z", "node": "n0"}
    assert worker_lanes(chunks[:4] + [placed])[4][0] == "GPU-b"
    from dashboard.figures import lane_label

    labels = {"GPU-a": "n0 · GPU0"}
    assert [lane_label(r, labels, ln) for r, ln in zip(chunks, worker_lanes(chunks))][:2] == [
        "n0 · GPU0 · worker 2", "n0 · GPU0 · worker 1"]
    # one worker running three chunks at once, then a fourth when the first slot is free: spans
    # never share a lane while they overlap
    t = [_t(s) for s in range(12)]

    def s(chunk, start, end):
        return {"chunk": chunk, "attempt": 1, "status": "done", "gpu_uuid": "GPU-a", "actor_id": "x",
                "node": "n0", "start": t[start], "end": t[end]}
    lanes = worker_lanes([s(0, 0, 4), s(1, 1, 6), s(2, 2, 5), s(3, 4, 8), s(4, 6, 9)])
    assert [(ln[1], ln[3]) for ln in lanes] == [(0, "slot 1"), (1, "slot 2"), (2, "slot 3"),
                                               (0, "slot 1"), (1, "slot 2")]
    assert {ln[2] for ln in lanes} == {3}


def test_the_cluster_page_draws_a_finished_jobs_last_bucket(tmp_path):
    """Preset windows draw whole buckets only. While a recorder runs (an open journal), the
    bucket holding the last sample waits (a journal roll may still add to it; live refresh appends
    it later); once none runs it is drawn: a short job that ended within one bucket was never
    drawn at all."""
    from dashboard.clusterview import last_bucket_end
    from ffray.telemetry.store import TelemetryStore

    t = datetime(2026, 12, 2, 16, 20, 38, 870000, tzinfo=timezone.utc)  # last sample + 1 s
    bucket = datetime(2026, 12, 2, 16, 20, 40, tzinfo=timezone.utc)
    assert last_bucket_end(t, 10, done=True) == bucket
    assert last_bucket_end(t, 10, done=False) == bucket - timedelta(seconds=10)
    assert last_bucket_end(bucket, 10, done=True) == last_bucket_end(bucket, 10, done=False) == bucket
    data = Data(str(tmp_path), tmp_path)
    assert not data.recording()
    store = TelemetryStore(tmp_path / "telemetry", "n1", roll_seconds=3600)
    store.append({"host": [{"ts": t, "node": "n1", "cpu_percent": 5.0}]}, t.timestamp())
    assert data.recording()  # its journal is open
    store.close()
    assert not data.recording() and Data("s3://bucket/x", tmp_path).recording()


def test_a_series_of_one_or_two_buckets_is_drawn_with_markers():
    """plotly draws no line through a single point: a short job's series (one bucket) would show
    as an empty chart, so few-point series get markers; longer ones stay plain lines."""
    import pyarrow as pa

    from dashboard.trends import line_figure
    from ffray.analytics.metrics import METRICS

    t0 = datetime(2026, 12, 2, 16, 20, tzinfo=timezone.utc)
    rows = [("a", t0)] + [("b", t0 + timedelta(seconds=10 * i)) for i in range(6)]
    table = pa.table({"series": [r[0] for r in rows], "bucket": [r[1] for r in rows],
                      **{f"worker_cpu_{s}": [50.0] * len(rows) for s in ("mean", "min", "max")}})
    fig = line_figure(table, METRICS["worker_cpu"], {}, bucket_s=10)
    assert [(t["uid"], t["mode"], len(t["x"])) for t in fig["data"]] == \
        [("a", "lines+markers", 1), ("b", "lines", 6)]
