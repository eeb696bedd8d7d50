"""The job page's figure (pure: tables in, a plain plotly figure dict out): the job's GPU
utilization and memory (or, for CPU workers, its nodes' host CPU and memory) over a timeline of
its chunk attempts, one lane per GPU / worker / chunk slot, failed attempts on the lane they ran
on, and the job's key events (``ffray.analytics.events``) written on the chart.

One x axis (dates, UTC) is shared by three y axes stacked by domain, so every panel is on real
time; notes are placed in paper coordinates inside their panel (an annotation on a subplot's
``x domain`` was rewritten to data coordinates and pulled the axis back to 1970)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa

from dashboard.colours import series_colour
from dashboard.figures import (
    GIB,
    STATUS_COLOURS,
    TEMPLATE,
    chunk_category,
    chunk_hover,
    lane_label,
    series_groups,
    times,
)
from ffray.analytics.costs import worker_lanes

NO_SAMPLES = "no GPU or host samples for this job (telemetry was off)"
CPU_NOTE = "no GPU samples for this job (CPU workers): host CPU and memory of its nodes"
MAX_EVENT_LABELS = 8
LANE_PX = 26


def _naive(t: datetime) -> str:
    return t.replace(tzinfo=None).isoformat()


def _lines(table: pa.Table, labels: dict, cols: list[tuple[str, str, float, str, str]]) -> list[dict]:
    """Per series one line per (column, y axis, scale, unit, min/max prefix) in ``cols``, coloured
    by the series' key (GPU UUID or node: ``dashboard.colours``, the cluster page's colours)."""
    traces = []
    if not table.num_rows:
        return traces
    x = times(table["bucket"])
    for key, sl in series_groups(table):
        name = labels.get(key, key)
        for i, (col, axis, scale, unit, mm) in enumerate(cols):
            y = np.round(table[col].to_numpy(zero_copy_only=False).astype(float)[sl] * scale, 2)
            tr = {"type": "scatter", "mode": "lines", "name": name, "legendgroup": name, "xaxis": "x",
                  "yaxis": axis, "x": x[sl], "y": y, "line": {"width": 1.3, "color": series_colour(key)},
                  "showlegend": i == 0,
                  "hovertemplate": f"%{{fullData.name}}<br>%{{x}} UTC<br>%{{y}} {unit}<extra></extra>"}
            if mm:
                lo = table[f"{mm}_min"].to_numpy(zero_copy_only=False).astype(float)[sl] * scale
                hi = table[f"{mm}_max"].to_numpy(zero_copy_only=False).astype(float)[sl] * scale
                tr["customdata"] = np.round(np.c_[lo, hi], 2)
                tr["hovertemplate"] = (f"%{{fullData.name}}<br>%{{x}} UTC<br>mean %{{y}} {unit} "
                                       f"(min %{{customdata[0]}}, max %{{customdata[1]}})<extra></extra>")
            traces.append(tr)
    return traces


def lanes_of(chunks: list[dict], labels: dict) -> tuple[list[str], list[str]]:
    """(lane label of each attempt, lanes top to bottom): GPUs/workers by name, their chunk
    slots in order, failed attempts without a place last."""
    lanes = worker_lanes(chunks)
    names = [lane_label(r, labels, ln) for r, ln in zip(chunks, lanes)]
    key = {}
    for n, (dev, lane, _, _) in zip(names, lanes):
        key.setdefault(n, (dev == "failed", n.split(" · slot")[0].split(" · worker")[0], lane, n))
    return names, sorted(key, key=lambda n: key[n])


def _bars(chunks: list[dict], names: list[str]) -> list[dict]:
    out = []
    for cat, colour in STATUS_COLOURS.items():
        idx = [i for i, r in enumerate(chunks) if chunk_category(r) == cat and r["start"] is not None]
        if not idx:
            continue
        rows = [chunks[i] for i in idx]
        out.append({
            "type": "bar", "orientation": "h", "name": f"chunks: {cat}", "xaxis": "x", "yaxis": "y3",
            "marker": {"color": colour, **({"pattern": {"shape": "/"}} if cat == "failed" else {})},
            "base": [_naive(r["start"]) for r in rows],
            "x": [max(1.0, (r["seconds"] or 0) * 1000.0) for r in rows],
            "y": [names[i] for i in idx], "text": [str(r["chunk"]) for r in rows],
            "textposition": "inside", "insidetextanchor": "middle",
            "customdata": [[r["chunk"], r["attempt"]] for r in rows],
            "hovertext": [chunk_hover(r) for r in rows], "hoverinfo": "text"})
    return out


def _event_marks(events, chunks: list[dict], names: list[str], order: list[str],
                 window: tuple[datetime, datetime] | None) -> tuple[list[dict], list[dict]]:
    """Annotations in words (at the attempt's lane, or above the chunks for job-wide events) and
    lines/shading through the curves at each event's time."""
    notes, shapes = [], []
    lane = {(r["chunk"], r["attempt"]): names[i] for i, r in enumerate(chunks)}
    span = (window[1] - window[0]).total_seconds() if window else 0.0
    shown = [e for e in events if e.start is not None][:MAX_EVENT_LABELS]
    for i, e in enumerate(shown):
        end = e.end or e.start
        mid = e.start + (end - e.start) / 2
        if e.kind == "saturated":
            shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": _naive(e.start),
                           "x1": _naive(end), "y0": DOMAINS["top"][0], "y1": DOMAINS["top"][1],
                           "fillcolor": "#ff7f0e", "opacity": 0.15, "line": {"width": 0}, "layer": "below"})
        else:
            shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": _naive(e.start),
                           "x1": _naive(e.start), "y0": DOMAINS["mid"][0], "y1": DOMAINS["top"][1],
                           "line": {"width": 1, "dash": "dot", "color": "#888"}})
        name = lane.get((e.chunk, e.attempt)) if e.attempt else next(
            (names[k] for k, r in enumerate(chunks) if r["chunk"] == e.chunk and r["status"] == "done"), None)
        frac = (mid - window[0]).total_seconds() / span if span else 0.5
        anchor = "left" if frac < 0.3 else "right" if frac > 0.7 else "center"
        colour = {"retry": "#b22222", "saturated": "#c25e00"}.get(e.kind, "#222")
        base = {"x": _naive(mid), "xref": "x", "text": e.text, "showarrow": True, "arrowhead": 0,
                "arrowwidth": 1, "arrowcolor": "#888", "ax": 0, "xanchor": anchor,
                "font": {"size": 11, "color": colour}, "bgcolor": "rgba(255,255,255,0.85)",
                "name": f"event-{e.kind}"}
        if name in order:
            notes.append({**base, "yref": "y3", "y": order.index(name), "ay": -14 - 17 * (i % 4)})
        else:
            notes.append({**base, "yref": "paper", "y": DOMAINS["top"][0], "ay": -12 - 17 * (i % 3)})
    return notes, shapes


DOMAINS = {"top": (0.74, 1.0), "mid": (0.52, 0.67), "chunks": (0.0, 0.44)}


def job_figure(chunks: list[dict], trend: pa.Table, labels: dict, host: pa.Table | None = None,
               events=()) -> dict:
    """The job page's figure: GPU curves (or host curves for CPU workers) over the chunk lanes."""
    names, order = lanes_of(chunks, labels)
    gpu = trend is not None and trend.num_rows > 0
    cpu = not gpu and host is not None and host.num_rows > 0
    if gpu:
        traces = _lines(trend, labels, [("util_mean", "y", 1.0, "%", "util"),
                                        ("mem_max", "y2", 1 / GIB, "GiB", "")])
        titles = ("GPU utilization (%, bucket mean; hover for min/max)", "GPU memory used (GiB, bucket max)")
    elif cpu:
        traces = _lines(host, {}, [("cpu_mean", "y", 1.0, "%", "cpu"), ("mem_max", "y2", 1 / GIB, "GiB", "")])
        titles = (f"Host CPU (%) · {CPU_NOTE}", "Host memory used (GiB)")
    else:
        traces, titles = [], ("GPU utilization (%)", "GPU memory (GiB)")
    traces += _bars(chunks, names)
    starts = [r["start"] for r in chunks if r["start"] is not None]
    ends = [r["end"] or r["start"] for r in chunks if r["start"] is not None]
    window = (min(starts), max(ends)) if starts else None
    notes, shapes = _event_marks(list(events), chunks, names, order, window)
    for title, (_, top) in zip(titles + ("Chunks per GPU / worker (lane: chunk slot)",), DOMAINS.values()):
        notes.append({"text": f"<b>{title}</b>", "xref": "paper", "yref": "paper", "x": 0, "y": top,
                      "xanchor": "left", "yanchor": "bottom", "showarrow": False, "font": {"size": 12}})
    if not gpu and not cpu:
        notes.append({"text": NO_SAMPLES, "xref": "paper", "yref": "paper", "x": 0.5, "showarrow": False,
                      "y": sum(DOMAINS["top"]) / 2, "font": {"color": "#6b7280"}, "name": "no-samples"})
    height = 560 + LANE_PX * max(6, len(order))
    return {"data": traces, "layout": {
        "template": TEMPLATE, "height": height, "barmode": "overlay", "bargap": 0.25,
        "margin": {"l": 200, "r": 20, "t": 50, "b": 40}, "hovermode": "closest", "uirevision": "job",
        "legend": {"orientation": "h", "x": 1, "y": 1.0, "yanchor": "bottom", "xanchor": "right",
                   "font": {"size": 10}},
        "xaxis": {"type": "date", "anchor": "y3", "title": {"text": "time (UTC)"}, "showspikes": True,
                  "spikemode": "across", "spikethickness": 1},
        "yaxis": {"domain": list(DOMAINS["top"]), "anchor": "x", "rangemode": "tozero",
                  **({"range": [0, 105]} if gpu or cpu else {})},
        "yaxis2": {"domain": list(DOMAINS["mid"]), "anchor": "x", "rangemode": "tozero"},
        "yaxis3": {"domain": list(DOMAINS["chunks"]), "anchor": "x", "type": "category",
                   "categoryorder": "array", "categoryarray": order, "autorange": "reversed"},
        "annotations": notes, "shapes": shapes}}
