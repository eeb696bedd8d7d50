"""Per-worker CPU: the process scan on real processes (a worker whose child burns CPU and one whose
child sleeps), its rows through the real store, and the analytics' per-worker trend on Parquet."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pyarrow as pa

from ffray.analytics.metrics import worker_trends
from ffray.analytics.source import Store
from ffray.telemetry.sampler import Sampler
from ffray.telemetry.schema import SCHEMA_VERSION, WORKER_CPU
from ffray.telemetry.sink import Sink
from ffray.telemetry.spans import write_spans
from ffray.telemetry.store import TelemetryStore
from ffray.telemetry.workers import WorkerScanner, actor_of, families, is_worker

# a stand-in worker: names itself (the kernel's comm, as Ray's title does), starts one child
# running CODE, says "ready", and ends its child when its stdin closes
WORKER = """
import ctypes, subprocess, sys
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)
child = subprocess.Popen([sys.executable, '-c', sys.argv[2]])
print('ready', flush=True)
sys.stdin.read()
child.kill()
child.wait()
"""
BURN = "while True: pass"
IDLE = "import time; time.sleep(600)"


def test_worker_titles_and_families():
    assert is_worker("ray::ChunkWorker") and is_worker("ray::ChunkWorker.process")
    assert not is_worker("ray::ChunkWorkerX") and not is_worker("ray::IDLE") and not is_worker("python")
    assert actor_of("ray::ChunkWorker.process") == "ChunkWorker"
    kids = {1: [10, 11], 10: [100], 11: [2], 2: [20]}  # worker 2 below worker 1 keeps its own family
    fam = families([1, 2], kids)
    assert sorted(fam[1]) == [1, 10, 11, 100] and sorted(fam[2]) == [2, 20]


def _start(name: str, code: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", WORKER, name, code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def test_scan_sums_a_workers_children_and_rows_reach_the_store(tmp_path):
    tag = os.getpid() % 100000
    burn, idle = f"ffw{tag}burn", f"ffw{tag}idle"
    procs = [_start(burn, BURN), _start(idle, IDLE)]
    try:
        scanner = WorkerScanner(lambda n: n in (burn, idle))
        sampler = Sampler("n0", None, workers=scanner)
        first = {r["pid"]: r for r in sampler.sample()["worker_cpu"]}
        time.sleep(1.0)
        rows = sampler.sample()
        # inside Ray only the raylet's own workers: here, children of this test process
        mine = WorkerScanner(lambda n: n in (burn, idle), parent=os.getpid()).scan()
        assert {r["pid"] for r in mine} == {procs[0].pid, procs[1].pid}
        assert WorkerScanner(lambda n: n in (burn, idle), parent=procs[0].pid).scan() == []
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=10)
    got = {r["pid"]: r for r in rows["worker_cpu"]}
    b, i = got[procs[0].pid], got[procs[1].pid]
    assert set(first) == set(got) == {procs[0].pid, procs[1].pid}
    assert first[procs[0].pid]["cpu_percent"] is None  # a worker's first sight has no CPU interval
    assert b["procs"] == i["procs"] == 2  # the worker and its child
    assert b["cpu_percent"] > i["cpu_percent"]  # the burning child is counted in its worker's row
    assert b["cpu_percent"] - b["self_cpu_percent"] > i["cpu_percent"] - i["self_cpu_percent"]
    assert b["rss_bytes"] > b["self_rss_bytes"] > 0
    assert b["actor"] == burn and b["node"] == "n0" and b["schema_version"] == SCHEMA_VERSION
    store = TelemetryStore(tmp_path / "telemetry", "n0")
    store.append(rows, time.time())
    store.close()
    s = Store(tmp_path)
    back = s.rows("SELECT pid, cpu_percent, procs FROM worker_cpu ORDER BY cpu_percent DESC")
    assert [r["pid"] for r in back] == [procs[0].pid, procs[1].pid] and back[0]["procs"] == 2


T0 = datetime(2026, 11, 18, 10, 0, tzinfo=timezone.utc)


def _rows(node, pid, cpus, started=T0):
    return [{"schema_version": SCHEMA_VERSION, "ts": T0 + timedelta(seconds=k), "node": node,
             "ray_node": None, "pid": pid, "actor": "ChunkWorker", "started": started, "cpu_percent": c,
             "self_cpu_percent": None if c is None else c / 4, "rss_bytes": 1 << 28,
             "self_rss_bytes": 1 << 26, "procs": 3} for k, c in enumerate(cpus)]


def test_worker_trend_buckets_and_labels(tmp_path):
    sink = Sink(tmp_path / "telemetry")
    a = _rows("n0", 111, [None] + [100.0 + 10 * (k % 3) for k in range(1, 40)])  # 100..120 % busy
    b = _rows("n1", 222, [5.0 + k % 2 for k in range(40)])
    sink.write_parquet(pa.Table.from_pylist(a + b, schema=WORKER_CPU),
                       "worker_cpu/date=2026-11-18/node=n/p.parquet")
    for job in ("job-a", "job-b"):  # the chunks worker 111 ran: its label names the jobs and actor
        write_spans(tmp_path, job, [{
            "schema_version": SCHEMA_VERSION, "job_id": job, "chunk": 0, "attempt": 1, "status": "done",
            "node": "n0", "pid": 111, "actor_id": "abcdef0123456789", "start": T0,
            "end": T0 + timedelta(seconds=30), "frames": 10}])
    s = Store(tmp_path)
    t, labels = worker_trends(s, T0, T0 + timedelta(seconds=40), 20)
    rows = t.to_pylist()
    by = {(r["series"].split("/")[1], r["bucket"]): r for r in rows}
    first = by[("111", T0)]
    want = [c for c in (r["cpu_percent"] for r in a[:20]) if c is not None]
    assert first["samples"] == len(want)  # the first sight (no CPU value) is left out
    assert abs(first["worker_cpu_mean"] - sum(want) / len(want)) < 1e-3
    assert (first["worker_cpu_min"], first["worker_cpu_max"]) == (min(want), max(want))
    assert len({r["series"] for r in rows}) == 2
    assert sorted(labels.values()) == ["n0 · ChunkWorker abcdef01 · pid 111 (job-a, job-b)",
                                       "n1 · ChunkWorker · pid 222"]
    t1, _ = worker_trends(s, T0, T0 + timedelta(seconds=40), 20, nodes=["n1"])
    assert {k.split("/")[0] for k in t1["series"].to_pylist()} == {"n1"}
    t2, _ = worker_trends(s, T0, T0 + timedelta(seconds=40), 20, top=1)
    assert {k.split("/")[1] for k in t2["series"].to_pylist()} == {"111"}  # the busier worker first
