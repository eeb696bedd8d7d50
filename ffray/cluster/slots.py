"""``--max-running``: a per-cluster limit on how many submitted videos run at once.

A job submitted with ``--max-running N`` has the entrypoint ``python -m ffray.cluster.slots
--limit N --job ID -- python -m ffray swap ...``: it connects to the cluster, waits for a slot of a
named detached actor (``ffray-slots`` in ffray's namespace: one per cluster, the semaphore), then
runs the swap as its child process and gives the slot back when the child ends. Ray Jobs has no
queue of its own (a job is PENDING only while Ray starts its driver), so the waiting happens here,
and the client's ``ffray submit`` still returns at once.

A slot is held by a *lease*: a small actor the waiting driver owns, so it dies with the driver
(SIGKILL included). The semaphore drops holders whose lease is dead before each grant: a killed
driver cannot keep its slot. A lease that is merely slow to answer (a loaded node) keeps it: Ray
reports a dead owner's actors as dead, so only death, never a timeout, frees a slot.

The log lines ``ffray: queued ...`` / ``ffray: slot granted`` / ``ffray: slot released ... exit N``
(``QUEUED``, ``GRANTED``, ``RELEASED``) are what ``ffray jobs`` reads to show ``queued``; they
carry wall-clock times so a batch's overlap can be checked afterwards.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time

QUEUED = "ffray: queued"
GRANTED = "ffray: slot granted"
RELEASED = "ffray: slot released"
ACTOR = "ffray-slots"
POLL_S = 1.0
PING_S = 10.0  # how long the semaphore waits on one lease's answer before it asks again later


def slot_state(log: str) -> str | None:
    """What a RUNNING slot job's log says of it: ``queued`` (no ``GRANTED`` line yet: waiting,
    or still starting up to ask), ``succeeded``/``failed`` (its swap ended and the slot went back:
    Ray's status lags by the driver's exit), None (running its swap)."""
    lines = log.splitlines()
    if not any(line.startswith(GRANTED) for line in lines):
        return "queued"
    ended = [line for line in lines if line.startswith(RELEASED)]
    if ended:
        return "succeeded" if ended[-1].endswith(" exit 0") else "failed"
    return None


def slot_times(log: str) -> tuple[float, float] | None:
    """(granted, released) wall-clock times from a finished job's log, None if it never ran."""
    got: dict[str, float] = {}
    for line in log.splitlines():
        for key in (GRANTED, RELEASED):
            if line.startswith(key + " at "):
                got[key] = float(line[len(key) + 4:].split()[0])
    return (got[GRANTED], got[RELEASED]) if len(got) == 2 else None


def grant(held: list[str], job_id: str, limit: int) -> bool:
    """The semaphore's rule: a holder keeps its slot; a newcomer gets one while fewer than
    ``limit`` are held (the limit of the job asking: the latest submission's word)."""
    return job_id in held or len(held) < max(1, limit)


def _actor_classes():
    import ray

    @ray.remote(num_cpus=0)
    class Lease:
        def ping(self) -> bool:
            return True

    @ray.remote(num_cpus=0, max_concurrency=1)
    class Slots:
        def __init__(self, ping_s: float = PING_S):
            self.held: dict[str, object] = {}  # job id -> its driver's Lease
            self.ping_s = ping_s

        def acquire(self, job_id: str, limit: int, lease: list) -> bool:
            self._prune()
            if not grant(list(self.held), job_id, limit):
                return False
            self.held[job_id] = lease[0]
            return True

        def release(self, job_id: str) -> None:
            self.held.pop(job_id, None)

        def holders(self) -> list[str]:
            self._prune()
            return list(self.held)

        def _prune(self) -> None:
            pings = {j: lease.ping.remote() for j, lease in self.held.items()}  # all at once
            deadline = time.monotonic() + self.ping_s
            for j, ref in pings.items():
                try:
                    ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
                except ray.exceptions.RayActorError:  # its driver is gone
                    self.held.pop(j, None)
                except ray.exceptions.GetTimeoutError:  # alive but slow: it keeps its slot
                    pass

    return Lease, Slots


def _stamp(text: str, tail: str = "") -> None:
    print(f"{text} at {time.time():.3f}{tail}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ffray.cluster.slots")
    p.add_argument("--limit", type=int, required=True)
    p.add_argument("--job", required=True)
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    print(f"{QUEUED} (waiting for one of this cluster's {a.limit} slot(s))", flush=True)
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    stop = {"asked": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(asked=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(asked=True))

    import ray

    from ffray.cluster.runtime import NAMESPACE
    from ffray.settings import token_auth_for_clients

    token_auth_for_clients()
    ray.init(address="auto", namespace=NAMESPACE, log_to_driver=False, logging_level="ERROR")
    signal.signal(signal.SIGTERM, lambda *_: stop.update(asked=True))  # ray.init replaced it
    lease_cls, slots_cls = _actor_classes()
    lease = lease_cls.remote()
    slots = slots_cls.options(name=ACTOR, namespace=NAMESPACE, lifetime="detached",
                              get_if_exists=True).remote()
    while not ray.get(slots.acquire.remote(a.job, a.limit, [lease])):
        if stop["asked"]:
            print("ffray: interrupted (while queued: nothing started)", flush=True)
            return 130
        time.sleep(POLL_S)
    _stamp(GRANTED)
    rc = None
    try:
        if stop["asked"]:
            print("ffray: interrupted (before it started: nothing started)", flush=True)
            return 130
        child = subprocess.Popen(cmd)  # an argument list; gets the supervisor's SIGTERM itself
        while rc is None:
            try:
                rc = child.wait()
            except KeyboardInterrupt:  # noqa: PERF203 - keep waiting: the child ends the job
                continue
        return rc
    finally:
        ray.get(slots.release.remote(a.job))
        _stamp(f"{RELEASED}", f" exit {rc if rc is not None else 'none'}")


if __name__ == "__main__":
    sys.exit(main())
