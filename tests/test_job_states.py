"""Honest job states and nothing left behind, without Ray: a ``running`` ledger whose driver is
gone reads (and is recorded) ``interrupted``; ``ffray jobs clean`` removes what its policy says;
the watchdog reaps a dead driver's processes by PID and leaves a clean one's alone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from ffray.cli import main
from ffray.cluster.catalog import JobEntry, duration, to_clean
from ffray.cluster.ledger import JobLedger
from ffray.cluster.liveness import driver_gone, driver_identity, process_alive, reconcile

HOST = "host-a"


def _spec(status="running", **driver):
    return {"status": status, "output": "/x/o.mp4", "driver": {"host": HOST, "pid": 42, "started": 1.0,
                                                               **driver}}


def test_a_running_job_is_gone_when_its_driver_is():
    never = lambda pid, started: False  # noqa: E731
    always = lambda pid, started: True  # noqa: E731
    held = lambda out: "the-job"  # noqa: E731
    free = lambda out: None  # noqa: E731
    assert driver_gone(_spec(), HOST, always, free) is None  # its driver runs
    assert "pid 42 on host-a" in driver_gone(_spec(), HOST, never, held)  # the pid decides here
    assert driver_gone(_spec("done"), HOST, never, free) is None  # only running jobs are checked
    # on another host the output lock decides (the kernel drops it when the driver dies)
    assert driver_gone(_spec(host="host-b"), HOST, never, held) is None
    assert "output lock" in driver_gone(_spec(host="host-b"), HOST, never, free)
    assert "output lock" in driver_gone({"status": "running", "output": "/o"}, HOST, never, free)


def test_process_alive_checks_the_start_time_too():
    me = driver_identity()
    assert process_alive(me["pid"], me["started"])
    assert not process_alive(me["pid"], me["started"] - 5)  # a reused pid is another process
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(p.pid).create_time()
    p.wait()
    assert not process_alive(p.pid, started)


def _ledger(data_dir: Path, status: str, **fields) -> JobLedger:
    led = JobLedger.create(data_dir, {"input": "/in.mp4", "output": str(data_dir / "o.mp4"),
                                      "chunks": 3})
    led.update(status=status, **fields)
    return led


def test_reconcile_records_a_dead_drivers_job_interrupted(data_dir):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    dead = {"host": driver_identity()["host"], "pid": p.pid, "started": psutil.Process(p.pid).create_time()}
    p.wait()
    led = _ledger(data_dir, "running", driver=dead, created=time.time())
    live = _ledger(data_dir, "running", driver=driver_identity())
    spec = reconcile(led)
    assert spec["status"] == "interrupted" and f"ffray resume {led.job_id}" in spec["error"]
    assert led.spec["status"] == "interrupted"
    assert [e["kind"] for e in led.events()] == ["driver_lost"]
    rec = pq.read_table(next(data_dir.glob(f"job_records/date=*/{led.job_id}.parquet"))).to_pylist()
    assert rec[0]["status"] == "interrupted"  # the analytics' copy says so too
    assert reconcile(live)["status"] == "running" and live.events() == []


def test_jobs_lists_true_states(data_dir, capsys):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    dead = {"host": driver_identity()["host"], "pid": p.pid, "started": psutil.Process(p.pid).create_time()}
    p.wait()
    led = _ledger(data_dir, "running", driver=dead)
    assert main(["jobs", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert f"{led.job_id}  interrupted" in out and f"ffray resume {led.job_id}" in out
    assert "running" not in out.split("\n")[0]


def test_clean_policy():
    now = 10 * 86400.0

    def e(status, days_ago):
        return JobEntry(job_id=f"{status}-{days_ago}", root=Path("/nowhere"), status=status,
                        chunks_done=0, chunks=1, input=None, output=None, when=now - days_ago * 86400)

    jobs = [e("done", 0), e("done", 8), e("failed", 8), e("interrupted", 1), e("running", 30),
            e("created", 9)]
    ids = lambda xs: sorted(x.job_id for x in xs)  # noqa: E731
    assert ids(to_clean(jobs, now)) == ["done-0", "done-8"]
    assert ids(to_clean(jobs, now, duration("7d"))) == ["done-8"]
    assert ids(to_clean(jobs, now, duration("7d"), include_resumable=True)) == \
        ["created-9", "done-8", "failed-8"]
    assert "running-30" not in ids(to_clean(jobs, now, 0, include_resumable=True))
    assert duration("36h") == 36 * 3600 and duration("2") == 2 * 86400 and duration("90m") == 5400
    with pytest.raises(Exception, match="not a duration"):
        duration("soon")


def test_jobs_clean_removes_finished_ledgers_only(data_dir, capsys):
    old = _ledger(data_dir, "done", ended=time.time() - 9 * 86400)
    (old.root / "chunks" / "000000.nut").write_bytes(b"x" * 1000)
    new = _ledger(data_dir, "done", ended=time.time())
    failed = _ledger(data_dir, "failed", ended=time.time() - 9 * 86400)
    live = _ledger(data_dir, "running", driver=driver_identity())
    assert main(["jobs", "clean", "--older-than", "7d", "--dry-run", "--data-dir", str(data_dir)]) == 0
    assert f"would remove {old.job_id}" in capsys.readouterr().out and old.root.exists()
    assert main(["jobs", "clean", "--older-than", "7d", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert not old.root.exists() and new.root.exists() and failed.root.exists()
    assert "3 job(s) kept" in out
    assert main(["jobs", "clean", "--all", "--data-dir", str(data_dir)]) == 0
    assert not new.root.exists() and not failed.root.exists() and live.root.exists()
    assert main(["jobs", "--older-than", "1d", "--data-dir", str(data_dir)]) == 2  # one line, no crash


_DRIVER = """
import subprocess, sys, time
from ffray.cluster import watchdog
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"],
    start_new_session=True)
dog = watchdog.start(exclude=set())
print(child.pid, dog.pid, flush=True)
if sys.argv[1] == "clean":
    time.sleep(1.5)
    watchdog.stop(dog)
    print("stopped", flush=True)
else:
    time.sleep(120)
"""


def _driver(mode: str) -> tuple[subprocess.Popen, int, int]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    d = subprocess.Popen([sys.executable, "-c", _DRIVER, mode], stdout=subprocess.PIPE, text=True,
                         env=env)
    child, dog = map(int, d.stdout.readline().split())
    return d, child, dog


def test_the_watchdog_reaps_a_killed_drivers_processes():
    d, child, dog = _driver("kill")
    try:
        time.sleep(1.5)  # the watchdog has noted the child (every 0.5 s)
        d.kill()
        d.wait()
        gone, alive = psutil.wait_procs([psutil.Process(child), psutil.Process(dog)], timeout=15)
        assert not alive, f"left behind: {alive}"  # the child ignored SIGTERM: it got SIGKILL
    finally:
        for pid in (child, dog):
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass


def test_the_watchdog_leaves_a_clean_drivers_processes_alone():
    d, child, dog = _driver("clean")
    try:
        assert d.stdout.readline().strip() == "stopped"
        d.wait(timeout=10)
        assert not psutil.pid_exists(dog) or psutil.Process(dog).status() == psutil.STATUS_ZOMBIE
        assert psutil.Process(child).is_running()  # the driver shut down itself: nothing reaped
    finally:
        try:
            psutil.Process(child).kill()
        except psutil.Error:
            pass

