"""``ffray telemetry tail``: the newest GPU and host samples of the store (a reader, so it lives
with the analytics, which read the Parquet layout; the telemetry package only writes it)."""

from __future__ import annotations

TABLES = (("gpu", "ts, node, gpu_index, util_gpu, mem_used_bytes // 1048576 AS mem_mib, temp_c, power_w, "
                  "throttled"),
          ("host", "ts, node, gpu_available, cpu_percent, mem_used_bytes // 1048576 AS mem_mib"))


def run(args) -> int:
    from ffray.analytics.source import Store
    from ffray.settings import telemetry_target

    target = telemetry_target(args.data_dir)
    store = Store(target)
    try:
        for table, cols in TABLES:
            if store.present[table]:
                print(f"-- {table}")
                store.con.sql(f"SELECT {cols} FROM {table} ORDER BY ts DESC LIMIT $n",
                              params={"n": int(args.rows)}).show(max_width=200)
        if not (store.present["gpu"] or store.present["host"]):
            print(f"no telemetry in {target}/telemetry yet (run `ffray telemetry record`)")
    finally:
        store.close()
    return 0
