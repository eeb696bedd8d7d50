"""A test-only GPU backend with the NvmlBackend methods, replaying a constructed series."""

from __future__ import annotations

from ffray.telemetry.sampler import Device


class FakeGpus:
    def __init__(self, n: int = 2, node: str = "n0"):
        self.devs = [Device(i, f"GPU-{node}-{i:02d}", "Fake H100") for i in range(n)]
        self.t = 0.0  # seconds since start, set by the test
        self.util = {d.index: 50.0 for d in self.devs}
        self.watts = {d.index: 300.0 for d in self.devs}
        self.energy_mj = {d.index: 0 for d in self.devs}
        self.procs: dict[int, list] = {d.index: [] for d in self.devs}
        self.fail_fields: set[str] = set()

    def devices(self):
        return list(self.devs)

    def advance(self, dt: float) -> None:
        self.t += dt
        for i in self.energy_mj:
            self.energy_mj[i] += int(self.watts[i] * dt * 1000)

    def read(self, index: int) -> dict:
        out = {"util_gpu": self.util[index], "util_mem": self.util[index] / 2,
               "mem_used_bytes": int(1e9 + index), "mem_total_bytes": int(80e9), "temp_c": 60.0,
               "power_w": self.watts[index], "energy_mj": self.energy_mj[index],
               "sm_clock_mhz": 1980, "mem_clock_mhz": 2619,
               "clock_event_reasons": 0x20 if self.util[index] > 99 else 0,
               "pcie_tx_bytes": int(self.t * 1e6), "pcie_rx_bytes": int(self.t * 2e6),
               "enc_util": 0.0, "dec_util": 0.0}
        for f in self.fail_fields:
            out.pop(f, None)
        return out

    def util_samples(self, index: int, since_us: int):
        return []

    def processes(self, index: int, with_util: bool = True):
        return [(pid, used, sm if with_util else None) for pid, used, sm in self.procs[index]]
