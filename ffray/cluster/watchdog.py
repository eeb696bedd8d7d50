"""A watchdog that tears down ffray's private Ray instance when its driver dies without doing so
(SIGKILL, OOM kill, a crash).

Why it is needed (Ray 2.60, measured on a SIGKILLed ``ffray swap``): Ray's local instance shares
its GCS server and raylet's fate with the driver (``PR_SET_PDEATHSIG``) and its workers exit
when the raylet goes, but ``ray::DashboardAgent`` and ``ray::RuntimeEnvAgent`` notice the
raylet's death and then block for 60 s publishing that error to the GCS server, which is gone
(``publish_error_to_driver``, a fixed 60 s timeout). Ray's own reaper (``ray_process_reaper``)
kills its whole process group, which is the user's shell job; this one kills only the processes
of the instance, by PID.

The driver starts it right after ``ray.init`` with the PIDs of the children it had before
(``start``); it runs in a session of its own (a terminal's Ctrl-C or a group kill does not reach
it) and, every ``PERIOD`` seconds, notes the driver's other descendants (PID and start time,
so a reused PID is never killed). The driver holds the write end of its stdin: a clean shutdown
writes ``STOP`` and closes it, and the watchdog exits. End of file without ``STOP`` means the
driver is gone: every noted process still running gets SIGTERM, then SIGKILL after ``GRACE``
seconds.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys

import psutil

PERIOD = 0.5
GRACE = 2.0
STOP = b"stop\n"


def start(exclude: set[int]) -> subprocess.Popen:
    """Start the watchdog of this process; ``exclude``: PIDs of children that are not Ray's."""
    args = [sys.executable, "-m", "ffray.cluster.watchdog", str(os.getpid()),
            ",".join(str(p) for p in sorted(exclude))]
    return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


def stop(proc: subprocess.Popen | None) -> None:
    """The driver shut Ray down itself: tell the watchdog and let it go."""
    if proc is None:
        return
    try:
        proc.stdin.write(STOP)
        proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def descendants(pid: int, exclude: set[int]) -> dict[int, float]:
    """``{pid: start time}`` of ``pid``'s descendants, without the subtrees of ``exclude``. One
    pass over the process table (``Process.children()`` rescans it for every process: with a
    worker's sixteen codec processes that cost a fifth of a core every half second)."""
    kids: dict[int, list[tuple[int, float]]] = {}
    for p in psutil.process_iter(["ppid", "create_time"]):
        info = p.info
        if info.get("ppid") is not None and info.get("create_time") is not None:
            kids.setdefault(info["ppid"], []).append((p.pid, info["create_time"]))
    out: dict[int, float] = {}
    todo = [k for k in kids.get(pid, []) if k[0] not in exclude]
    while todo:
        child, created = todo.pop()
        if child in out:
            continue
        out[child] = created
        todo.extend(kids.get(child, []))
    return out


def reap(noted: dict[int, float], grace: float = GRACE) -> list[int]:
    """SIGTERM, then SIGKILL, every noted process that still runs (same PID and start time) and
    its children; returns the PIDs signalled."""
    procs = []
    for pid, created in noted.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() != created:
                continue
            procs.append(p)
            procs.extend(p.children(recursive=True))
        except psutil.Error:
            continue
    procs = list({p.pid: p for p in procs if p.pid != os.getpid()}.values())
    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace)
    return [p.pid for p in procs]


def watch(driver: int, exclude: set[int], fd: int = 0) -> bool:
    """Note the driver's descendants until ``fd`` ends; reap them unless told ``STOP`` first.
    True when it reaped."""
    exclude = exclude | {os.getpid()}
    noted: dict[int, float] = {}
    got = b""
    while True:  # exited ones are dropped, so a long job's worker churn does not pile up
        noted = {p: t for p, t in {**noted, **descendants(driver, exclude)}.items()
                 if psutil.pid_exists(p)}
        ready, _, _ = select.select([fd], [], [], PERIOD)
        if not ready:
            continue
        data = os.read(fd, 64)
        if data:
            got += data
            continue
        break
    if got.endswith(STOP):
        return False
    reap(noted)
    return True


def main(argv: list[str]) -> int:
    for s in (signal.SIGINT, signal.SIGHUP):  # only the end of the driver ends the watchdog
        signal.signal(s, signal.SIG_IGN)
    driver = int(argv[0])
    exclude = {int(p) for p in argv[1].split(",") if p} if len(argv) > 1 else set()
    watch(driver, exclude)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
