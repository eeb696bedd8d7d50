"""The driver's Ray teardown: a private instance stops on a thread of its own while the output
is assembled, and the job joins it before it returns."""

from __future__ import annotations

import threading
import time

import pytest

from ffray.cluster import runtime
from ffray.cluster.runtime import ClusterInfo, Teardown


def _info(started_here: bool) -> ClusterInfo:
    return ClusterInfo(address="local", started_here=started_here, cpus=2, gpus=0, nodes=1)


def test_a_private_instance_stops_in_the_background_and_join_waits(monkeypatch):
    release, stopped, caller = threading.Event(), [], threading.get_ident()

    def slow_disconnect(info):
        assert threading.get_ident() != caller  # not on the driver's thread
        release.wait(10)
        stopped.append(info)

    monkeypatch.setattr(runtime, "disconnect", slow_disconnect)
    t = Teardown.start(_info(True))
    assert not stopped  # start returned while the instance is still stopping
    joiner = threading.Thread(target=t.join)
    joiner.start()
    time.sleep(0.2)
    assert joiner.is_alive()  # join waits for it
    release.set()
    joiner.join(10)
    assert not joiner.is_alive() and len(stopped) == 1


def test_an_attached_cluster_disconnects_at_once_and_errors_reach_the_joiner(monkeypatch):
    calls = []
    monkeypatch.setattr(runtime, "disconnect", lambda info: calls.append(threading.get_ident()))
    Teardown.start(_info(False)).join()  # nothing started here: no thread
    assert calls == [threading.get_ident()]

    def broken(info):
        raise RuntimeError("raylet would not stop")

    monkeypatch.setattr(runtime, "disconnect", broken)
    t = Teardown.start(_info(True))
    with pytest.raises(RuntimeError, match="would not stop"):
        t.join()
    t.join()  # raised once; a second join is a no-op



JOB = """
import sys
from pathlib import Path

import ray

from ffray.cluster import jobs
from ffray.cluster.jobs import SwapRequest, prepare_swap, run_job
from ffray.processors import ProcessorSpec
from ffray.video.encode import EncodeSettings
from ffray.video.sample import make_demo_video

work = Path(sys.argv[1])
live, start = [], jobs.Teardown.start


def spy(info):  # object refs this driver still holds as Ray starts to stop
    counts = ray._private.worker.global_worker.core_worker.get_all_reference_counts()
    live.append(sum(1 for c in counts.values() if c["local"] > 0))
    return start(info)


jobs.Teardown.start = spy
src = make_demo_video(work / "in.mp4", seconds=2, width=320, height=240)
weights = {name: work / f"{name}.bin" for name in ("a", "b", "c")}
for i, p in enumerate(weights.values()):
    p.write_bytes(bytes([i]) * 100_000)
proc = ProcessorSpec(kind="tests.procs:Weighted",
                     params={"model_paths": {k: str(p) for k, p in weights.items()}})
req = SwapRequest(input=str(src), output=str(work / "out.mp4"), chunk_seconds=0.5, processor=proc,
                  encode=EncodeSettings())
run_job(prepare_swap(req, work / "data"))
print("live", live, ray.is_initialized())
"""


@pytest.mark.slow
def test_a_real_job_holds_no_object_ref_when_its_instance_stops(tmp_path):
    """An object ref freed on one thread while Ray stops on another ends the process (Ray
    2.60's core worker: "already been shutdown"; seen on the H200 when the teardown started
    inside the frame holding the model bytes' refs). A job on a private instance whose
    processor takes model files as the face swap does (model bytes, payloads, workers, telemetry
    actors) holds none when its teardown starts."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    from tests.test_cli_runs import kill_tree_by_marker

    temp = tempfile.mkdtemp(prefix="ffr-", dir="/tmp")  # Ray's socket paths must stay short
    try:
        r = subprocess.run([sys.executable, "-c", JOB, str(tmp_path)], capture_output=True,
                           text=True, timeout=240, env={**os.environ, "RAY_TMPDIR": temp})
    finally:
        kill_tree_by_marker(temp)  # what a crashed driver left
        shutil.rmtree(temp, ignore_errors=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "live [0] False" in r.stdout, r.stdout
    assert (tmp_path / "out.mp4").exists()
