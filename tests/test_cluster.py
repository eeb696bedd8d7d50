"""Scheduling on a multi-node cluster with fake GPUs, and worker death mid-chunk."""

from __future__ import annotations

from ffray.processors import read_stamp
from tests.media import frames, swap


def test_chunks_spread_over_worker_nodes_with_gpus(cluster, media, data_dir, tmp_path):
    out = tmp_path / "out.mp4"
    ledger, res = swap(media.cfr_audio, out, data_dir, processor="stamp", actors=4,
                       gpu_per_actor=1, chunk_seconds=0.35)
    stats = ledger.chunk_stats()
    assert len(stats) == res.chunks >= 8
    nodes = {s["node_id"] for s in stats}
    assert nodes == set(cluster["worker_nodes"])  # the GPU nodes, never the GPU-less head
    assert all(len(s["gpu_ids"]) == 1 for s in stats)
    per_node_gpus = {}
    for s in stats:
        per_node_gpus.setdefault(s["node_id"], set()).update(s["gpu_ids"])
    assert all(len(g) == 2 for g in per_node_gpus.values())  # both fake GPUs of each node used
    assert len({s["actor_id"] for s in stats}) == 4
    assert [read_stamp(img) for _, img in frames(out)] == list(range(96))
    for s in stats:  # per-chunk stats the telemetry joins on
        assert s["frames"] > 0 and s["end"] >= s["start"] and s["decode_s"] >= 0
        assert s["stages"]["frames"] == s["frames"] and s["processor"] == "stamp"


def test_worker_killed_mid_chunk_is_retried_on_another_actor(cluster, media, data_dir, tmp_path):
    out = tmp_path / "out.mp4"
    marker = tmp_path / "crashed"
    ledger, res = swap(media.cfr_audio, out, data_dir, processor="tests.procs:CrashOnce",
                       params={"chunk": 2, "marker": str(marker)}, actors=2, gpu_per_actor=1,
                       chunk_seconds=0.7, max_attempts=3)
    assert marker.exists()  # a worker really died in chunk 2
    assert res.retries >= 1
    events = ledger.events()
    assert any(e["kind"] == "actor_died" for e in events)
    failed = [e for e in events if e["kind"] == "attempt_failed"]
    assert any(e["chunk"] == 2 for e in failed)
    stats = {s["chunk"]: s for s in ledger.chunk_stats()}
    assert stats[2]["attempt"] >= 2
    died_actor = [e for e in failed if e["chunk"] == 2][0]["actor"]
    assert stats[2]["pid"] != int(marker.read_text()) and died_actor is not None
    # every frame is present, each from the right input frame
    assert [read_stamp(img) for _, img in frames(out)] == list(range(96))
    # every attempt is a span: the failed one too, with its time window
    import pyarrow.parquet as pq

    spans = pq.read_table(next((data_dir / "spans").glob("date=*/job=*/spans.parquet"))).to_pylist()
    assert len([s for s in spans if s["status"] == "done"]) == res.chunks
    bad = [s for s in spans if s["status"] == "failed" and s["chunk"] == 2]
    assert bad and bad[0]["start"] is not None and bad[0]["end"] >= bad[0]["start"]


def ledger_events(job):
    import json

    return [json.loads(ln) for ln in (job / "events.jsonl").read_text().splitlines() if ln]


def test_chunk_that_always_fails_fails_the_job_and_keeps_finished_chunks(cluster, media, data_dir,
                                                                          tmp_path):
    import pytest

    from ffray.errors import JobFailed

    out = tmp_path / "out.mp4"
    with pytest.raises(JobFailed, match="chunk 1 failed 2 times"):
        swap(media.cfr_silent, out, data_dir, processor="tests.procs:FailOn",
             params={"chunk": 1}, actors=2, gpu_per_actor=1, chunk_seconds=0.5, max_attempts=2)
    assert not out.exists()
    job = next((data_dir / "jobs").iterdir())
    # chunk 0 ran beside the failing chunk 1: it was let finish, and is kept
    assert (job / "chunks" / "000000.json").exists()
    assert not (job / "chunks" / "000001.json").exists()
    fails = [e for e in ledger_events(job) if e["kind"] == "attempt_failed"]
    assert [e["chunk"] for e in fails] == [1, 1]  # no retries after the job started failing


def test_worker_setup_failure_fails_fast_with_its_reason(cluster, media, data_dir, tmp_path):
    import time

    import pytest

    from ffray.errors import JobFailed

    t = time.time()
    with pytest.raises(JobFailed, match="worker setup failed: RuntimeError: cannot load libnvinfer"):
        swap(media.cfr_silent, tmp_path / "o.mp4", data_dir, processor="tests.procs:BadInit",
             actors=2, gpu_per_actor=1)
    assert time.time() - t < 60


def test_one_telemetry_actor_per_node_and_files_pulled_from_nodes(cluster, media, data_dir,
                                                                   tmp_path):
    import duckdb
    import ray

    from ffray.cluster.jobs import SwapRequest, prepare_swap, run_job
    from ffray.processors import ProcessorSpec
    from ffray.telemetry.actor import actor_name

    local = tmp_path / "node-local"  # other nodes write here, as if they had no shared storage
    req = SwapRequest(input=str(media.cfr_silent), output=str(tmp_path / "o.mp4"),
                      processor=ProcessorSpec(kind="stamp", batch_size=4), chunk_seconds=0.5,
                      actors=2, gpu_per_actor=1, telemetry_interval=0.2,
                      telemetry_local_dir=str(local))
    ledger = prepare_swap(req, data_dir)
    run_job(ledger)
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 3
    for n in nodes:  # the actors are gone after the job (named, so look them up)
        try:
            ray.get_actor(actor_name(n), namespace="ffray")
            alive = True
        except ValueError:
            alive = False
        assert not alive
    assert any(local.rglob("*.parquet"))  # written on the nodes' own folders...
    rows = duckdb.sql(f"SELECT ray_node, count(*) n, bool_or(gpu_available) g FROM read_parquet("
                      f"'{data_dir}/telemetry/host/**/*.parquet', hive_partitioning=false) "
                      "GROUP BY ray_node").fetchall()
    assert {r[0] for r in rows} == nodes  # ...and every node's samples reached the data dir
    assert all(r[1] >= 1 and r[2] is False for r in rows)  # fake GPUs: no NVML, host only


def test_telemetry_actors_follow_nodes_that_join(cluster, data_dir):
    import ray

    from ffray.cluster.jobs import Telemetry

    tele = Telemetry(data_dir, interval=0.5)
    before = set(tele.actors)
    node = cluster["cluster"].add_node(num_cpus=1, object_store_memory=96 * 1024 * 1024)
    try:
        cluster["cluster"].wait_for_nodes()
        tele._last = 0  # as if the re-sync period had passed
        tele.tick()
        assert set(tele.actors) == before | {node.node_id}
        info = ray.get(tele.actors[node.node_id].info.remote())
        assert info["ray_node"] == node.node_id and info["node"].endswith(node.node_id[:8])
    finally:
        infos = tele.stop()
        cluster["cluster"].remove_node(node)
    assert node.node_id in infos
