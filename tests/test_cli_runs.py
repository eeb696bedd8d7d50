"""Whole-process runs: the demo, a driver attached to a `ray start --head` cluster, and resume
after the driver is killed. Each starts its own Ray processes and stops them by PID."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from ffray.processors import read_stamp
from tests.media import audio_packets, frames
from tests.procs import kill_and_wait

pytestmark = pytest.mark.slow
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
RAY = shutil.which("ray") or str(Path(sys.executable).parent / "ray")


def ffray(*args, timeout=240, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ffray", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=kw.pop("env", ENV), **kw)


def marked(marker: str) -> list[psutil.Process]:
    """Every process whose command line or RAY_TMPDIR names ``marker`` (a private temp dir):
    Ray's agents rename themselves, so the environment is what identifies them."""
    needle = f"RAY_TMPDIR={marker}".encode()

    def ours(p: psutil.Process) -> bool:
        try:  # raw /proc read: setproctitle confuses psutil's environ parsing
            env = Path(f"/proc/{p.pid}/environ").read_bytes()
            return needle in env or any(marker in (c or "") for c in p.cmdline())
        except (psutil.Error, OSError):
            return False

    return [p for p in psutil.process_iter() if p.pid != os.getpid() and ours(p)]


def kill_tree_by_marker(marker: str) -> None:
    """Kill, by PID, every process ``marked`` with ``marker``."""
    kill_and_wait(marked(marker))


def test_demo_runs_offline_end_to_end(tmp_path):
    r = ffray("demo", "--data-dir", tmp_path, "--seconds", "3", "--actors", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "demo" / "output.mp4"
    assert out.exists() and str(out) in r.stdout
    got = frames(out)
    assert len(got) == 75
    assert audio_packets(out) == audio_packets(tmp_path / "demo" / "sample.mp4")
    jobs = list((tmp_path / "jobs").iterdir())
    assert len(jobs) == 1 and json.loads((jobs[0] / "job.json").read_text())["status"] == "done"
    # right after the demo the cluster page has something to show: this machine's host panels
    # (its GPU panels too where NVML sees a GPU), never the "Record some" advice
    from datetime import datetime, timezone

    from dashboard.clusterview import draw
    from dashboard.data import Data
    from dashboard.urlstate import ClusterView

    view = draw(Data(str(tmp_path), tmp_path), ClusterView(), datetime.now(timezone.utc))
    assert view.host and "cpu" in view.figures and "Record some" not in view.msg, view.msg
    assert view.gpu or "No GPU telemetry in this range" in view.msg
    # CPU per worker: this instance's ChunkWorker processes (the ones that ran the chunks), named
    # with the job in the cluster page's worker panel
    from ffray.analytics.source import Store

    store = Store(tmp_path)
    ran = {r["pid"] for r in store.rows("SELECT DISTINCT pid FROM spans")}
    busy = {r["pid"]: r["cpu"] for r in store.rows(
        "SELECT pid, max(cpu_percent) AS cpu FROM worker_cpu WHERE actor = 'ChunkWorker' GROUP BY pid")}
    assert ran and ran <= set(busy) and all(busy[p] > 0 for p in ran), (ran, busy)
    from dashboard.clusterview import draw_workers

    names = [t["name"] for t in draw_workers(Data(str(tmp_path), tmp_path), view.window)[0]["data"]]
    assert any(jobs[0].name in n for n in names), names


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_swap_attached_to_a_ray_start_head_cluster(media, tmp_path):
    temp = tempfile.mkdtemp(prefix="ffr-", dir="/tmp")  # short: Ray's socket paths have a limit
    port = _free_port()
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false", f"--temp-dir={temp}",
         "--object-store-memory=100000000", "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**ENV, "RAY_TMPDIR": temp})
    try:
        out = tmp_path / "out.mp4"
        deadline = time.time() + 120
        while True:  # wait for the head to accept drivers
            r = ffray("swap", media.cfr_silent, "-o", out, "--processor", "stamp",
                      "--address", f"127.0.0.1:{port}", "--actors", "2", "--chunk-seconds", "0.5",
                      "--data-dir", tmp_path / "data", "--overwrite")
            if r.returncode == 0 or time.time() > deadline or head.poll() is not None:
                break
            time.sleep(2)
        assert r.returncode == 0, r.stderr[-2000:]
        assert [read_stamp(img) for _, img in frames(out)] == list(range(60))
        job = next((tmp_path / "data" / "jobs").iterdir())
        assert json.loads((job / "job.json").read_text())["address"] == f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
        kill_tree_by_marker(temp)
        shutil.rmtree(temp, ignore_errors=True)


def _slow_swap(media, out, data, env, *extra) -> subprocess.Popen:
    """A driver running a slow job (one chunk at a time takes a while) in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "ffray", "swap", str(media.cfr_audio), "-o", str(out),
         "--processor", "tests.procs:Slow", "--chunk-seconds", "0.4", "--actors", "1",
         "--data-dir", str(data), *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def _instance(driver: subprocess.Popen) -> list[psutil.Process]:
    """The driver's descendants: its Ray instance (GCS, raylet, agents, workers) and watchdog."""
    return psutil.Process(driver.pid).children(recursive=True)


def test_a_killed_driver_leaves_nothing_running_and_its_job_resumes(media, tmp_path):
    """SIGKILL of the driver: every process of its Ray instance is gone within a bound (the
    watchdog; Ray's agents alone linger ~60 s), `ffray jobs` shows the job interrupted (not
    running), and `ffray resume` redoes only unfinished chunks, counting only them."""
    data, out = tmp_path / "data", tmp_path / "out.mp4"
    temp = tempfile.mkdtemp(prefix="ffr-", dir="/tmp")
    env = {**ENV, "RAY_TMPDIR": temp}
    driver = _slow_swap(media, out, data, env)
    try:
        deadline = time.time() + 120
        done: list[Path] = []
        while time.time() < deadline and driver.poll() is None:
            done = sorted(data.glob("jobs/*/chunks/*.json"))
            if len(done) >= 2:
                break
            time.sleep(0.1)
        assert len(done) >= 2, driver.stderr.read().decode()[-2000:] if driver.poll() else "slow"
        procs = _instance(driver)
        names = {p.name() for p in procs}
        assert {"raylet", "gcs_server", "ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= names, names
        driver.kill()  # SIGKILL: no cleanup at all
        driver.wait(timeout=30)
        t = time.time()
        _, alive = psutil.wait_procs(procs, timeout=20)
        assert not alive, f"left behind after 20 s: {[(p.pid, p.name()) for p in alive]}"
        gone_s = time.time() - t
    finally:
        kill_tree_by_marker(temp)  # only if the assertion above failed
    assert not out.exists()
    job = done[0].parent.parent
    listed = ffray("jobs", "--data-dir", data, env=env)
    assert f"{job.name}  interrupted" in listed.stdout, listed.stdout
    assert f"ffray resume {job.name}" in listed.stdout
    assert json.loads((job / "job.json").read_text())["status"] == "interrupted"
    finished = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in job.glob("chunks/*.nut")
                if p.with_suffix(".json").exists()}
    before = {p.stem: json.loads(p.read_text())["frames"] for p in job.glob("chunks/*.json")}
    total = json.loads((job / "job.json").read_text())["chunks"]
    assert 2 <= len(finished) < total
    try:
        r = ffray("resume", job.name, "--keep-chunks", "--data-dir", data, env=env)
    finally:
        kill_tree_by_marker(temp)
        shutil.rmtree(temp, ignore_errors=True)
    assert r.returncode == 0, r.stderr[-2000:]
    for name, ident in finished.items():  # finished chunks were not redone
        p = job / "chunks" / name
        assert (p.stat().st_ino, p.stat().st_mtime_ns) == ident
    runs = [json.loads(x) for x in (job / "events.jsonl").read_text().splitlines()]
    assert "driver_lost" in [e["kind"] for e in runs]
    runs = [e for e in runs if e["kind"] == "run"]
    assert runs[-1]["done"] >= len(finished) and runs[-1]["todo"] == total - runs[-1]["done"]
    spec = json.loads((job / "job.json").read_text())
    assert spec["status"] == "done"
    # this run's statistics count this run's frames only
    ran = 96 - sum(f for stem, f in before.items() if f"{stem}.nut" in finished)
    assert spec["frames_run"] == ran < 96 and spec["chunks_run"] == total - len(finished)
    assert f"{ran} of them now" in r.stderr and f"{ran / spec['wall_s']:.1f} frames/s" in r.stderr
    assert [read_stamp(img) for _, img in frames(out)] == list(range(96))
    assert audio_packets(out) == audio_packets(media.cfr_audio)
    print(f"instance gone {gone_s:.1f} s after the driver's SIGKILL")


def test_two_jobs_on_one_data_dir(media, tmp_path):
    """Two drivers (two private Ray instances) at once on one data dir: both finish, their
    ledgers and job records stay apart, and one machine's telemetry is one node with both
    instances' samples (neither instance's journal recovery took the other's)."""
    import duckdb

    data = tmp_path / "data"
    temp = tempfile.mkdtemp(prefix="ffr-", dir="/tmp")
    env = {**ENV, "RAY_TMPDIR": temp}
    a_out, b_out = tmp_path / "a.mp4", tmp_path / "b.mp4"
    hold = tmp_path / "hold"
    hold.write_text("A waits while this exists")
    a = subprocess.Popen(
        [sys.executable, "-m", "ffray", "swap", str(media.cfr_audio), "-o", str(a_out), "--processor",
         "tests.procs:Gate", "--processor-opt", f"hold={hold}", "--chunk-seconds", "0.8",
         "--actors", "1", "--telemetry-interval", "0.2", "--data-dir", str(data)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.time() + 120
        journals = "telemetry/host/.journal/*/*.arrow"  # open while A's telemetry records
        while time.time() < deadline and a.poll() is None and not list(data.glob(journals)):
            time.sleep(0.1)
        b = ffray("swap", media.cfr_silent, "-o", b_out, "--processor", "stamp", "--actors", "1",
                  "--telemetry-interval", "0.2", "--data-dir", data, env=env)
        assert b.returncode == 0, b.stderr[-2000:]
        assert a.poll() is None  # A ran all along B
        hold.unlink()
        assert a.wait(timeout=180) == 0, a.stderr.read().decode()[-2000:]
    finally:
        if a.poll() is None:
            a.kill()
        kill_tree_by_marker(temp)
        shutil.rmtree(temp, ignore_errors=True)
    assert [read_stamp(img) for _, img in frames(a_out)] == list(range(96))
    assert [read_stamp(img) for _, img in frames(b_out)] == list(range(60))
    specs = [json.loads(p.read_text()) for p in data.glob("jobs/*/job.json")]
    assert sorted(s["status"] for s in specs) == ["done", "done"]
    listed = ffray("jobs", "--data-dir", data)
    assert listed.stdout.count(" done ") == 2, listed.stdout
    recs = duckdb.sql(f"SELECT job_id, status FROM read_parquet('{data}/job_records/**/*.parquet')")
    assert sorted(r[1] for r in recs.fetchall()) == ["done", "done"]
    host = duckdb.sql(f"SELECT node, ray_node, min(ts), max(ts) FROM read_parquet("
                      f"'{data}/telemetry/host/**/*.parquet', hive_partitioning=false) "
                      "GROUP BY node, ray_node ORDER BY min(ts)").fetchall()
    assert len(host) == 2 and host[0][0] == host[1][0], host  # one machine, one node; 2 instances
    assert host[0][3] > host[1][3], host  # A's samples go on after B's: B took none of A's journal
    assert not list(data.glob("telemetry/*/.journal/**/*.arrow"))


def test_a_terminated_job_is_interrupted_and_resumable(media, tmp_path):
    """SIGTERM (like Ctrl-C) ends the job `interrupted`, not `failed`; `ffray resume` finishes it."""
    data, out = tmp_path / "data", tmp_path / "out.mp4"
    temp = tempfile.mkdtemp(prefix="ffr-", dir="/tmp")
    env = {**ENV, "RAY_TMPDIR": temp}
    driver = _slow_swap(media, out, data, env, "--no-telemetry")
    try:
        deadline = time.time() + 120
        while time.time() < deadline and driver.poll() is None:
            if len(list(data.glob("jobs/*/chunks/*.json"))) >= 1:
                break
            time.sleep(0.1)
        driver.send_signal(signal.SIGTERM)
        rc = driver.wait(timeout=60)
        err = driver.stderr.read().decode()
        assert rc == 130 and "interrupted" in err and "Traceback" not in err, err[-2000:]
        job = next((data / "jobs").iterdir())
        spec = json.loads((job / "job.json").read_text())
        assert spec["status"] == "interrupted" and f"ffray resume {job.name}" in spec["error"]
        assert not out.exists() and not list(tmp_path.glob(".out.mp4*"))
        r = ffray("resume", job.name, "--data-dir", data, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        assert json.loads((job / "job.json").read_text())["status"] == "done" and out.exists()
        # the instance stopped while the output was assembled, and the driver waited for it:
        # nothing of it outlives the driver (the watchdog would take 2 s or more)
        _, alive = psutil.wait_procs(marked(temp), timeout=1)
        assert not alive, [(p.pid, p.name()) for p in alive]
    finally:
        if driver.poll() is None:
            driver.kill()
        kill_tree_by_marker(temp)
        shutil.rmtree(temp, ignore_errors=True)
