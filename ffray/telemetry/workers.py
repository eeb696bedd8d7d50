"""Per-worker CPU and memory: ffray's Ray worker processes and the processes they started.

A worker is found by its process title: Ray titles an actor's process ``ray::ChunkWorker`` (and
``ray::ChunkWorker.<method>`` while a method runs; psutil's ``name()`` gives the whole title, the
kernel's 15-character ``comm`` being extended from the command line). Its descendants (the codec
processes ``python -m ffray.engine.codec_child``, started by the worker) are summed into its row,
so one row per worker per sample: CPU % (of one core, psutil's convention: 16 busy codec
processes read ~1600 %) and RSS of the worker with its descendants, and of the worker alone.

Which workers: where the scanner runs inside Ray (the TelemetryActor), those of its own raylet
(``parent``: Ray workers, the telemetry actor included, are the raylet's children), so two Ray
instances on one machine (or several raylets of ``cluster_utils.Cluster``) each record their own
workers under their own node name; ``ffray telemetry record`` (no raylet) records every worker of
the machine.

One pass over the process table per sample (``psutil.process_iter`` with name and ppid, both
from ``/proc/<pid>/stat``); CPU and memory are read for the workers' families only. CPU % comes
from psutil's ``cpu_percent(None)`` on the instances ``process_iter`` caches (the CPU time since
the previous call); a process seen for the first time has no previous call: a new worker's row
has no CPU value, a new descendant adds nothing until its second sample. Those instances are
psutil's, one per process of the Python process: two scanners in one process would each see the
CPU since the other's read (the product has one per telemetry actor / ``telemetry record``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

import psutil

WORKER_TITLE = "ray::ChunkWorker"  # the actor class of ffray.cluster.worker
GONE = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)


def is_worker(name: str) -> bool:
    return name == WORKER_TITLE or name.startswith(WORKER_TITLE + ".")


def actor_of(name: str) -> str:
    """``ray::ChunkWorker.process`` -> ``ChunkWorker``."""
    return name.removeprefix("ray::").split(".", 1)[0]


def families(workers: list[int], kids: dict[int, list[int]]) -> dict[int, list[int]]:
    """{worker pid: [worker pid, its descendants...]} from a ppid -> children map (pure). A
    worker below another worker is a family of its own, not part of the one above."""
    out = {}
    top = set(workers)
    for w in workers:
        members, todo = [w], list(kids.get(w, []))
        while todo:
            p = todo.pop()
            if p in top or p in members:
                continue
            members.append(p)
            todo.extend(kids.get(p, []))
        out[w] = members
    return out


class WorkerScanner:
    """``scan()`` -> one row per worker process on this machine (WORKER_CPU columns without the
    common ones). ``is_worker``: which process names are workers (tests pass their own);
    ``parent``: only workers that are this process's children (a raylet's pid), None: all."""

    def __init__(self, is_worker: Callable[[str], bool] = is_worker, parent: int | None = None):
        self.is_worker, self.parent = is_worker, parent
        self._primed: set[tuple[int, float]] = set()  # (pid, start time) with a previous CPU read

    def scan(self) -> list[dict]:
        kids: dict[int, list[int]] = {}
        procs: dict[int, psutil.Process] = {}
        names: dict[int, str] = {}
        for p in psutil.process_iter(["ppid"]):
            ppid = p.info.get("ppid")
            procs[p.pid] = p
            if ppid is not None:
                kids.setdefault(ppid, []).append(p.pid)
            if self.parent is not None and ppid != self.parent:
                continue  # names read only where a worker can be (psutil may read cmdline for one)
            try:
                name = p.name()
            except GONE:
                continue
            if name and self.is_worker(name):
                names[p.pid] = name
        rows, primed = [], set()
        for w, members in families(sorted(names), kids).items():
            row = {"pid": w, "actor": actor_of(names[w]), "started": None, "cpu_percent": None,
                   "self_cpu_percent": None, "rss_bytes": None, "self_rss_bytes": None, "procs": 0}
            cpu, rss = 0.0, 0
            for pid in members:
                p = procs[pid]
                try:
                    with p.oneshot():
                        c, r, created = p.cpu_percent(None), p.memory_info().rss, p.create_time()
                except GONE:
                    continue
                key = (pid, created)
                fresh = key not in self._primed
                primed.add(key)
                if pid == w:
                    row["started"] = datetime.fromtimestamp(created, tz=timezone.utc)
                    row["self_cpu_percent"] = None if fresh else c
                    row["self_rss_bytes"] = r
                    if fresh:
                        cpu = None
                if cpu is not None and not fresh:
                    cpu += c
                rss += r
                row["procs"] += 1
            if row["started"] is None:  # the worker itself ended during the scan
                continue
            row["cpu_percent"], row["rss_bytes"] = cpu, rss
            rows.append(row)
        self._primed = primed
        return rows


def raylet_pid() -> int | None:
    """This process's raylet (its parent, for a Ray worker), or None outside Ray."""
    try:
        parent = psutil.Process().parent()
        return parent.pid if parent is not None and parent.name() == "raylet" else None
    except GONE:
        return None
