"""The cluster and alerts pages' data and figures on data dirs written through the real telemetry
API (tests/store_data.py: 2 nodes x 2 GPUs; tests/host_data.py: CPU-only nodes): values must
equal what was constructed or what DuckDB reads back from the Parquet independently."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dashboard import clusterview
from dashboard.colours import PALETTE, series_colour
from dashboard.data import Data
from dashboard.pages import alerts, jobs
from dashboard.urlstate import ClusterView, format_view, parse_view, zoom_of
from ffray.analytics.alertstate import episode_state
from ffray.analytics.metrics import PICKABLE, by_node
from ffray.analytics.queries import throttle_periods
from ffray.telemetry.schema import ALERT
from tests import host_data
from tests import store_data as sd

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime.now(timezone.utc)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = sd.build(tmp_path_factory.mktemp("store"))
    return Data(str(root), root)


@pytest.fixture(scope="module")
def cpu(tmp_path_factory):
    root = host_data.build_cpu(tmp_path_factory.mktemp("cpu"), sd.T0)
    return Data(str(root), root)


def _t(s: float) -> datetime:
    return datetime.fromtimestamp(sd.T0 + s, tz=timezone.utc)


def _series(fig: dict) -> list[dict]:
    return [t for t in fig["data"] if t.get("uid") != "alerts"]


def test_gpu_trends_buckets_node_fold_and_throttle_periods(data):
    t = data.gpu_trends(_t(0), _t(120), 10)
    by = {(s, b): (u, n) for s, b, u, n in zip(t["series"].to_pylist(), t["bucket"].to_pylist(),
                                               t["util_mean"].to_pylist(), t["samples"].to_pylist())}
    assert len({s for s, _ in by}) == 4 and all(n == 10 for _, n in by.values())
    assert by[(sd.uuid("n0", 0), _t(10))] == (pytest.approx(90.0), 10)  # busy 10..30
    assert by[(sd.uuid("n1", 1), _t(100))][0] == 0.0  # idle after 80
    assert throttle_periods(t, 10) == [(_t(70), _t(90))]  # samples 70..80 -> buckets 70 and 80
    # per node: the mean of its samples, min/max = its lowest and highest GPU in the bucket
    node = {(r["series"], r["bucket"]): r for r in by_node(t).to_pylist()}
    assert sorted({k for k, _ in node}) == ["n0", "n1"]
    r = node[("n0", _t(10))]  # GPU0 busy the whole bucket, GPU1 from 15 (its first attempt failed)
    g0, g1 = by[(sd.uuid("n0", 0), _t(10))][0], by[(sd.uuid("n0", 1), _t(10))][0]
    assert (r["util_min"], r["util_max"]) == (pytest.approx(min(g0, g1)), pytest.approx(max(g0, g1)))
    assert r["util_mean"] == pytest.approx((g0 + g1) / 2) and g1 < g0
    only = data.gpu_trends(_t(0), _t(120), 60, uuids=[sd.uuid("n1", 0)])
    assert set(only["series"].to_pylist()) == {sd.uuid("n1", 0)}


def test_every_recorded_metric_has_a_view_with_the_recorded_values(data):
    d = clusterview.draw(data, ClusterView(range="all"), NOW)
    win = {**d.window, "start": _t(0).isoformat(), "end": _t(120).isoformat(), "bucket": 10}
    figs = {k: clusterview.draw_metric(data, win, k) for k in PICKABLE}
    assert all(_series(f) for f in figs.values()), [k for k, f in figs.items() if not _series(f)]

    def means(key, name):
        tr = next(t for t in figs[key]["data"] if t["name"] == name)
        return [v for v in tr["y"] if v == v]

    # FakeGpus: PCIe counters rise 1e6 and 2e6 bytes per second; energy at the GPU's power draw
    assert set(means("pcie_tx", "n0 · GPU0")) == {1.0} and set(means("pcie_rx", "n0 · GPU0")) == {2.0}
    energy = means("energy", "n0 · GPU0")
    assert min(energy) == pytest.approx(sd.IDLE_W) and max(energy) == pytest.approx(sd.WATTS["n0"])
    assert set(means("sm_clock", "n1 · GPU1")) == {1980.0}
    # throttle reasons: only SW thermal (0x20, set while util > 99: n1 GPU0 at 70..80), as % of samples
    reasons = figs["reasons"]["data"]
    assert [t["name"] for t in reasons] == ["SW thermal slowdown"]
    pct = dict(zip([str(x)[:19] for x in reasons[0]["x"]], reasons[0]["y"]))
    assert pct[_t(70).strftime("%Y-%m-%dT%H:%M:%S")] == pytest.approx(100 / 4)  # 1 GPU of 4, whole bucket
    assert max(reasons[0]["y"]) <= 100 / 4 + 1e-6
    # per worker process: one line per (node, pid), named with its job
    names = sorted(t["name"] for t in figs["proc_mem"]["data"])
    assert names == sorted(f"{n} · GPU{g} · pid {sd.pid(n, g)} ({'job-a' if n == 'n0' else 'job-b'})"
                           for n, g in sd.PROC_MEM)
    peak = np.nanmax(next(t for t in figs["proc_mem"]["data"] if "pid 1011" in t["name"])["customdata"][:, 1])
    assert peak == pytest.approx(sd.PROC_MEM[("n1", 1)] / 2 ** 30, abs=0.01)
    # n0 GPU0's worker held memory during its chunks [10, 30] and [40, 60] only: the line breaks
    # between them (a point without a value) instead of joining across the gap
    fine = clusterview.draw_metric(data, {**win, "bucket": 2}, "proc_mem")
    y = next(t for t in fine["data"] if "pid 1000" in t["name"])["y"]
    assert np.isnan(y).sum() == 1 and not np.isnan(y[0]) and not np.isnan(y[-1])


def test_cluster_figures_colours_alerts_heatmap_and_host_panels(data):
    d = clusterview.draw(data, ClusterView(range="all"), NOW)
    assert d.gpu and d.host and "4 GPU(s) on 2 node(s)" in d.msg and "1 alert(s)" in d.msg
    for k in ("util", "mem", "power", "temp"):
        fig = d.figures[k]
        assert len(_series(fig)) == 4 and fig["layout"]["xaxis"]["title"]["text"] == "time (UTC)"
        assert "UTC" in _series(fig)[0]["hovertemplate"]
        marks = [t for t in fig["data"] if t.get("uid") == "alerts"]
        assert fig["data"][-1] is marks[0] and len(marks[0]["x"]) == 1  # last: extendData indexes
        assert "resolved (6 s)" in marks[0]["hovertext"][0]
    # one colour per GPU on every chart, a function of its UUID alone
    colours = [{t["uid"]: t["line"]["color"] for t in _series(d.figures[k])} for k in ("util", "mem", "temp")]
    assert colours[0] == colours[1] == colours[2]
    assert all(c == series_colour(u) and c in PALETTE for u, c in colours[0].items())
    heat = d.figures["heat"]["data"][0]
    assert heat["z"].shape[0] == 4 and list(heat["y"]) == ["n0 · GPU0", "n0 · GPU1", "n1 · GPU0", "n1 · GPU1"]
    col = [str(x)[:19] for x in heat["x"]].index(_t(75).strftime("%Y-%m-%dT%H:%M:%S"))
    assert list(heat["z"][:, col]) == [0.0, 0.0, 100.0, 90.0]  # n1: GPU0 saturated, GPU1 busy
    assert [len(_series(d.figures[k])) for k in ("cpu", "host_mem")] == [2, 2]
    assert d.state["order"] == sorted(d.state["order"]) and d.state["horder"] == ["n0", "n1"]
    d = clusterview.draw(data, ClusterView(range="all", nodes=("n1",)), NOW)
    assert all(len(_series(d.figures[k])) == 2 for k in ("util", "mem"))
    assert len(_series(d.figures["cpu"])) == 1
    d = clusterview.draw(data, ClusterView(range="all", by="node"), NOW)
    assert [t["name"] for t in _series(d.figures["util"])] == ["n0", "n1"]
    assert "lowest/highest GPU" in _series(d.figures["util"])[0]["hovertemplate"]
    assert d.figures["heat"]["data"][0]["z"].shape[0] == 4  # the heatmap keeps one row per GPU
    d = clusterview.draw(data, ClusterView(range="custom", t_from="2026-11-18 07:33", t_to="nonsense"), NOW)
    assert "custom range" in d.msg and len(_series(d.figures["util"])) == 4


def test_cpu_only_cluster_gets_host_panels_not_record_some(cpu):
    d = clusterview.draw(cpu, ClusterView(range="all"), NOW)
    assert d.host and not d.gpu and set(d.figures) == {"cpu", "host_mem"}
    assert "No GPU telemetry in this range" in d.msg and "2 node(s)" in d.msg and "Record some" not in d.msg
    got = {t["name"]: t for t in _series(d.figures["cpu"])}
    assert set(got) == {"cpu0", "cpu1"}
    b = d.state["bucket"]
    truth = duckdb.sql(f"""SELECT to_timestamp(floor(epoch(ts) / {b}) * {b}) AS b, avg(cpu_percent),
        max(cpu_percent)
        FROM read_parquet('{cpu.target}/telemetry/host/**/*.parquet') WHERE node = 'cpu0' GROUP BY ALL
        ORDER BY 1""").fetchall()
    tr = got["cpu0"]
    assert len(tr["x"]) == len(truth)
    for y, cd, (_, mean, hi) in zip(tr["y"], tr["customdata"], truth):
        assert y == pytest.approx(round(mean, 2)) and cd[1] == pytest.approx(round(hi, 2))
    # CPU per worker: a line per worker process, named by node and pid, means as recorded
    wfig, worder = clusterview.draw_workers(cpu, d.window)  # its own callback, over the drawn window
    workers = {t["name"]: t for t in _series(wfig)}
    assert sorted(worder) == sorted(t["uid"] for t in _series(wfig))
    assert sorted(workers) == [f"{n} · ChunkWorker · pid {p}" for n in ("cpu0", "cpu1") for p in (1000, 2000)]
    truth = duckdb.sql(f"""SELECT avg(cpu_percent), min(cpu_percent), max(cpu_percent)
        FROM read_parquet('{cpu.target}/telemetry/worker_cpu/**/*.parquet') WHERE node = 'cpu1' AND pid = 2000
        GROUP BY to_timestamp(floor(epoch(ts) / {b}) * {b}) ORDER BY 1""").fetchall()
    w = workers["cpu1 · ChunkWorker · pid 2000"]
    got_w = sorted(zip(w["y"], (c[0] for c in w["customdata"]), (c[1] for c in w["customdata"])))
    assert got_w == pytest.approx(sorted(tuple(round(v, 2) for v in r) for r in truth))
    assert len(w["y"]) > 1 and min(workers["cpu1 · ChunkWorker · pid 1000"]["y"]) > max(w["y"])
    mem = _series(d.figures["host_mem"])[0]
    assert 0 < max(mem["y"]) < os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30 + 1
    assert "no GPU samples" in str(clusterview.draw_metric(cpu, d.window, "sm_clock"))
    assert len(_series(clusterview.draw_metric(cpu, d.window, "load1"))) == 2  # host metrics still drawn
    # live refresh extends the host panels
    state = {**d.state, "end": datetime.fromtimestamp(sd.T0 + 30, tz=timezone.utc).isoformat()}
    payloads, _ = clusterview.extend(cpu, state, NOW, worder)
    assert set(payloads) == {"cpu", "host_mem", "worker_cpu"} and sorted(payloads["cpu"][1]) == [0, 1]
    assert sorted(payloads["worker_cpu"][1]) == [0, 1, 2, 3]


def test_empty_states_say_what_is_there(data, tmp_path):
    d = clusterview.draw(Data(str(tmp_path / "nothing"), tmp_path / "nothing"), ClusterView(), NOW)
    assert d.state is None and "No data directory" in d.msg and not d.gpu and not d.host
    empty = tmp_path / "empty"
    empty.mkdir()
    d = clusterview.draw(Data(str(empty), empty), ClusterView(), NOW)
    assert d.state is None and "No GPU or host telemetry" in d.msg and "ffray telemetry record" in d.msg
    assert "No jobs yet" in str(jobs.jobs_layout(Data(str(empty), empty)))
    old = ClusterView(range="custom", t_from="2020-01-01 00:00", t_to="2020-01-02 00:00")
    d = clusterview.draw(data, old, NOW)
    assert "No samples in this range" in d.msg and not d.gpu


def test_live_refresh_appends_only_the_buckets_after_the_last_draw(data):
    d = clusterview.draw(data, ClusterView(range="all"), NOW)
    state = {**d.state, "end": _t(60).isoformat(), "bucket": 10}
    payloads, new_state = clusterview.extend(data, state, NOW)
    upd, idx, max_points = payloads["util"]
    assert sorted(idx) == list(range(4)) and max_points == state["points"] == 121  # whole window
    assert all(len(x) == 6 for x in upd["x"])  # buckets 60, 70, ..., 110
    assert upd["x"][0][0] == _t(60).replace(tzinfo=None).isoformat()
    assert datetime.fromisoformat(new_state["end"]) > _t(110)
    # every appended mean comes with its bucket's min and max, in the same order
    truth = data.gpu_trends(_t(60), datetime.fromisoformat(new_state["end"]), 10)
    cols = [truth[c].to_pylist() for c in ("series", "bucket", "util_min", "util_max")]
    want = {(k, b): (lo, hi) for k, b, lo, hi in zip(*cols)}
    spread = 0
    for k, xs, ys, cds in zip(idx, upd["x"], upd["y"], upd["customdata"]):
        assert len(cds) == len(xs) == len(ys)
        for x, y, (lo, hi) in zip(xs, ys, cds):
            b = datetime.fromisoformat(x).replace(tzinfo=timezone.utc)
            assert (lo, hi) == tuple(round(v, 2) for v in want[(state["order"][k], b)])
            assert lo <= y <= hi
            spread += hi > lo
    assert spread  # buckets where the GPU went busy or idle: min and max differ from the mean
    assert set(payloads) == {"util", "mem", "power", "temp", "cpu", "host_mem"}
    again, _ = clusterview.extend(data, new_state, NOW)
    assert again is None  # nothing new since


def test_alert_episodes_firing_resolved_open(data, tmp_path):
    eps = data.episodes(NOW)
    assert [(e.node, e.gpu_index, e.rule, e.state) for e in eps] == [("n1", 0, "throttle", "resolved")]
    # util > 99 during samples 70..80 for 5 s: fired at 75, resolved at 81 (the first sample below)
    assert (eps[0].fired, eps[0].end, eps[0].duration_s) == (_t(75), _t(81), 6.0)
    rows = alerts.alert_rows(data, "all", NOW)
    assert rows[0]["state"] == "resolved" and rows[0]["duration"] == "6 s" and rows[0]["resolved (UTC)"]
    # a file written before alert states existed (no `state` column): its alert is an open episode
    old = pa.schema([f for f in ALERT if f.name != "state"])
    folder = Path(data.target) / "telemetry" / "alerts" / "date=2026-11-18" / "node=n0"
    folder.mkdir(parents=True, exist_ok=True)
    row = {"schema_version": 2, "ts": _t(20), "node": "n0", "gpu_uuid": sd.uuid("n0", 0), "gpu_index": 0,
           "rule": "old", "value": 1.0, "threshold": 0.5, "message": "old rule"}
    pq.write_table(pa.Table.from_pylist([row], schema=old), folder / "part-old.parquet")
    only_old = tmp_path / "old" / "telemetry" / "alerts" / "date=2026-11-18" / "node=n0"
    only_old.mkdir(parents=True)  # a store whose alert files all predate the column
    pq.write_table(pa.Table.from_pylist([row], schema=old), only_old / "part-old.parquet")
    assert [e.state for e in Data(str(tmp_path / "old")).episodes(NOW)] == ["open"]
    try:
        e = {x.rule: x for x in data.episodes(NOW)}["old"]
        assert e.state == "open" and e.end == _t(SECONDS_LAST) and e.duration_s == SECONDS_LAST - 20
        # while the GPU is still sampled, an unresolved episode is firing, for as long as now - fired
        e = {x.rule: x for x in data.episodes(_t(SECONDS_LAST + 30))}["old"]
        assert e.state == "firing" and e.duration_s == SECONDS_LAST + 30 - 20
        # on the charts: a marker for each; a band only for the resolved one (an open one's end
        # is unknown), beside the throttled period's
        util = clusterview.draw(data, ClusterView(range="all"), NOW).figures["util"]
        assert len(util["data"][-1]["x"]) == 2 and len(util["layout"]["shapes"]) == 2
    finally:
        (folder / "part-old.parquet").unlink()
    assert episode_state(_t(0), None, None, _t(10)) == ("open", _t(0), 0.0)
    assert episode_state(_t(0), _t(4), _t(9), _t(10))[0] == "resolved"


SECONDS_LAST = sd.SECONDS - 1  # the last sample's second


def test_url_state_round_trips_and_survives_junk():
    v = ClusterView(range="custom", t_from="2026-11-18 07:00", t_to="2026-11-18 08:00", nodes=("n0", "n1"),
                    gpus=("GPU-n0-00",), by="node", metric="pcie_tx")
    q = format_view(v)
    assert q.startswith("?") and parse_view(q, PICKABLE) == v
    assert format_view(ClusterView()) == "" and parse_view("", PICKABLE) == ClusterView()
    junk = parse_view("?range=99y&by=<script>&metric=rm%20-rf&from=" + "x" * 500 + "&nodes=,,"
                      "&zoom=2026-11-18 11:08,2026-11-18 11:07", PICKABLE)  # (a zoom must run forward)
    assert junk == ClusterView()
    z = ClusterView(zoom=("2026-11-18 11:07:00", "2026-11-18 11:07:30.5"))
    assert parse_view(format_view(z), PICKABLE) == z
    # plotly relayout events: a new x range, a reset, or something else (the zoom stays)
    assert zoom_of({"xaxis.range[0]": "2026-11-18 11:07", "xaxis.range[1]": "2026-11-18 11:09"}, ()) == (
        "2026-11-18 11:07", "2026-11-18 11:09")
    assert zoom_of({"xaxis.autorange": True}, z.zoom) == () and zoom_of({"autosize": True}, z.zoom) == z.zoom
    assert zoom_of({"xaxis.range": ["bad", "2026-11-18 11:09"]}, z.zoom) == z.zoom


def test_colours_are_stable_across_processes():
    keys = ["GPU-5b1a-0000", "node07", "GPU-n0-00"]
    code = ("from dashboard.colours import series_colour; "
            f"print(','.join(series_colour(k) for k in {keys!r}))")
    got = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                          env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip() for seed in ("1", "2")}
    assert got == {",".join(series_colour(k) for k in keys)}
    assert len(PALETTE) >= 200 and series_colour(None) not in PALETTE
    assert len({series_colour(f"GPU-{i:04x}") for i in range(64)}) > 40  # a large palette: few repeats


def test_counter_rates_survive_a_counter_reset(tmp_path):
    """PCIe counters rise 1e6 bytes/s (FakeGpus); the GPU resets its counters at sample 55: no
    bucket shows a negative or wild rate, only the reset's bucket has none."""
    from ffray.analytics.metrics import gpu_trends
    from ffray.analytics.source import Store
    from ffray.telemetry.sampler import Sampler
    from ffray.telemetry.store import TelemetryStore
    from tests.fake_nvml import FakeGpus

    gpus = FakeGpus(1, "r")
    store = TelemetryStore(tmp_path / "telemetry", "r", roll_seconds=3600)
    sampler = Sampler("r", gpus)
    for i in range(100):
        if i == 55:
            gpus.t = 0.0  # the counter starts again from zero
        store.append(sampler.sample(sd.T0 + i), sd.T0 + i)
        gpus.advance(1.0)
    store.close()
    s = Store(str(tmp_path))
    try:
        t = gpu_trends(s, _t(0), _t(100), 10, keys=("pcie_tx",))
    finally:
        s.close()
    rates = dict(zip(t["bucket"].to_pylist(), t["pcie_tx_mean"].to_pylist()))
    assert len(rates) == 10 and rates[_t(50)] is None  # samples 50..54 then 0..4 after the reset
    assert all(r == pytest.approx(1.0) for b, r in rates.items() if b != _t(50))
