"""The cluster page's server work: a view (``urlstate.ClusterView``) in, figures, live-refresh
state and a message out. GPU panels (utilization, memory, power, temperature, a GPU x time
heatmap) where GPUs were sampled; host panels (CPU, memory) for every node with host samples,
so a CPU-only cluster sees its hosts, and CPU per worker process (its own callback over the
drawn window, like the metric view: its labels read the spans); a metric view for everything
else that is recorded."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from dashboard.data import Data, preset_window
from dashboard.figures import gpu_label, series_groups
from dashboard.trends import empty_figure, heatmap_figure, line_figure
from dashboard.urlstate import ClusterView
from ffray.analytics.alertstate import STALE_S
from ffray.analytics.metrics import HOST_PANELS, METRICS, PANELS, WORKER_PANELS, by_node
from ffray.analytics.queries import bucket_seconds, throttle_periods

CHARTS = (*PANELS, *HOST_PANELS)  # line charts of the panels' callback, live-refreshed; ids c-<key>
POINT_BUDGET = 40_000  # points per chart across all series
EMPTY_HELP = ("Record some: `ffray demo`, `ffray swap …` (telemetry is on by default) or "
              "`ffray telemetry record --data-dir DIR` on each node.")
NO_GPU = ("No GPU telemetry in this range (CPU-only nodes, or no NVML there): host CPU and memory "
          "of {n} node(s) below")
SPREAD = {"gpu": "min/max", "node": "lowest/highest GPU"}


@dataclass(frozen=True)
class Drawn:
    figures: dict = field(default_factory=dict)  # chart key (CHARTS, "heat") -> figure dict
    state: dict | None = None  # live refresh (c-state)
    window: dict | None = None  # the drawn window, for the metric view (c-window)
    msg: str = ""
    gpu: bool = False  # show the GPU panels
    host: bool = False  # show the host panels


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text.strip().replace(" ", "T"))
    except ValueError:
        return None
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def window(data: Data, view: ClusterView):
    """(start, end, note) for the view; None when there is no telemetry at all."""
    ext = data.extent()
    if ext is None:
        return None
    lo, hi = ext
    hi = hi + timedelta(seconds=1)
    if view.range == "all":
        return lo, hi, ""
    if view.range == "custom":
        a, b = parse_time(view.t_from), parse_time(view.t_to)
        if a is None or b is None or a >= b:
            return lo, hi, "custom range: give From and To as YYYY-MM-DD HH:MM (UTC), From before To; " \
                           "showing everything"
        return a, b, ""
    a, b = preset_window(view.range, hi)
    return a, b, ""


def last_bucket_end(end: datetime, b: int, done: bool) -> datetime:
    """Where a preset window's drawn buckets stop (whole buckets only). While a recorder runs
    (``done`` False), before the bucket holding ``end``, the data's last sample: a roll of its
    journal may still add samples there, and live refresh appends it once it is complete. When
    none runs (a finished job), after that bucket: no sample can come to complete it, and a
    finished job's last seconds, often all of a short one's, would never be drawn."""
    t = end.timestamp()
    return datetime.fromtimestamp((-(-t // b) if done else t // b) * b, tz=timezone.utc)


def draw(data: Data, view: ClusterView, now: datetime) -> Drawn:
    if data.missing():
        return Drawn(msg=f"No data directory at {data.target} yet. {EMPTY_HELP}")
    with data.session() as d:
        return _draw(d, view, now)


def _draw(data: Data, view: ClusterView, now: datetime) -> Drawn:
    w = window(data, view)
    if w is None:
        return Drawn(msg=f"No GPU or host telemetry in {data.target} yet. {EMPTY_HELP}")
    start, end, note = w
    nodes, gpus = list(view.nodes), list(view.gpus)
    # one scan per table: the GPUs and hosts drawn come from the trends themselves (no inventory
    # scan first); the bucket allows 600 points per series, coarser only past ~66 lines a chart
    b = bucket_seconds((end - start).total_seconds(), 600)
    done = not data.recording()  # no recorder can add to the last bucket any more
    while True:
        s0 = datetime.fromtimestamp(start.timestamp() // b * b, tz=timezone.utc)  # whole buckets only,
        e0 = end if view.range == "custom" else last_bucket_end(end, b, done)  # live refresh appends
        per_gpu = data.gpu_trends(s0, e0, b, uuids=gpus, nodes=nodes)
        ht = data.host_trends(s0, e0, b, nodes=nodes)
        chosen = gpus_in(per_gpu)
        by = view.by if view.by != "auto" else ("gpu" if len(chosen) <= 16 else "node")
        lines = max(len(chosen) if by == "gpu" else len({g["node"] for g in chosen}),
                    len(set(ht["series"].to_pylist())), 1)
        coarser = bucket_seconds((end - start).total_seconds(), max(60, POINT_BUDGET // lines))
        if coarser <= b:
            break
        b = coarser
    start, end = s0, e0
    hosts = sorted(set(ht["series"].to_pylist()))
    if not chosen and not hosts:
        return Drawn(msg=note or "No samples in this range.", gpu=False, host=False)
    figs: dict = {}
    order, parts = [], []
    labels = gpu_labels(chosen, by)
    if chosen:
        table = per_gpu if by == "gpu" else by_node(per_gpu)
        shaded = throttle_periods(table, b)
        # alert states from the drawn buckets: a GPU's last bucket (its end) stands for its last
        # sample, so "still sampled" allows for a bucket and the partial one not drawn yet
        last = {g["gpu_uuid"]: min(g["last"] + timedelta(seconds=b), end) for g in chosen}
        eps = [e for e in data.episodes(now, start, end, last_seen=last, stale_s=max(STALE_S, 2 * b))
               if e.gpu_uuid in last or e.gpu_uuid is None]
        for k in PANELS:
            figs[k] = line_figure(table, METRICS[k], labels, spread=SPREAD[by], throttles=shaded,
                                  episodes=eps, bucket_s=b)
        figs["heat"] = heatmap_figure(per_gpu, gpu_labels(chosen, "gpu"))
        order = [k for k, _ in series_groups(table)]
        per_node = " (lines per node: hover gives the node's lowest and highest GPU)" if by == "node" else ""
        parts.append(f"{len(chosen)} GPU(s) on {len({g['node'] for g in chosen})} node(s){per_node}")
        if shaded:
            parts.append(f"{len(shaded)} throttled period(s)")
        if eps:
            firing = sum(e.state == "firing" for e in eps)
            parts.append(f"{len(eps)} alert(s)" + (f", {firing} firing" if firing else ""))
    else:
        parts.append(NO_GPU.format(n=len(hosts)))
    if hosts:
        hl = {h: h for h in hosts}
        for k in HOST_PANELS:
            figs[k] = line_figure(ht, METRICS[k], hl, height=230, bucket_s=b,
                                  note=" · whole node, % of all its cores" if k == "cpu" else "")
    horder = [k for k, _ in series_groups(ht)]
    parts.insert(1, f"{b}-second buckets")
    if note:
        parts.append(note)
    state = {"bucket": b, "end": end.isoformat(), "order": order, "horder": horder, "by": by,
             "nodes": nodes, "gpus": gpus, "points": int((end - start).total_seconds() // b) + 1,
             "live": view.range not in ("all", "custom")}
    win = {"start": start.isoformat(), "end": end.isoformat(), "bucket": b, "by": by, "nodes": nodes,
           "gpus": gpus, "labels": labels, "gpu": bool(chosen), "host": bool(hosts)}
    return Drawn(figs, state, win, "; ".join(parts), gpu=bool(chosen), host=bool(hosts))


def worker_figure(wt, labels: dict, bucket_s: int) -> dict:
    """CPU per worker: its labels (node · actor · pid (jobs)) are long and up to 32, so the legend
    has a bottom margin of its own (about 3 labels a row), below the axis title, and the chart
    grows with it instead of squashing the plot."""
    rows = -(-len(labels) // 3)
    fig = line_figure(wt, METRICS["worker_cpu"], labels, height=250 + 20 * rows, bucket_s=bucket_s,
                      note=" · worker process + its codec processes")
    lay = fig["layout"]
    lay["legend"] = {**lay["legend"], "yref": "container", "y": 0, "yanchor": "bottom"}
    lay["margin"] = {**lay["margin"], "b": 64 + 20 * rows}
    return fig


def gpus_in(per_gpu) -> list[dict]:
    """The GPUs of a per-GPU trend table: UUID, node, index and the start of its last bucket."""
    if not per_gpu.num_rows:
        return []
    grouped = per_gpu.group_by(["series", "node", "gpu_index"], use_threads=False).aggregate(
        [("bucket", "max")])
    return sorted(({"gpu_uuid": u, "node": n, "gpu_index": i, "last": t} for u, n, i, t in zip(
        *(grouped[c].to_pylist() for c in ("series", "node", "gpu_index", "bucket_max")))),
        key=lambda g: (g["node"] or "", -1 if g["gpu_index"] is None else g["gpu_index"], g["gpu_uuid"]))


def gpu_labels(chosen: list[dict], by: str) -> dict:
    if by == "node":
        return {g["node"]: g["node"] for g in chosen}
    return {g["gpu_uuid"]: gpu_label(g["gpu_uuid"], g["node"], g["gpu_index"]) for g in chosen}


def draw_metric(data: Data, win: dict | None, key: str) -> dict:
    """The metric view: one picked metric over the window the panels show."""
    m = METRICS.get(key)
    if m is None or not win:
        return empty_figure("pick a metric")
    start, end = datetime.fromisoformat(win["start"]), datetime.fromisoformat(win["end"])
    b, nodes, gpus, by = win["bucket"], win["nodes"], win["gpus"], win["by"]
    if m.table != "host" and not win["gpu"]:
        return empty_figure(f"{m.title}: no GPU samples in this range")
    with data.session() as d:
        if m.table == "gpu":
            per_gpu = d.gpu_trends(start, end, b, uuids=gpus, nodes=nodes, keys=(key,))
            table, labels, spread = (per_gpu if by == "gpu" else by_node(per_gpu)), win["labels"], SPREAD[by]
        elif m.table == "reasons":
            table = d.reason_trends(start, end, b, uuids=gpus, nodes=nodes)
            labels, spread = {}, "lowest/highest GPU"
        elif m.table == "proc":
            table, labels = d.proc_trends(start, end, b, uuids=gpus, nodes=nodes)
            spread = "min/max"
        else:
            table, labels, spread = d.host_trends(start, end, b, nodes=nodes), {}, "min/max"
    if not table.num_rows:
        what = "no clock event reason was set" if m.table == "reasons" else "nothing recorded"
        return empty_figure(f"{m.title}: {what} in this range")
    note = " · counter's rise per second" if m.kind == "counter" else ""
    return line_figure(table, m, labels, spread=spread, height=300, note=note, bucket_s=b)


def draw_workers(data: Data, win: dict | None) -> tuple[dict, list]:
    """The CPU-per-worker panel over the window the panels drew: (figure, its series order, for
    live refresh)."""
    if not win or not win.get("host"):
        return empty_figure("CPU per worker: no host samples in this range"), []
    start, end = datetime.fromisoformat(win["start"]), datetime.fromisoformat(win["end"])
    with data.session() as d:
        wt, labels = d.worker_trends(start, end, win["bucket"], nodes=win["nodes"])
    if not wt.num_rows:
        return empty_figure("CPU per worker: no ffray worker sampled in this range"), []
    return worker_figure(wt, labels, win["bucket"]), [k for k, _ in series_groups(wt)]


def extend(data: Data, state: dict, now: datetime, worder=()):
    """({chart key: extendData payload}, new state) for the buckets completed since
    ``state['end']`` (the worker panel's too, for its series ``worder``); (None, state) when
    there are none."""
    b = state["bucket"]
    start = datetime.fromisoformat(state["end"])
    end = datetime.fromtimestamp(now.timestamp() // b * b, tz=timezone.utc)
    if end <= start:
        return None, state
    out = {}
    with data.session() as d:
        if state["order"]:
            per_gpu = d.gpu_trends(start, end, b, uuids=state["gpus"], nodes=state["nodes"])
            table = per_gpu if state["by"] == "gpu" else by_node(per_gpu)
            out.update({k: _payload(table, k, state["order"], state["points"]) for k in PANELS})
        if state.get("horder"):
            ht = d.host_trends(start, end, b, nodes=state["nodes"])
            out.update({k: _payload(ht, k, state["horder"], state["points"]) for k in HOST_PANELS})
        if worder:
            wt, _ = d.worker_trends(start, end, b, nodes=state["nodes"], labelled=False)
            out.update({k: _payload(wt, k, list(worder), state["points"]) for k in WORKER_PANELS})
    out = {k: v for k, v in out.items() if v is not None}
    if not out:
        return None, state
    return out, {**state, "end": end.isoformat()}


def _payload(table, key: str, order: list, points: int):
    index = {k: i for i, k in enumerate(order)}
    xs, ys, cds, idx = [], [], [], []
    for series, sl in series_groups(table):
        if series in index:
            idx.append(index[series])
            xs.append([t.replace(tzinfo=None).isoformat() for t in table["bucket"][sl].to_pylist()])
            ys.append(_rounded(table[f"{key}_mean"][sl]))
            # the hover's min/max travel with their means, so maxPoints trims all three alike
            lo, hi = _rounded(table[f"{key}_min"][sl]), _rounded(table[f"{key}_max"][sl])
            cds.append([list(p) for p in zip(lo, hi)])
    return ({"x": xs, "y": ys, "customdata": cds}, idx, points) if idx else None


def _rounded(values) -> list:
    return [round(v, 2) if v is not None else None for v in values.to_pylist()]
