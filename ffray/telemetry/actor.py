"""TelemetryActor: exactly one per alive node, sampling on a background thread.

Named ``ffray-telemetry-<node-id>`` in the ``ffray`` namespace, pinned to its node with a hard
node-affinity, ``num_cpus=0``, created with ``get_if_exists`` so two drivers share it. It writes
to ``sink`` (the data dir when the node shares the driver's storage, else a node-local folder
whose closed files the driver pulls with ``pull``).
"""

from __future__ import annotations

import threading
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ffray.telemetry.recorder import Recorder
from ffray.telemetry.sampler import open_backend
from ffray.telemetry.sink import is_uri
from ffray.telemetry.workers import raylet_pid

NAMESPACE = "ffray"


class TelemetryActor:
    def __init__(self, sink: str, interval: float = 1.0, roll_seconds: float = 60.0,
                 prometheus_port: int | None = None):
        from ffray.telemetry.nodes import this_node

        self.node, self.ray_node = this_node()  # the host's name; the Ray node id beside it
        self.target = str(sink)
        self.sink = Path(sink) if not is_uri(sink) else None
        self.interval = max(0.2, float(interval))
        self.rec = Recorder(self.target, self.node, open_backend(), roll_seconds,
                            prometheus_port=prometheus_port, ray_node=self.ray_node,
                            workers_of=raylet_pid())  # this raylet's workers only
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.rec.run, args=(self.interval,),
                                        kwargs={"stop": self._stop}, daemon=True)
        self._thread.start()

    def info(self) -> dict:
        r = self.rec
        return {"node": self.node, "ray_node": self.ray_node, "gpus": [d.uuid for d in r.sampler.devices],
                "gpu_available": r.sampler.gpu_available, "samples": r.samples,
                "busy_s": r.busy_s, "alerts": r.alert_count, "interval": self.interval,
                "sink": self.target}

    def latest(self) -> dict:
        """The last sample's GPU utilization (``Recorder.latest``), for the driver's progress line."""
        return self.rec.latest()

    def flush(self) -> list[str]:
        """Roll the open window to Parquet now."""
        return [str(p) for p in self.rec.roll()]

    def pull(self) -> list[tuple[str, bytes]]:
        """Closed Parquet files (relative path, bytes), for the driver to copy (no shared storage)."""
        if self.sink is None:  # a filesystem URI: every file is already there
            return []
        return [(str(p.relative_to(self.sink)), p.read_bytes())
                for p in sorted(self.sink.glob("telemetry/**/*.parquet"))]

    def stop(self, retention_days: float = 7.0) -> dict:
        from ffray.telemetry.store import apply_retention, compact_closed_days

        self._stop.set()
        self._thread.join(timeout=10)
        self.rec.close()
        if self.sink is not None:  # retention/compaction on local folders
            root = self.sink / "telemetry"
            apply_retention(root, retention_days)
            compact_closed_days(root, self.node)
        return self.info()


def actor_name(node_id: str) -> str:
    return f"ffray-telemetry-{node_id}"


def ensure_actors(sink_for, interval: float = 1.0, roll_seconds: float = 60.0,
                  prometheus_port: int | None = None, have: dict | None = None) -> dict[str, object]:
    """One TelemetryActor on every alive node that has none in ``have`` (pass the handles you
    hold: replacing a held handle lets the actor go out of scope). ``sink_for(node_id)`` gives
    each node's folder. Call again when nodes join."""
    cls = ray.remote(TelemetryActor)
    actors = {}
    for n in ray.nodes():
        if not n.get("Alive") or n["NodeID"] in (have or {}):
            continue
        nid = n["NodeID"]
        actors[nid] = cls.options(
            name=actor_name(nid), namespace=NAMESPACE, get_if_exists=True, num_cpus=0,
            max_concurrency=4,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=nid, soft=False),
        ).remote(str(sink_for(nid)), interval, roll_seconds, prometheus_port)
    return actors


def stop_and_collect(actors: dict[str, object], data_dir: Path, sinks: dict[str, Path]) -> dict:
    """Stop every actor; copy the files of nodes whose sink is not the data dir (no shared
    storage) into it. Returns per-node info."""
    infos = {}
    for nid, a in actors.items():
        try:
            infos[nid] = ray.get(a.stop.remote())
            if not is_uri(sinks[nid]) and Path(sinks[nid]).resolve() != Path(data_dir).resolve():
                for rel, data in ray.get(a.pull.remote()):
                    dest = Path(data_dir) / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    tmp = dest.with_name(f".{dest.name}.tmp")
                    tmp.write_bytes(data)
                    tmp.replace(dest)
        except ray.exceptions.RayError as e:  # one lost node must not lose the others' data
            infos[nid] = {"error": str(e).splitlines()[0]}
        ray.kill(a)
    return infos
