"""Telemetry overhead: the recording loop (sample, journal, roll, alerts) for a while.

    python scripts/bench_telemetry.py [--backend nvml|fake] [--gpus 8] [--interval 1] [--duration 30]

Prints JSON: wall ms per sample, per sample per GPU, and the share of one core the loop used
(process CPU time / wall time). The fake backend (tests/fake_nvml.py) measures ffray's own cost;
nvml adds the driver calls. Record results in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffray.telemetry.recorder import Recorder  # noqa: E402
from ffray.telemetry.sampler import open_backend  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=["nvml", "fake"], default="fake")
    ap.add_argument("--gpus", type=int, default=8, help="fake GPUs")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--roll-seconds", type=float, default=60.0)
    a = ap.parse_args()
    if a.backend == "fake":
        from tests.fake_nvml import FakeGpus

        backend = FakeGpus(a.gpus)
    else:
        backend = open_backend()
    n_gpus = len(backend.devices()) if backend is not None else 0
    with tempfile.TemporaryDirectory() as d:
        rec = Recorder(Path(d), "bench", backend, a.roll_seconds)
        rec.step()  # warm-up: the first read returns NVML's whole sample buffer
        rec.samples, rec.busy_s = 0, 0.0
        c0, w0 = time.process_time(), time.perf_counter()
        rec.run(a.interval, a.duration)
        rec.close()
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    per = 1000 * rec.busy_s / max(1, rec.samples)
    print(json.dumps({"backend": a.backend, "gpus": n_gpus, "interval_s": a.interval,
                      "samples": rec.samples, "ms_per_sample": round(per, 3),
                      "ms_per_sample_per_gpu": round(per / max(1, n_gpus), 3),
                      "core_share_pct": round(100 * cpu / wall, 3)}, indent=2))


if __name__ == "__main__":
    main()
