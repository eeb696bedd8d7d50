"""One node's recording loop: sample, store, check alerts, export to Prometheus. Used by the
TelemetryActor and by ``ffray telemetry record``."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from ffray.telemetry.alerts import DEFAULT_RULES, AlertEngine
from ffray.telemetry.sampler import Sampler
from ffray.telemetry.sink import Sink, is_uri, join
from ffray.telemetry.store import TelemetryStore
from ffray.telemetry.workers import WorkerScanner


def latest(rows: dict[str, list[dict]], gpu_available: bool, now: float) -> dict:
    """What a live progress line needs from one sample: ``{"ts", "gpu_available", "util":
    {gpu_uuid: util %}}``."""
    return {"ts": now, "gpu_available": bool(gpu_available),
            "util": {r["gpu_uuid"]: r["util_gpu"] for r in rows.get("gpu", [])
                     if r.get("util_gpu") is not None}}


class Recorder:
    def __init__(self, data_dir: Path | str, node: str, backend, roll_seconds: float = 60.0,
                 rules=DEFAULT_RULES, prometheus_port: int | None = None,
                 prometheus_host: str = "127.0.0.1", ray_node: str | None = None,
                 workers_of: int | None = None):
        """``node``: the telemetry name (a host); ``ray_node``: the Ray node id, also the
        journals' writer id (several writers may share a host name); ``workers_of``: record only
        the ffray workers that are children of this pid (the node's raylet), None: all."""
        self.sampler = Sampler(node, backend, ray_node=ray_node, workers=WorkerScanner(parent=workers_of))
        writer = ray_node or ""
        if is_uri(data_dir):  # journals stay on the node; closed files go to the filesystem URI
            from ffray.settings import data_dir as local_data_dir

            local = local_data_dir() / "telemetry-journal" / node
            sink = Sink(join(data_dir, "telemetry"))
            self.store = TelemetryStore(local, node, roll_seconds, sink=sink, writer=writer)
        else:
            self.store = TelemetryStore(Path(data_dir) / "telemetry", node, roll_seconds, writer=writer)
        self.alerts = AlertEngine(rules)
        self.exporter = None
        if prometheus_port is not None:
            from ffray.telemetry.exporter import Exporter

            self.exporter = Exporter(prometheus_port, prometheus_host)
        self.hostname = socket.gethostname()
        self._lock = threading.Lock()  # step/roll/close may come from different threads
        self.samples = 0
        self.busy_s = 0.0
        self.alert_count = 0
        self._latest: dict = {}

    def step(self, now: float | None = None) -> dict[str, list[dict]]:
        with self._lock:
            return self._step(now)

    def _step(self, now: float | None) -> dict[str, list[dict]]:
        t0 = time.perf_counter()
        now = time.time() if now is None else now
        rows = self.sampler.sample(now)
        rows["alerts"] = self.alerts.check(rows["gpu"])
        self.alert_count += sum(a["state"] == "firing" for a in rows["alerts"])
        self.store.append(rows, now)
        if self.exporter is not None:
            self.exporter.update(rows["gpu"], self.hostname)
        self.samples += 1
        self.busy_s += time.perf_counter() - t0
        self._latest = latest(rows, self.sampler.gpu_available, now)
        return rows

    def latest(self) -> dict:
        """The last sample's GPU utilization (``latest``); {} before the first sample."""
        return dict(self._latest)

    def run(self, interval: float, duration: float | None = None, stop=None) -> None:
        start = nxt = time.time()
        while (duration is None or time.time() - start < duration) and not (stop and stop.is_set()):
            self.step()
            nxt += interval
            delay = max(0.0, nxt - time.time())
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)

    def roll(self):
        with self._lock:
            return self.store.roll()

    def close(self):
        with self._lock:
            if self.exporter is not None:
                self.exporter.close()
            return self.store.close()
