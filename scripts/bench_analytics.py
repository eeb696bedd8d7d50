"""Time `ffray analyze jobs` and `ffray analyze capacity` end to end (as subprocesses, Python start-up
included) over a large generated store, and check the capacity fit against the generator's law.

    python scripts/bench_analytics.py --store /tmp/ffray-bench100m          # generates it if missing
    python scripts/bench_analytics.py --store /tmp/ffray-bench100m --days 18 --jobs 10000

The store is made by scripts/gen_store.py (--days 18 --nodes 16 --gpus-per-node 4 --jobs 10000
--gap-scale 0.8: about 100 M GPU samples and 10,000 jobs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], repeat: int) -> tuple[list[float], str]:
    times, out = [], ""
    for _ in range(repeat):
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        times.append(time.perf_counter() - t)
        if r.returncode != 0:
            sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
        out = r.stdout
    return times, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default="/tmp/ffray-bench100m")
    ap.add_argument("--days", default="18")
    ap.add_argument("--nodes", default="16")
    ap.add_argument("--gpus-per-node", default="4")
    ap.add_argument("--jobs", default="10000")
    ap.add_argument("--gap-scale", default="0.8")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-compact", action="store_true",
                    help="time the store as generated (one span and one job-record file per job)")
    a = ap.parse_args()
    store = Path(a.store)
    if not (store / "truth.json").is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_store.py"), "--out", str(store),
                        "--days", a.days, "--nodes", a.nodes, "--gpus-per-node", a.gpus_per_node,
                        "--jobs", a.jobs, "--gap-scale", a.gap_scale], check=True)
    truth = json.loads((store / "truth.json").read_text())
    import duckdb

    con = duckdb.connect()

    def count(table: str) -> int:
        glob = f"{store}/telemetry/{table}/**/*.parquet"
        return con.execute(f"SELECT count(*) FROM read_parquet('{glob}')").fetchone()[0]

    gpu_rows, proc_rows = count("gpu"), count("gpu_proc")
    files = sum(1 for _ in store.rglob("*.parquet"))
    size = sum(p.stat().st_size for p in store.rglob("*.parquet"))
    print(f"store {store}: {gpu_rows:,} gpu rows, {proc_rows:,} gpu_proc rows, {truth['jobs']:,} jobs, "
          f"{files:,} Parquet files, {size / 1e9:.2f} GB")
    ff = [sys.executable, "-m", "ffray", "analyze"]
    if not a.no_compact:
        times, _ = timed(ff + ["compact", "--data-dir", str(store)], 1)
        files = sum(1 for _ in store.rglob("*.parquet"))
        print(f"analyze compact (closed days' job files): {times[0]:.2f} s; now {files:,} Parquet files")
    out = Path(tempfile.mkdtemp()) / "jobs.parquet"
    runs = {
        "analyze jobs (table, newest 50)": ff + ["jobs", "--data-dir", str(store)],
        "analyze jobs --format parquet (all)": ff + ["jobs", "--data-dir", str(store), "--format", "parquet",
                                                     "--output", str(out)],
        "analyze capacity (table)": ff + ["capacity", "--data-dir", str(store)],
        "analyze capacity --format json": ff + ["capacity", "--data-dir", str(store), "--format", "json"],
        "analyze predict (cached model)": ff + ["predict", "--data-dir", str(store), "--frames", "3000",
                                                "--resolution", "1920x1080", "--faces", "2"],
    }
    results = {}
    for name, cmd in runs.items():
        times, stdout = timed(cmd, a.repeat)
        results[name] = times
        print(f"{name:40s} min {min(times):6.2f} s  median {statistics.median(times):6.2f} s  "
              f"({', '.join(f'{t:.2f}' for t in times)})")
        if name == "analyze capacity --format json":
            doc = json.loads(stdout)
    law = truth["law"]
    print("fit vs the generator's law (per class: coefficient / (law / relative throughput)):")
    for f in doc["model"]["fits"]:
        rel = next(v[0] for k, v in truth["models"].items() if k in f["gpu_models"])
        k = f["coefficients"]
        print(f"  {f['gpu_class']:10s} jobs {f['n_jobs']:5d}  a {k['frames_mp'] * rel / law['A']:.3f}  "
              f"b {k['faces'] * rel / law['B']:.3f}  c {k['frames'] * rel / (law['C'] / 300):.3f}  "
              f"R² {f['r2']:.4f}  mem m0 {f['memory']['coefficients']['intercept'] / law['M0']:.3f}  "
              f"m1 {f['memory']['coefficients']['megapixels'] / law['M1']:.3f}")
    s = doc["summary"]
    print(f"right-sizing: {s['over_provisioned_share']:.1%} of {s['jobs_priced']} jobs over-provisioned, "
          f"saving {s['saving_share']:.1%} (${s['actual_cost']:,.2f} -> ${s['right_sized_cost']:,.2f})")
    print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
