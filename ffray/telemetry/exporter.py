"""Opt-in Prometheus exporter (prometheus_client), metric names modelled on dcgm-exporter's
(``DCGM_FI_DEV_*`` with ``gpu``, ``UUID``, ``modelName``, ``Hostname`` labels). Binds 127.0.0.1
unless told otherwise."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, start_http_server

_LABELS = ["gpu", "UUID", "modelName", "Hostname"]
METRICS = {  # dcgm-exporter name -> (row field, help, scale)
    "DCGM_FI_DEV_GPU_UTIL": ("util_gpu", "GPU utilization (in %).", 1),
    "DCGM_FI_DEV_MEM_COPY_UTIL": ("util_mem", "Memory utilization (in %).", 1),
    "DCGM_FI_DEV_FB_USED": ("mem_used_bytes", "Framebuffer memory used (in MiB).", 1 / 2**20),
    "DCGM_FI_DEV_GPU_TEMP": ("temp_c", "GPU temperature (in C).", 1),
    "DCGM_FI_DEV_POWER_USAGE": ("power_w", "Power draw (in W).", 1),
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": ("energy_mj", "Total energy since boot (in mJ).", 1),
    "DCGM_FI_DEV_SM_CLOCK": ("sm_clock_mhz", "SM clock frequency (in MHz).", 1),
    "DCGM_FI_DEV_MEM_CLOCK": ("mem_clock_mhz", "Memory clock frequency (in MHz).", 1),
    "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS": ("clock_event_reasons", "Clock event reasons bitmask.", 1),
    "DCGM_FI_DEV_ENC_UTIL": ("enc_util", "Encoder utilization (in %).", 1),
    "DCGM_FI_DEV_DEC_UTIL": ("dec_util", "Decoder utilization (in %).", 1),
    "DCGM_FI_PROF_PCIE_TX_BYTES": ("pcie_tx_bytes", "PCIe bytes transmitted (counter).", 1),
    "DCGM_FI_PROF_PCIE_RX_BYTES": ("pcie_rx_bytes", "PCIe bytes received (counter).", 1),
}


class Exporter:
    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.registry = CollectorRegistry()
        self.gauges = {name: Gauge(name, help_, _LABELS, registry=self.registry)
                       for name, (_, help_, _) in METRICS.items()}
        self.server, self.thread = start_http_server(port, addr=host, registry=self.registry)
        self.port = self.server.server_port

    def update(self, gpu_rows: list[dict], hostname: str) -> None:
        for row in gpu_rows:
            labels = [str(row["gpu_index"]), row["gpu_uuid"], row.get("gpu_name") or "", hostname]
            for name, (field, _, scale) in METRICS.items():
                v = row.get(field)
                if v is not None:
                    self.gauges[name].labels(*labels).set(float(v) * scale)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
