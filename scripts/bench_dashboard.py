"""Server time to render the dashboard's cluster page (24 h x 64 GPUs at 1 Hz, ~5.5 M rows; its
panels, then each metric view, a callback of its own), the alerts page, the job page of a 1-hour
job with 360 chunks and the capacity page (fitted from the store): real HTTP
requests to the app's callback endpoint
(Flask test client: routing, DuckDB queries, figure building and JSON encoding; no browser).

    python scripts/bench_dashboard.py --store /tmp/store24h [--repeat 5]

Generates the store first when it does not exist (scripts/gen_store.py, 16 nodes x 4 GPUs, one day,
400 jobs, job gen-000000 = 1 h x 360 chunks on 4 GPUs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dashboard.app import create_app  # noqa: E402
from dashboard.data import Data  # noqa: E402

GRAPHS = ["util", "mem", "power", "temp", "cpu", "host_mem", "heat"]  # the cluster draw's figures


def _post(client, outputs, inputs, changed, state=()):
    single = len(outputs) == 1  # Dash names a single output "id.prop", several "..a...b.."
    body = {"output": "{}.{}".format(*outputs[0]) if single else
            "...".join(f"{i}.{p}" for i, p in outputs).join(["..", ".."]),
            "outputs": {"id": outputs[0][0], "property": outputs[0][1]} if single else
            [{"id": i, "property": p} for i, p in outputs],
            "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
            "changedPropIds": changed, "state": [{"id": i, "property": p, "value": v} for i, p, v in state]}
    t = time.perf_counter()
    r = client.post("/_dash-update-component", json=body)
    dt = time.perf_counter() - t
    if r.status_code != 200:
        raise SystemExit(f"HTTP {r.status_code}: {r.data[:300]!r}")
    return dt, len(r.data), r.get_json()


def _traces(node):
    """Every plotly trace dict inside a callback response."""
    if isinstance(node, dict):
        if "type" in node and "x" in node and isinstance(node.get("x"), list):
            yield node
        for v in node.values():
            yield from _traces(v)
    elif isinstance(node, list):
        for v in node:
            yield from _traces(v)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default="/tmp/store24h")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--job", default="gen-000000")
    a = ap.parse_args()
    store = Path(a.store)
    if not store.exists():
        subprocess.run([sys.executable, str(Path(__file__).parent / "gen_store.py"), "--out", str(store),
                        "--days", "1", "--nodes", "16", "--gpus-per-node", "4", "--jobs", "400",
                        "--long-job-chunks", "360"], check=True)
    client = create_app(Data(str(store), store)).server.test_client()
    results = {}
    cases = {
        "cluster 24h (auto: 16 node lines)": ("24h", "auto"),
        "cluster 24h per GPU (64 lines)": ("24h", "gpu"),
    }
    for name, (preset, by) in cases.items():
        times = []
        for _ in range(a.repeat):
            outs = [(f"c-{g}", "figure") for g in GRAPHS] + [
                (f"c-{sec}-sec", "style") for sec in ("gpu", "host", "extra")] + [
                ("c-state", "data"), ("c-window", "data"), ("c-msg", "children")]
            ins = [("c-range", "value", preset), ("c-from", "value", None), ("c-to", "value", None),
                   ("c-nodes", "value", []), ("c-gpus", "value", []), ("c-by", "value", by)]
            dt, size, js = _post(client, outs, ins, ["c-range.value"], [("c-zoom", "data", [])])
            times.append(dt)
        traces = len(js["response"]["c-util"]["figure"]["data"])
        points = sum(len(t["x"]) for t in js["response"]["c-util"]["figure"]["data"])
        results[name] = {"median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3),
                         "traces_per_chart": traces, "points_per_chart": points, "response_kb": size // 1024,
                         "msg": js["response"]["c-msg"]["children"]}
        win = js["response"]["c-window"]["data"]
        wt = []  # the CPU-per-worker panel: its own callback over the same window
        for _ in range(a.repeat):
            dt, wsize, wjs = _post(client, [("c-worker_cpu", "figure"), ("c-worder", "data")],
                                   [("c-window", "data", win)], ["c-window.data"], [("c-zoom", "data", [])])
            wt.append(dt)
        results[f"{name} + CPU per worker"] = {
            "median_s": round(statistics.median(wt), 3), "max_s": round(max(wt), 3),
            "traces": len(wjs["response"]["c-worker_cpu"]["figure"]["data"]), "response_kb": wsize // 1024}
        for metric in ("sm_clock", "pcie_tx", "reasons", "proc_mem"):  # the metric view: its own callback
            mt = []
            for _ in range(a.repeat):
                dt, msize, mjs = _post(client, [("c-extra", "figure")],
                                       [("c-metric", "value", metric), ("c-window", "data", win)],
                                       ["c-metric.value"], [("c-zoom", "data", [])])
                mt.append(dt)
            results[f"{name} + metric view {metric}"] = {
                "median_s": round(statistics.median(mt), 3), "max_s": round(max(mt), 3),
                "traces": len(mjs["response"]["c-extra"]["figure"]["data"]), "response_kb": msize // 1024}
    times = []
    for _ in range(a.repeat):
        dt, size, js = _post(client, [("page", "children"), ("page-error", "children")],
                             [("url", "pathname", f"/job/{a.job}"), ("url", "search", "")], ["url.pathname"])
        times.append(dt)
    results[f"job page {a.job}"] = {"median_s": round(statistics.median(times), 3),
                                    "max_s": round(max(times), 3), "response_kb": size // 1024,
                                    "bars": sum(len(t["x"]) for t in _traces(js) if t.get("type") == "bar")}
    times = []  # the alerts page: episodes with their state (the generated alerts have no resolve rows)
    for _ in range(a.repeat):
        dt, size, js = _post(client, [("a-body", "children")], [("a-range", "value", "all")],
                             ["a-range.value"])
        times.append(dt)
    results["alerts page (everything)"] = {"median_s": round(statistics.median(times), 3),
                                           "max_s": round(max(times), 3), "response_kb": size // 1024}
    times = []  # the capacity page: a fit from the store (no cached model in a generated store)
    for _ in range(a.repeat):
        outs = [("cap-body", "children"), ("cap-model", "data"), ("cap-msg", "children"),
                ("p-gpu", "options")]
        dt, size, js = _post(client, outs,
                             [("cap-refit", "n_clicks", 1), ("cap-deadline", "value", None),
                              ("cap-extra", "value", [])], ["cap-refit.n_clicks"])
        times.append(dt)
    model = js["response"]["cap-model"]["data"]
    results["capacity page (refit)"] = {
        "median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3),
        "response_kb": size // 1024,
        "jobs": model["meta"]["jobs"], "fits": [f["gpu_class"] for f in model["fits"]],
        "outliers": sum(len(f["outliers"]) for f in model["fits"]),
        "poor": [f["gpu_class"] for f in model["fits"] if f["poor"]]}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
