"""Is a ``running`` job really running? A driver that was SIGKILLed (or whose machine went down)
leaves its ledger saying ``running``; nobody runs it. The ledger names its driver (host, PID and
the process's start time, so a reused PID is not mistaken for it); on the driver's host that
decides, elsewhere the output lock does (the kernel drops it when its holder dies; see
``ffray.cluster.lock``). A job found dead is set ``interrupted`` (resumable), with the reason,
and its job record republished, so ``ffray jobs``, the analytics and the dashboard stop showing it
running.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from ffray.cluster.ledger import JobLedger
from ffray.cluster.lock import holder_of


def driver_identity() -> dict:
    """What the ledger records of the process running a job."""
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": psutil.Process().create_time()}


def process_alive(pid: int, started: float) -> bool:
    """A process with this PID exists and started when the recorded one did."""
    try:
        return abs(psutil.Process(int(pid)).create_time() - float(started)) < 1e-3
    except (psutil.Error, ValueError, TypeError):
        return False


def driver_gone(spec: dict, host: str, alive: Callable[[int, float], bool],
                holder: Callable[[Path], str | None]) -> str | None:
    """Why a ``running`` job has nobody running it, or None (it runs, or cannot be told)."""
    if spec.get("status") != "running":
        return None
    d = spec.get("driver") or {}
    if d.get("host") == host and d.get("pid") is not None:
        if alive(d["pid"], d.get("started")):
            return None
        return f"its driver (pid {d['pid']} on {host}) ended without finishing it"
    if spec.get("output") and holder(Path(spec["output"])) is None:
        return "nobody holds its output lock (its driver ended without finishing it)"
    return None


def reconcile(ledger: JobLedger, host: str | None = None) -> dict:
    """The job's spec, set ``interrupted`` first if its driver is gone."""
    spec = ledger.spec
    why = driver_gone(spec, host or socket.gethostname(), process_alive, holder_of)
    if why is None:
        return spec
    spec = ledger.update(status="interrupted", ended=spec.get("updated") or time.time(),
                         error=f"interrupted: {why}; finish it with `ffray resume {ledger.job_id}`")
    ledger.event(kind="driver_lost", reason=why)
    from ffray.telemetry.spans import publish

    publish(ledger)
    return spec
