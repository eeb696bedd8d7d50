"""Telemetry: sampler rows, the journal/Parquet store, spans and their attribution."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from ffray.analytics.costs import attribute
from ffray.telemetry.sampler import Sampler, open_backend
from ffray.telemetry.spans import span_rows, write_spans
from ffray.telemetry.store import TableWriter, TelemetryStore, read_journal, recover
from tests.fake_nvml import FakeGpus

T0 = 1_795_000_000.0  # a fixed instant (2026-11-18)


def record(root: Path, gpus: FakeGpus, seconds: int, node: str = "n0", roll: float = 10) -> None:
    store = TelemetryStore(root / "telemetry", node, roll_seconds=roll)
    s = Sampler(node, gpus)
    for i in range(seconds):
        store.append(s.sample(T0 + i), T0 + i)
        gpus.advance(1.0)
    store.close()


def test_samples_land_in_parquet_and_read_back_identically(tmp_path):
    gpus = FakeGpus(2)
    record(tmp_path, gpus, 25)
    files = sorted((tmp_path / "telemetry" / "gpu").glob("date=*/node=n0/*.parquet"))
    assert len(files) == 3  # rolled every 10 s, and the rest at close
    glob = str(tmp_path / "telemetry" / "gpu" / "**" / "*.parquet")
    con = duckdb.connect()
    a = con.execute(f"SELECT gpu_uuid, ts, util_gpu, energy_mj, schema_version FROM read_parquet("
                    f"'{glob}', hive_partitioning=true) ORDER BY gpu_uuid, ts").fetchall()
    t = ds.dataset(tmp_path / "telemetry" / "gpu", format="parquet", partitioning="hive").to_table()
    b = sorted(zip(t["gpu_uuid"].to_pylist(), t["ts"].to_pylist(), t["util_gpu"].to_pylist(),
                   t["energy_mj"].to_pylist(), t["schema_version"].to_pylist()))
    assert len(a) == 50 and [tuple(r) for r in a] == b
    assert a[-1][3] == 24 * 300_000  # the cumulative energy counter, in mJ
    assert pq.ParquetFile(files[0]).metadata.row_group(0).column(0).compression == "ZSTD"
    hosts = con.execute(f"SELECT count(*), bool_and(gpu_available) FROM read_parquet('"
                        f"{tmp_path / 'telemetry' / 'host' / '**' / '*.parquet'}')").fetchone()
    assert hosts == (25, True)


def test_one_failing_field_leaves_the_others(tmp_path):
    gpus = FakeGpus(1)
    gpus.fail_fields = {"power_w", "temp_c"}
    import pyarrow as pa

    from ffray.telemetry.schema import GPU

    rows = Sampler("n0", gpus).sample(T0)["gpu"]
    batch = pa.RecordBatch.from_pylist(rows, schema=GPU).to_pylist()[0]
    assert batch["power_w"] is None and batch["temp_c"] is None
    assert batch["util_gpu"] == 50.0 and batch["energy_mj"] == 0 and batch["sm_clock_mhz"] == 1980


def test_readers_never_see_partial_files_while_rolling(tmp_path):
    root = tmp_path / "telemetry"
    gpus = FakeGpus(4)
    store = TelemetryStore(root, "n0", roll_seconds=1)
    s = Sampler("n0", gpus)
    stop = threading.Event()
    errors, reads = [], [0]

    def reader():
        con = duckdb.connect()
        while not stop.is_set():
            try:
                con.execute(f"SELECT count(*) FROM read_parquet('{root}/gpu/**/*.parquet')").fetchone()
                ds.dataset(root / "gpu", format="parquet", partitioning="hive").to_table()
                reads[0] += 1
            except duckdb.IOException as e:  # no file yet
                if "No files found" not in str(e):
                    errors.append(e)
            except Exception as e:
                errors.append(e)

    th = threading.Thread(target=reader)
    th.start()
    try:
        for i in range(300):
            store.append(s.sample(T0 + i / 10), T0 + i / 10)
    finally:
        store.close()
        stop.set()
        th.join()
    assert not errors and reads[0] > 5


def test_a_killed_writer_loses_at_most_the_open_window(tmp_path):
    root = tmp_path / "telemetry"
    gpus = FakeGpus(1)
    s = Sampler("n0", gpus)
    w = TableWriter(root, "gpu", "n0")
    for i in range(5):
        w.append(s.sample(T0 + i)["gpu"])
    w.roll()  # window 1 is safe in Parquet
    for i in range(5, 8):
        w.append(s.sample(T0 + i)["gpu"])
    # the process dies here: no close; the journal's last batch is torn
    j = w.journal
    j.write_bytes(j.read_bytes()[:-20])
    assert read_journal(j).num_rows == 2  # whole batches before the tear
    assert recover(root) == []  # its writer still holds the journal's lock: not touched
    os.close(w._lock)  # ...which the kernel drops when the writer dies
    recover(root)
    t = ds.dataset(root / "gpu", format="parquet", partitioning="hive").to_table()
    assert t.num_rows == 7 and not j.exists()


def test_writers_sharing_a_node_name_keep_their_own_journals(tmp_path):
    """Two private Ray instances on one machine: one node name, two writers (their Ray node
    ids); a new store's recovery leaves the other live writer's journal alone."""
    root = tmp_path / "telemetry"
    a = TelemetryStore(root, "host1", roll_seconds=1e9, writer="aaaa")
    sa = Sampler("host1", FakeGpus(1), ray_node="aaaa")
    a.append(sa.sample(T0), T0)
    b = TelemetryStore(root, "host1", roll_seconds=1e9, writer="bbbb")  # recovers at start
    sb = Sampler("host1", FakeGpus(1), ray_node="bbbb")
    for i in range(1, 4):
        a.append(sa.sample(T0 + i), T0 + i)
        b.append(sb.sample(T0 + i), T0 + i)
    assert a.writers["gpu"].journal != b.writers["gpu"].journal
    a.close()
    b.close()
    t = ds.dataset(root / "gpu", format="parquet", partitioning="hive").to_table().to_pylist()
    assert {r["node"] for r in t} == {"host1"}
    assert sorted(r["ray_node"] for r in t) == ["aaaa"] * 4 + ["bbbb"] * 3
    assert not list((root / "gpu" / ".journal").rglob("*.arrow"))
    assert not list((root / "gpu" / ".journal").rglob("*.lock"))


def test_no_nvml_here_records_host_metrics_and_warns_once(caplog):
    with caplog.at_level(logging.WARNING, logger="ffray.telemetry"):
        backend = open_backend()
    assert backend is None  # this machine has no GPU driver
    assert len([r for r in caplog.records if "host metrics only" in r.message]) == 1
    rows = Sampler("n0", None).sample(T0)
    assert rows["gpu"] == [] and rows["host"][0]["gpu_available"] is False
    assert rows["host"][0]["mem_total_bytes"] > 0


def test_spans_joined_to_samples_give_known_cost(tmp_path):
    gpus = FakeGpus(2)
    gpus.watts = {0: 200.0, 1: 400.0}
    gpus.util = {0: 80.0, 1: 100.0}
    gpus.procs = {0: [(4242, int(3e9), 70.0)], 1: [(4343, int(5e9), 90.0)]}
    record(tmp_path, gpus, 60)
    uuid0, uuid1 = gpus.devs[0].uuid, gpus.devs[1].uuid
    stats = [  # chunk 0 on GPU 0 for 10 s (t=5..15), chunk 1 on GPU 1 for 20 s (t=20..40)
        {"chunk": 0, "attempt": 1, "node_id": "n0", "gpu_uuids": [uuid0], "pid": 4242,
         "actor_id": "a0", "start": T0 + 5, "end": T0 + 15, "frames": 100, "gpus": 1.0,
         "stages": {"faces_detected": 300, "faces_swapped": 300}},
        {"chunk": 1, "attempt": 2, "node_id": "n0", "gpu_uuids": [uuid1], "pid": 4343,
         "actor_id": "a1", "start": T0 + 20, "end": T0 + 40, "frames": 200, "gpus": 0.5,
         "stages": {}}]
    events = [{"kind": "attempt_failed", "chunk": 1, "attempt": 1, "submitted": T0 + 16,
               "time": T0 + 19}]
    path = write_spans(tmp_path, "job1", span_rows("job1", stats, events))
    assert Path(path).name == "spans.parquet"
    assert pq.read_table(path).num_rows == 3
    t = attribute(tmp_path, "job1").to_pylist()
    assert [(r["chunk"], r["attempt"]) for r in t] == [(0, 1), (1, 2)]
    c0, c1 = t
    assert c0["gpu_seconds"] == pytest.approx(10.0) and c1["gpu_seconds"] == pytest.approx(10.0)
    assert c0["energy_j"] == pytest.approx(10 * 200.0)  # counter difference over the span
    assert c1["device_energy_j"] == pytest.approx(20 * 400.0)
    assert c1["energy_j"] == pytest.approx(20 * 400.0 * 0.5)  # the actor held half the GPU
    assert c0["mean_util"] == pytest.approx(80.0) and c1["peak_util"] == pytest.approx(100.0)
    assert c1["throttled_share"] == pytest.approx(1.0) and c0["throttled_share"] == 0.0
    assert c0["peak_mem_process"] == int(3e9) and c1["peak_mem_process"] == int(5e9)
    assert c0["samples"] == 11


def test_alert_rules_fire_after_their_duration_once_per_episode(tmp_path):
    from ffray.telemetry.alerts import AlertEngine, parse_rules

    gpus = FakeGpus(1)
    s = Sampler("n0", gpus)
    eng = AlertEngine()
    fired = []
    for i in range(40):
        gpus.util[0] = 100.0 if 5 <= i < 30 else 40.0  # busy (and throttled) for 25 s
        fired += [(i, a["rule"], a["state"]) for a in eng.check(s.sample(T0 + i)["gpu"])]
    assert (5, "gpu_throttled", "firing") in fired and (15, "gpu_util_high", "firing") in fired
    # once per episode, and closed by a resolved row when the condition clears (at 30)
    assert (30, "gpu_throttled", "resolved") in fired and (30, "gpu_util_high", "resolved") in fired
    assert len(fired) == 4
    hot = AlertEngine(parse_rules(["hot:temp_c>55@2"]))
    got = [a for i in range(4) for a in hot.check(s.sample(T0 + i)["gpu"])]
    assert len(got) == 1 and got[0]["rule"] == "hot" and got[0]["value"] == 60.0
    assert got[0]["state"] == "firing"
    from ffray.errors import FFrayError

    with pytest.raises(FFrayError):
        parse_rules(["nonsense"])


def test_prometheus_exporter_serves_dcgm_style_metrics_on_loopback():
    import urllib.request

    from ffray.telemetry.exporter import Exporter

    gpus = FakeGpus(2)
    ex = Exporter(0)
    try:
        ex.update(Sampler("n0", gpus).sample(T0)["gpu"], "host1")
        body = urllib.request.urlopen(f"http://127.0.0.1:{ex.port}/metrics", timeout=10).read().decode()
    finally:
        ex.close()
    assert ex.server.server_address[0] == "127.0.0.1"
    line = [ln for ln in body.splitlines() if ln.startswith("DCGM_FI_DEV_GPU_UTIL{")]
    assert len(line) == 2 and 'UUID="GPU-n0-01"' in line[1] and line[1].endswith(" 50.0")
    assert "DCGM_FI_DEV_FB_USED" in body and "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" in body


def test_retention_deletes_only_expired_partitions_and_compaction_keeps_rows(tmp_path):
    from ffray.telemetry.store import apply_retention, compact

    root = tmp_path / "telemetry"
    for day in range(10):  # ten days of samples, rolled every 20 s
        store = TelemetryStore(root, "n0", roll_seconds=20)
        s = Sampler("n0", FakeGpus(1))
        for i in range(60):
            now = T0 + day * 86400 + i
            store.append(s.sample(now), now)
        store.close()
    dates = sorted(p.name for p in (root / "gpu").glob("date=*"))
    assert len(dates) == 10
    removed = apply_retention(root, days=7, now=T0 + 9 * 86400 + 100)
    left = sorted(p.name for p in (root / "gpu").glob("date=*"))
    assert left == dates[-8:] and all(p.name in dates[:2] for p in removed if "gpu" in str(p))
    day = left[-1][5:]
    before = ds.dataset(root / "gpu", format="parquet", partitioning="hive").to_table().num_rows
    merged = compact(root, "gpu", day, "n0")
    assert merged is not None and len(list(merged.parent.glob("*.parquet"))) == 1
    after = ds.dataset(root / "gpu", format="parquet", partitioning="hive").to_table().num_rows
    assert after == before


def test_telemetry_record_cli_without_a_gpu(tmp_path, capsys):
    from ffray.cli import main

    rc = main(["telemetry", "record", "--data-dir", str(tmp_path), "--interval", "0.2",
               "--duration", "1.1"])
    assert rc == 0
    n = duckdb.sql(f"SELECT count(*), bool_or(gpu_available) FROM read_parquet("
                   f"'{tmp_path}/telemetry/host/**/*.parquet')").fetchall()[0]
    assert n[0] >= 5 and n[1] is False
    assert main(["telemetry", "tail", "--data-dir", str(tmp_path)]) == 0
    assert "-- host" in capsys.readouterr().out


def test_a_sigkilled_recorder_process_keeps_its_journal_rows(tmp_path):
    """A real writer process killed with SIGKILL: the rolled windows are intact, and the journal
    of the open window is recovered up to its last whole batch."""
    import signal
    import subprocess
    import sys
    import time

    code = (
        "import sys, time\n"
        "sys.path.insert(0, %r)\n"
        "from pathlib import Path\n"
        "from ffray.telemetry.recorder import Recorder\n"
        "from tests.fake_nvml import FakeGpus\n"
        "rec = Recorder(Path(%r), 'n0', FakeGpus(2), roll_seconds=0.5)\n"
        "print('ready', flush=True)\n"
        "rec.run(0.05)\n" % (str(Path(__file__).resolve().parents[1]), str(tmp_path)))
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(1.6)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=10)
    root = tmp_path / "telemetry"
    rolled = ds.dataset(root / "gpu", format="parquet", partitioning="hive").to_table().num_rows
    journal = read_journal(root / "gpu" / ".journal" / "n0.arrow")
    open_rows = journal.num_rows if journal is not None else 0
    assert rolled >= 2 * 10  # at least two windows of 2 GPUs were safe in Parquet
    recover(root)
    after = ds.dataset(root / "gpu", format="parquet", partitioning="hive").to_table().num_rows
    assert after == rolled + open_rows  # nothing of the journal's whole batches was lost
