"""GPU and host sampling. NVML through nvidia-ml-py (``import pynvml``); every field is read on its
own, so an NVML error on one field never stops the others (the field is left empty).

``NvmlBackend`` is the product backend. Tests pass their own backend object with the same methods
(``devices``, ``read``, ``util_samples``, ``processes``); there is no silent fake in the product.
With no GPU or no NVML the sampler records host metrics only, with ``gpu_available=false``, and
logs one warning.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import psutil

from ffray.telemetry.schema import SCHEMA_VERSION

log = logging.getLogger("ffray.telemetry")

# Clock event reasons that mean the GPU was held back (not idle / app-clock settings).
THROTTLE_MASK = 0x0000000000000004 | 0x0000000000000008 | 0x0000000000000020 | \
    0x0000000000000040 | 0x0000000000000080 | 0x0000000000000100
# SW power cap, HW slowdown, SW thermal, HW thermal, HW power brake, display clock setting ignored


@dataclass(frozen=True)
class Device:
    index: int
    uuid: str
    name: str


class NvmlBackend:
    """Reads one GPU's counters through NVML."""

    def __init__(self):
        import pynvml

        self.nv = pynvml
        pynvml.nvmlInit()
        self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i)
                         for i in range(pynvml.nvmlDeviceGetCount())]

    def close(self) -> None:
        try:
            self.nv.nvmlShutdown()
        except self.nv.NVMLError:
            pass

    def devices(self) -> list[Device]:
        nv = self.nv
        return [Device(i, _s(nv.nvmlDeviceGetUUID(h)), _s(nv.nvmlDeviceGetName(h)))
                for i, h in enumerate(self._handles)]

    def _try(self, fn, *args):
        try:
            return fn(*args)
        except self.nv.NVMLError:
            return None

    def read(self, index: int) -> dict:
        nv, h = self.nv, self._handles[index]
        out: dict = {}
        u = self._try(nv.nvmlDeviceGetUtilizationRates, h)
        if u is not None:
            out["util_gpu"], out["util_mem"] = float(u.gpu), float(u.memory)
        m = self._try(nv.nvmlDeviceGetMemoryInfo, h)
        if m is not None:
            out["mem_used_bytes"], out["mem_total_bytes"] = int(m.used), int(m.total)
        out["temp_c"] = self._try(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU)
        power = None
        fid = getattr(nv, "NVML_FI_DEV_POWER_INSTANT", None)
        if fid is not None:
            fv = self._try(nv.nvmlDeviceGetFieldValues, h, [fid])
            if fv and fv[0].nvmlReturn == 0:
                power = fv[0].value.uiVal / 1000.0
        if power is None:
            mw = self._try(nv.nvmlDeviceGetPowerUsage, h)
            power = mw / 1000.0 if mw is not None else None
        out["power_w"] = power
        out["energy_mj"] = self._try(nv.nvmlDeviceGetTotalEnergyConsumption, h)
        out["sm_clock_mhz"] = self._try(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_SM)
        out["mem_clock_mhz"] = self._try(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_MEM)
        out["clock_event_reasons"] = self._try(nv.nvmlDeviceGetCurrentClocksEventReasons, h)
        fv = self._try(nv.nvmlDeviceGetFieldValues, h, [nv.NVML_FI_DEV_PCIE_COUNT_TX_BYTES,
                                                        nv.NVML_FI_DEV_PCIE_COUNT_RX_BYTES])
        if fv:
            for key, v in zip(("pcie_tx_bytes", "pcie_rx_bytes"), fv):
                if v.nvmlReturn == 0:
                    out[key] = int(v.value.ullVal)
        e = self._try(nv.nvmlDeviceGetEncoderUtilization, h)
        out["enc_util"] = float(e[0]) if e else None
        d = self._try(nv.nvmlDeviceGetDecoderUtilization, h)
        out["dec_util"] = float(d[0]) if d else None
        return out

    def util_samples(self, index: int, since_us: int) -> list[tuple[int, float]]:
        """The driver's utilization sample buffer since ``since_us`` (microseconds)."""
        nv = self.nv
        r = self._try(nv.nvmlDeviceGetSamples, self._handles[index], nv.NVML_GPU_UTILIZATION_SAMPLES,
                      since_us)
        if not r:
            return []
        _, samples = r
        return [(int(s.timeStamp), float(s.sampleValue.uiVal)) for s in samples]

    def processes(self, index: int, with_util: bool = True) -> list[tuple[int, int | None, float | None]]:
        """Running compute processes with their memory; SM utilization per process when
        ``with_util`` (nvmlDeviceGetProcessUtilization costs ~3 ms on an H100, so the sampler asks
        for it every few seconds only)."""
        nv, h = self.nv, self._handles[index]
        procs = self._try(nv.nvmlDeviceGetComputeRunningProcesses, h) or []
        sm = {}
        if not procs:
            return []
        for p in (self._try(nv.nvmlDeviceGetProcessUtilization, h, 0) or []) if with_util else []:
            sm[int(p.pid)] = float(p.smUtil)
        return [(int(p.pid), int(p.usedGpuMemory) if p.usedGpuMemory is not None else None,
                 sm.get(int(p.pid))) for p in procs]


def _s(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def open_backend():
    """NVML when it works here, else None (with one warning)."""
    try:
        b = NvmlBackend()
        if b.devices():
            return b
        b.close()
        log.warning("telemetry: NVML found no GPU; recording host metrics only")
    except Exception as e:  # pynvml raises NVMLError_* subclasses, or ImportError/OSError
        log.warning("telemetry: no NVML (%s); recording host metrics only", type(e).__name__)
    return None


class Sampler:
    """Turns one sampling instant into rows for every table."""

    def __init__(self, node: str, backend=None, proc_util_every_s: float = 5.0, ray_node: str | None = None,
                 workers=None):
        """``workers``: a ``workers.WorkerScanner`` for per-worker CPU rows (the Recorder's), or
        None (no ``worker_cpu`` rows: generated stores sample without scanning processes)."""
        self.node, self.ray_node = node, ray_node
        self.backend = backend
        self.workers = workers
        self.proc_util_every_s = proc_util_every_s
        self._last_proc_util = 0.0
        self.devices = backend.devices() if backend is not None else []
        self._since = {d.index: 0 for d in self.devices}
        psutil.cpu_percent(None)  # primes the CPU counter

    @property
    def gpu_available(self) -> bool:
        return bool(self.devices)

    def sample(self, now: float | None = None) -> dict[str, list[dict]]:
        now = time.time() if now is None else now
        ts = datetime.fromtimestamp(now, tz=timezone.utc)
        base = {"schema_version": SCHEMA_VERSION, "ts": ts, "node": self.node, "ray_node": self.ray_node}
        rows: dict[str, list[dict]] = {"gpu": [], "gpu_util": [], "gpu_proc": [], "host": []}
        for d in self.devices:
            key = {**base, "gpu_uuid": d.uuid, "gpu_index": d.index}
            vals = self.backend.read(d.index)
            reasons = vals.get("clock_event_reasons")
            rows["gpu"].append({**key, "gpu_name": d.name, **vals,
                                "throttled": None if reasons is None else bool(reasons & THROTTLE_MASK)})
            samples = self.backend.util_samples(d.index, self._since[d.index])
            for t_us, util in samples:
                if t_us > self._since[d.index]:
                    rows["gpu_util"].append({**key, "ts": datetime.fromtimestamp(t_us / 1e6, tz=timezone.utc),
                                             "util_gpu": util})
            if samples:
                self._since[d.index] = max(self._since[d.index], max(t for t, _ in samples))
            want_util = now - self._last_proc_util >= self.proc_util_every_s
            for pid, used, sm in self.backend.processes(d.index, want_util):
                rows["gpu_proc"].append({**key, "pid": pid, "used_bytes": used, "sm_util": sm})
        if self.devices and now - self._last_proc_util >= self.proc_util_every_s:
            self._last_proc_util = now
        vm = psutil.virtual_memory()
        rows["host"].append({**base, "gpu_available": self.gpu_available,
                             "cpu_percent": psutil.cpu_percent(None),
                             "load1": psutil.getloadavg()[0], "mem_used_bytes": int(vm.used),
                             "mem_total_bytes": int(vm.total)})
        if self.workers is not None:
            rows["worker_cpu"] = [{**base, **r} for r in self.workers.scan()]
        return rows
