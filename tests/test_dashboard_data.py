"""The dashboard's data layer and page builders on a data dir written through the real telemetry
API (tests/store_data.py): values must equal what was constructed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from dashboard.data import Data
from dashboard.pages import cluster, jobs
from ffray.analytics.queries import throttle_periods
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


def test_trends_buckets_and_throttle_periods(data):
    t = data.trends(_t(0), _t(120), 10)
    by = {}
    for s, b, u, n in zip(t["series"].to_pylist(), t["bucket"].to_pylist(), t["util_mean"].to_pylist(),
                          t["samples"].to_pylist()):
        by[(s, b)] = (u, n)
    assert len({s for s, _ in by}) == 4 and all(n == 10 for _, n in by.values())
    assert by[(sd.uuid("n0", 0), _t(10))] == (pytest.approx(90.0), 10)  # busy 10..30
    assert by[(sd.uuid("n1", 1), _t(100))][0] == 0.0  # idle after 80
    assert throttle_periods(t, 10) == [(_t(70), _t(90))]  # samples 70..80 -> buckets 70 and 80
    per_node = data.trends(_t(0), _t(120), 60, by="node")
    assert sorted(set(per_node["series"].to_pylist())) == ["n0", "n1"]
    only = data.trends(_t(0), _t(120), 60, uuids=[sd.uuid("n1", 0)])
    assert set(only["series"].to_pylist()) == {sd.uuid("n1", 0)}


def test_cluster_page_draws_one_trace_per_gpu_and_filters(data):
    figs, state, msg = cluster.draw(data, "all")
    assert len(figs) == 4 and all(len(f["data"]) == 4 for f in figs)
    assert "4 GPU(s) on 2 node(s)" in msg and state["order"] == sorted(state["order"])
    assert len(figs[0]["layout"]["shapes"]) == 1  # the throttled period
    figs, _, _ = cluster.draw(data, "all", nodes=["n1"])
    assert all(len(f["data"]) == 2 for f in figs)
    figs, _, _ = cluster.draw(data, "all", by="node")
    assert [tr["name"] for tr in figs[0]["data"]] == ["n0", "n1"]
    figs, _, msg = cluster.draw(data, "custom", "2026-11-18 07:33", "nonsense")
    assert "custom range" in msg and len(figs[0]["data"]) == 4


def test_live_refresh_appends_only_the_buckets_after_the_last_draw(data):
    _, state, _ = cluster.draw(data, "all")
    state = {**state, "end": _t(60).isoformat(), "bucket": 10}
    payloads, new_state = cluster.extend(data, state)
    upd, idx, max_points = payloads[0]
    assert sorted(idx) == list(range(4)) and max_points == state["points"] == 121  # whole window
    assert all(len(x) == 6 for x in upd["x"])  # buckets 60, 70, ..., 110
    assert upd["x"][0][0] == _t(60).replace(tzinfo=None).isoformat()
    assert datetime.fromisoformat(new_state["end"]) > _t(110)
    # every appended mean comes with its bucket's min and max, in the same order
    truth = data.trends(_t(60), datetime.fromisoformat(new_state["end"]), 10, by=state["by"])
    cols = [truth[c].to_pylist() for c in ("series", "bucket", "util_min", "util_max")]
    want = {(k, b): (lo, hi) for k, b, lo, hi in zip(*cols)}
    spread = 0
    for k, xs, ys, cds in zip(idx, upd["x"], upd["y"], upd["customdata"]):
        assert len(cds) == len(xs) == len(ys)
        for x, y, (lo, hi) in zip(xs, ys, cds):
            b = datetime.fromisoformat(x).replace(tzinfo=timezone.utc)
            assert (lo, hi) == tuple(round(v, 2) for v in want[(state["order"][k], b)])
            assert lo <= y <= hi
            spread += hi > lo
    assert spread  # buckets where the GPU went busy or idle: min and max differ from the mean
    again, _ = cluster.extend(data, new_state)
    assert again is None  # nothing new since


def test_alerts_and_empty_states(data, tmp_path):
    alerts = data.alerts()
    assert [(a["node"], a["gpu_index"], a["rule"]) for a in alerts] == [("n1", 0, "throttle")]
    assert data.status()["missing"] is False
    missing = Data(str(tmp_path / "nothing"), tmp_path / "nothing")
    assert missing.status()["missing"] is True
    _, state, msg = cluster.draw(missing)
    assert state is None and "No data directory" in msg
    empty = tmp_path / "empty"
    empty.mkdir()
    _, state, msg = cluster.draw(Data(str(empty), empty))
    assert state is None and "No GPU telemetry" in msg
    assert Data(str(empty), empty).jobs() == []
    assert "No jobs yet" in str(jobs.jobs_layout(Data(str(empty), empty)))


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
