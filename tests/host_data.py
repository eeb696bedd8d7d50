"""A CPU-only data dir as a machine without NVML records it: the real Sampler with no GPU backend
(host rows only, ``gpu_available=false``) into the real TelemetryStore, for ``nodes`` nodes."""

from __future__ import annotations

from pathlib import Path

from ffray.telemetry.sampler import Sampler
from ffray.telemetry.store import TelemetryStore


def build_cpu(root: Path, t0: float, seconds: int = 90, nodes=("cpu0", "cpu1")) -> Path:
    for node in nodes:
        store = TelemetryStore(root / "telemetry", node, roll_seconds=30)
        sampler = Sampler(node, None)
        for i in range(seconds):
            store.append(sampler.sample(t0 + i), t0 + i)
        store.close()
    return root
