"""Faults on a multi-node cluster: a worker node removed mid-job; and what a finished job leaves
in its ledger (chunk files deleted after a verified assembly unless kept)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from ffray.processors import read_stamp
from tests.media import frames, swap

ISOLATED = "FFRAY_TEST_OWN_CLUSTER"


def test_node_removal_on_a_cluster_of_its_own():
    """The node-removal test below, in a pytest process (and Ray cluster) of its own: after the
    suite's ~40 jobs on the shared session cluster, its pool start was seen waiting for ever on a
    worker that could not be placed (cause not found yet; it passes on a fresh cluster)."""
    if os.environ.get(ISOLATED):
        pytest.skip("already in the isolated run")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        f"{__file__}::test_a_worker_node_removed_mid_job_is_survived"],
                       env={**os.environ, ISOLATED: "1"}, capture_output=True, text=True, timeout=280)
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]


@pytest.mark.skipif(not os.environ.get(ISOLATED), reason="runs in its own process: see above")
def test_a_worker_node_removed_mid_job_is_survived(cluster, media, data_dir, tmp_path):
    """A node with a GPU joins, gets its share of chunks, and is removed while they run: its
    chunks are retried on the other nodes (the replacement worker cannot fit anywhere: the job
    does not wait for it) and the output is whole."""
    import ray

    from ffray.cluster.jobs import SwapRequest, prepare_swap, run_job
    from ffray.processors import ProcessorSpec

    c = cluster["cluster"]
    # one worker per free GPU of the shared cluster plus the new node's: in the full suite a GPU of
    # the session cluster was seen still held when this test began (cause not found), and a
    # worker that cannot be placed would keep the pool's start waiting for ever
    free = int(ray.available_resources().get("GPU", 0))
    assert free >= 2, ray.available_resources()
    node = c.add_node(num_cpus=1, num_gpus=1, object_store_memory=96 * 1024 * 1024)
    c.wait_for_nodes()
    out = tmp_path / "out.mp4"
    req = SwapRequest(input=str(media.cfr_audio), output=str(out), chunk_seconds=0.35, actors=free + 1,
                      gpu_per_actor=1, processor=ProcessorSpec(kind="tests.procs:Slow",
                                                               params={"delay": 0.03}, batch_size=4))
    ledger = prepare_swap(req, data_dir)
    got: dict = {}

    def run():
        try:
            got["result"] = run_job(ledger)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            got["error"] = e

    t = threading.Thread(target=run)
    t.start()
    removed = False
    try:
        while t.is_alive() and not ledger.chunk_stats():
            t.join(0.1)
        assert t.is_alive(), got
        c.remove_node(node)
        removed = True
        t.join(240)
        assert not t.is_alive() and "error" not in got, got
    finally:
        if not removed:
            c.remove_node(node)
    events = ledger.events()
    died = [e for e in events if e["kind"] == "actor_died"]
    assert died, events  # the removed node's worker was running chunks
    lost = {e["chunk"] for e in events if e["kind"] == "attempt_failed"}
    assert lost and ledger.spec["status"] == "done"
    redone = [s for s in ledger.chunk_stats() if s["chunk"] in lost]
    assert len(redone) == len(lost) and all(s["node_id"] != node.node_id for s in redone)
    assert [read_stamp(img) for _, img in frames(out)] == list(range(96))


def test_chunk_files_are_deleted_after_assembly_unless_kept(cluster, media, data_dir, tmp_path):
    # identity and stamp are byte-reproducible (test_determinism); identity is the cheaper
    ledger, res = swap(media.cfr_silent, tmp_path / "a.mp4", data_dir, processor="identity",
                       actors=2, gpu_per_actor=1, chunk_seconds=0.5)
    chunks = ledger.root / "chunks"
    assert res.chunks >= 3 and not list(chunks.glob("*.nut"))
    assert len(list(chunks.glob("*.json"))) == res.chunks  # the stats stay
    assert ledger.spec["chunks_removed_bytes"] > 0
    import pyarrow.parquet as pq

    spans = pq.read_table(next((data_dir / "spans").glob(f"date=*/job={ledger.job_id}/*.parquet")))
    assert spans.num_rows == res.chunks  # spans still come from the stats
    assert {r for r in spans.column("node").to_pylist()} <= {s["node"] for s in ledger.chunk_stats()}
    kept, res2 = swap(media.cfr_silent, tmp_path / "b.mp4", data_dir, processor="identity",
                      actors=2, gpu_per_actor=1, chunk_seconds=0.5, keep_chunks=True)
    assert len(list((kept.root / "chunks").glob("*.nut"))) == res2.chunks
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_node_names_are_hosts_and_stay_apart_on_one_host(cluster, media, data_dir, tmp_path):
    """Several Ray nodes of one host (the test cluster) keep distinct telemetry names, each the
    host name plus its node id's start; the Ray node id is kept beside it."""
    import socket

    import duckdb

    ledger, res = swap(media.cfr_silent, tmp_path / "a.mp4", data_dir, processor="stamp",
                       actors=2, gpu_per_actor=1, chunk_seconds=0.5, telemetry_interval=0.2)
    host = socket.gethostname()
    for s in ledger.chunk_stats():
        assert s["node"] == f"{host}-{s['node_id'][:8]}"
    rows = duckdb.sql(f"SELECT DISTINCT node, ray_node FROM read_parquet("
                      f"'{data_dir}/telemetry/host/**/*.parquet', hive_partitioning=false)").fetchall()
    assert len(rows) == 3 and len({n for n, _ in rows}) == 3  # head + two GPU nodes, apart
    assert all(n == f"{host}-{r[:8]}" for n, r in rows)
