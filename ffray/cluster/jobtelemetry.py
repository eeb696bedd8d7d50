"""A job's telemetry actors, from the driver's side: started when the job starts, re-synced as
nodes join, stopped (node-local files pulled) when it ends."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import ray

from ffray.cluster.spec import JobSpec
from ffray.telemetry.actor import ensure_actors, stop_and_collect

log = logging.getLogger("ffray")


def job_utilization(latest: list[dict], uuids: set[str]) -> tuple[float | None, bool | None]:
    """(mean utilization % of the job's GPUs in the nodes' last samples, whether there are GPUs):
    (None, None) before any sample came, (None, False) on CPU-only nodes. Without GPU UUIDs from
    the workers (fake GPUs) every sampled GPU counts."""
    if not latest:
        return None, None
    if not any(d.get("gpu_available") for d in latest):
        return None, False
    util = {u: v for d in latest for u, v in (d.get("util") or {}).items()}
    mine = [v for u, v in util.items() if u in uuids] if uuids & set(util) else list(util.values())
    return (sum(mine) / len(mine) if mine else None), True


class Telemetry:
    """The job's telemetry actors: one per alive node, re-synced as nodes join, stopped (and
    node-local files pulled) when the job ends."""

    @classmethod
    def for_job(cls, job: JobSpec, data_dir: Path) -> Telemetry:
        return cls(data_dir, job.telemetry_interval, job.telemetry_target, job.telemetry_local_dir,
                   job.prometheus_port)

    def __init__(self, data_dir: Path, interval: float = 1.0, target: str | None = None,
                 local_dir: str | None = None, prometheus_port: int | None = None):
        self.data_dir = data_dir
        self.target = target
        self.local = local_dir
        here = ray.util.get_node_ip_address()
        self.shared = {n["NodeID"] for n in ray.nodes() if n.get("NodeManagerAddress") == here} \
            if not self.local else {ray.get_runtime_context().get_node_id()}
        self.sinks: dict[str, Path] = {}
        self.interval = float(interval)
        self.port = prometheus_port
        self.actors = ensure_actors(self.sink_for, self.interval, prometheus_port=self.port)
        self._last = time.time()
        self._asked: dict = {}  # latest() ref -> node id, answers not in yet
        self._asked_at = 0.0
        self.latest: dict[str, dict] = {}  # node id -> its actor's last sample (Recorder.latest)

    def sink_for(self, node_id: str) -> Path | str:
        if self.target:  # every node writes to the filesystem URI directly
            self.sinks[node_id] = self.target
        if node_id not in self.sinks:
            self.sinks[node_id] = self.data_dir if node_id in self.shared else \
                Path(self.local or Path.home() / ".ffray" / "node-telemetry") / node_id
        return self.sinks[node_id]

    def poll(self) -> None:
        """Ask every actor for its last sample about once a second, never waiting: answers are
        taken when they are in (``latest``)."""
        if self._asked:
            ready, _ = ray.wait(list(self._asked), num_returns=len(self._asked), timeout=0)
            for ref in ready:
                nid = self._asked.pop(ref)
                try:
                    self.latest[nid] = ray.get(ref)
                except ray.exceptions.RayError:
                    self.latest.pop(nid, None)
        if not self._asked and time.time() - self._asked_at >= max(1.0, self.interval):
            self._asked_at = time.time()
            for nid, a in self.actors.items():
                try:
                    self._asked[a.latest.remote()] = nid
                except AttributeError:  # an actor of an older ffray shared by another driver
                    pass

    def utilization(self, uuids) -> tuple[float | None, bool | None]:
        return job_utilization(list(self.latest.values()), set(u for u in uuids if u))

    def tick(self) -> None:
        self.poll()
        if time.time() - self._last > 10:  # nodes may have joined
            self._last = time.time()
            self.actors.update(ensure_actors(self.sink_for, self.interval, prometheus_port=self.port,
                                             have=self.actors))

    def stop(self) -> dict:
        try:
            return stop_and_collect(self.actors, self.data_dir, self.sinks)
        except Exception as e:  # telemetry must never fail a finished job
            log.warning("telemetry: could not stop/collect cleanly: %s", e)
            return {}
