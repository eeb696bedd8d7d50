"""A CPU-only data dir as a machine without NVML records it: the real Sampler with no GPU backend
(host rows only, ``gpu_available=false``) into the real TelemetryStore, for ``nodes`` nodes, and
``worker_cpu`` rows of two workers per node (a busy one, a lighter one; made up here: the process
scan itself is tested on real processes in test_worker_cpu)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from ffray.telemetry.sampler import Sampler
from ffray.telemetry.store import TelemetryStore


def build_cpu(root: Path, t0: float, seconds: int = 90, nodes=("cpu0", "cpu1")) -> Path:
    for n, node in enumerate(nodes):
        store = TelemetryStore(root / "telemetry", node, roll_seconds=30)
        sampler = Sampler(node, None)
        for i in range(seconds):
            rows = sampler.sample(t0 + i)
            rows["worker_cpu"] = [_worker(r, pid, busy + 40 * n, i) for r in rows["host"][:1]
                                  for pid, busy in ((1000, 180.0), (2000, 60.0))]
            store.append(rows, t0 + i)
        store.close()
    return root


def _worker(host: dict, pid: int, busy: float, i: int) -> dict:
    base = {k: host[k] for k in ("schema_version", "ts", "node", "ray_node")}
    cpu = busy * (1.0 + 0.2 * ((i // 7) % 2))
    return {**base, "pid": pid, "actor": "ChunkWorker", "cpu_percent": cpu, "self_cpu_percent": cpu / 5,
            "started": datetime.fromtimestamp(host["ts"].timestamp() - i - 5, tz=timezone.utc),
            "rss_bytes": 300 << 20, "self_rss_bytes": 200 << 20, "procs": 3}
