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
