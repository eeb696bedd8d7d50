"""Plotly figures from analytics tables (pure: table in, figure out)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pyarrow as pa
from plotly.subplots import make_subplots

from ffray.analytics.costs import short_node, worker_lanes

GIB = 1024 ** 3
TEMPLATE = pio.templates["plotly_white"].to_plotly_json()  # plotly.js needs the template itself
STATUS_COLOURS = {"done": "#1f77b4", "retried": "#ff7f0e", "failed": "#d62728"}


def _times(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """UTC timestamps as naive numpy datetime64 (plotly serialises these fast)."""
    return arr.cast(pa.timestamp("us")).to_numpy(zero_copy_only=False)


def series_groups(table: pa.Table):
    """(series key, slice) per series of a ``trends`` table sorted by series, bucket."""
    keys = table["series"].to_numpy(zero_copy_only=False)
    if not len(keys):
        return []
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    return [(keys[a], slice(a, b)) for a, b in zip(starts, ends)]


def _base_layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(title={"text": title, "x": 0.01, "font": {"size": 14}}, height=height,
                      margin={"l": 55, "r": 10, "t": 36, "b": 30}, hovermode="closest",
                      legend={"orientation": "h", "y": -0.18, "font": {"size": 10}},
                      template="plotly_white", uirevision="keep")
    return fig


def chunk_category(row: dict) -> str:
    if row["status"] != "done":
        return "failed"
    return "retried" if row["attempt"] > 1 else "done"


def gpu_label(uuid: str | None, node: str | None, index=None) -> str:
    """``node · GPU<index>`` (the UUID's tail when the index is unknown)."""
    if not uuid:
        return "failed attempts"
    n = short_node(node)
    return f"{n} · GPU{index}" if index is not None else f"{n} · {uuid[-12:]}"


def lane_label(r: dict, labels: dict, lane: tuple[str, int, int] | None = None) -> str:
    """The timeline row of a chunk attempt: its GPU, its node's CPU, or the failed-attempts row;
    with ``lane`` (``worker_lanes``) one row per worker, or per chunk slot of a worker, where spans
    on a device overlap."""
    if r["gpu_uuid"]:
        base = labels.get(r["gpu_uuid"], gpu_label(r["gpu_uuid"], r["node"]))
    elif r["status"] == "done":
        base = f"{short_node(r['node'])} · CPU"
    else:
        return "failed attempts"
    return f"{base} · {lane[3]}" if lane and lane[2] > 1 and lane[3] else base


def chunk_hover(r: dict) -> str:
    mem = r.get("peak_mem_process") or r.get("peak_mem_device")
    parts = [f"<b>chunk {r['chunk']}</b> attempt {r['attempt']} ({r['status']})",
             f"{r.get('frames') or 0} frames, {r.get('faces_detected') or 0} faces "
             f"({(r.get('faces_detected') or 0) / max(1, r.get('frames') or 1):.2f}/frame)",
             f"{r['seconds']:.1f} s: decode {r.get('decode_s') or 0:.1f}, process {r.get('infer_s') or 0:.1f}"
             f", encode {r.get('encode_s') or 0:.1f}"]
    if r["status"] == "done":
        parts += [f"GPU-seconds {r['gpu_seconds']:.1f} (share {r['gpus']:g})",
                  f"energy {(r.get('energy_j') or 0) / 1000:.2f} kJ",
                  f"peak memory {(mem or 0) / GIB:.2f} GiB, mean util {r.get('mean_util') or 0:.0f} %"]
    return "<br>".join(parts)


def job_figure(chunks: list[dict], trend: pa.Table, labels: dict) -> go.Figure:
    """GPU utilization and memory of the job's GPUs (rows 1-2) over a Gantt of its chunk attempts
    per GPU (row 3), on one shared time axis."""
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        row_heights=[0.28, 0.22, 0.5],
                        subplot_titles=("GPU utilization (%)", "GPU memory (GiB)", "Chunks per GPU"))
    if trend.num_rows:
        x = _times(trend["bucket"])
        util = trend["util_mean"].to_numpy(zero_copy_only=False).astype(float)
        mem = trend["mem_max"].to_numpy(zero_copy_only=False).astype(float) / GIB
        for key, sl in series_groups(trend):
            name = labels.get(key, key)
            fig.add_trace(go.Scatter(x=x[sl], y=np.round(util[sl], 1), mode="lines", name=name,
                                     legendgroup=name, line={"width": 1.2},
                                     hovertemplate="%{fullData.name}<br>%{x}<br>%{y} %<extra></extra>"),
                          row=1, col=1)
            fig.add_trace(go.Scatter(x=x[sl], y=np.round(mem[sl], 2), mode="lines", name=name,
                                     legendgroup=name, showlegend=False, line={"width": 1.2},
                                     hovertemplate="%{fullData.name}<br>%{x}<br>%{y} GiB<extra></extra>"),
                          row=2, col=1)
    if not trend.num_rows:
        fig.add_annotation(text="no GPU samples for this job (CPU workers, or telemetry was off)",
                           showarrow=False, xref="x domain", yref="y domain", x=0.5, y=0.5, row=1, col=1)
    lanes = dict(zip([(r["chunk"], r["attempt"]) for r in chunks], worker_lanes(chunks)))
    for cat, colour in STATUS_COLOURS.items():
        rows = [r for r in chunks if chunk_category(r) == cat and r["start"] is not None]
        if not rows:
            continue
        fig.add_trace(go.Bar(
            orientation="h", name=f"chunks: {cat}", marker={"color": colour},
            base=[r["start"].replace(tzinfo=None).isoformat() for r in rows],
            x=[max(1.0, r["seconds"] * 1000.0) for r in rows],
            y=[lane_label(r, labels, lanes[(r["chunk"], r["attempt"])]) for r in rows],
            text=[str(r["chunk"]) for r in rows], textposition="inside", insidetextanchor="middle",
            customdata=[[r["chunk"], r["attempt"]] for r in rows],
            hovertext=[chunk_hover(r) for r in rows], hoverinfo="text"), row=3, col=1)
    fig.update_layout(barmode="overlay", bargap=0.25)
    fig.update_yaxes(categoryorder="category descending", row=3, col=1)
    fig.update_xaxes(type="date")
    _base_layout(fig, "", 720)
    fig.update_layout(margin={"l": 190, "r": 10, "t": 30, "b": 30}, legend={"y": -0.08})
    return fig
