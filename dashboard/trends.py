"""The cluster page's figures (pure: Arrow tables in, plotly figure dicts out).

Plain dicts, not plotly's validating objects (those cost more than the query at 64 GPUs). Every
time axis says UTC (timestamps are stored and drawn in UTC); every line's colour comes from
``dashboard.colours.series_colour`` of its key, so a GPU has one colour on every chart; x spikes
draw the crosshair (dashboard/assets/sync.js links hover and zoom across the charts). Alert
episodes are orange bands with a marker at the moment each fired (hover: rule, state, duration);
throttled periods stay red.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from dashboard.colours import series_colour
from dashboard.figures import TEMPLATE, series_groups, times
from ffray.analytics.metrics import Metric

X_AXIS = {"type": "date", "title": {"text": "time (UTC)", "font": {"size": 11}}, "showspikes": True,
          "spikemode": "across", "spikesnap": "cursor", "spikethickness": 1, "spikecolor": "#555",
          "spikedash": "dot"}
ALERT_COLOUR = "#f59e0b"
MAX_SHAPES = 300
MARGIN_L = 110  # one left margin on every chart (the heatmap's row names fit), so times line up




def _num(table: pa.Table, col: str) -> np.ndarray:
    return table[col].to_numpy(zero_copy_only=False).astype(float)


def _naive(t):
    return t.replace(tzinfo=None)


def _gaps(x: np.ndarray, bucket_s: int | None) -> np.ndarray:
    """Positions after which a series has no bucket (a GPU, node or process not sampled)."""
    if bucket_s is None or len(x) < 2:
        return np.array([], dtype=int)
    return np.flatnonzero(np.diff(x).astype("timedelta64[s]").astype(np.int64) > bucket_s) + 1


def line_figure(table: pa.Table, metric: Metric, labels: dict, *, spread: str = "min/max",
                throttles=(), episodes=(), height: int = 250, note: str = "",
                bucket_s: int | None = None) -> dict:
    """One mean line per series; the hover gives the bucket's ``spread`` (min/max of its samples,
    or for node lines the lowest/highest GPU) in ``customdata``. With ``bucket_s``, a line breaks
    where buckets are missing instead of joining across the gap."""
    k, unit = metric.key, metric.unit
    traces = []
    if table.num_rows:
        x = times(table["bucket"])
        mean, lo, hi = (np.round(_num(table, f"{k}_{s}"), 2) for s in ("mean", "min", "max"))
        for key, sl in series_groups(table):
            xs, ys, cd = x[sl], mean[sl], np.c_[lo[sl], hi[sl]]
            gaps = _gaps(xs, bucket_s)
            if len(gaps):  # a point with no value at the start of each gap
                xs = np.insert(xs, gaps, xs[gaps - 1] + np.timedelta64(int(bucket_s), "s"))
                ys = np.insert(ys, gaps, np.nan)
                cd = np.insert(cd, gaps, np.nan, axis=0)
            traces.append({  # a line of one or two buckets (a short job) would not show: markers too
                "type": "scatter", "mode": "lines" if np.isfinite(ys).sum() > 2 else "lines+markers",
                "marker": {"size": 5}, "name": labels.get(key, key), "uid": str(key),
                "line": {"width": 1.3, "color": series_colour(key)},
                "x": xs, "y": ys, "customdata": cd,
                "hovertemplate": f"%{{fullData.name}}<br>%{{x|%Y-%m-%d %H:%M:%S}} UTC<br>mean %{{y}} {unit} "
                                 f"({spread} %{{customdata[0]}} to %{{customdata[1]}})<extra></extra>"})
    shapes = [{"type": "rect", "xref": "x", "yref": "paper", "x0": _naive(a), "x1": _naive(b), "y0": 0,
               "y1": 1, "fillcolor": "#d62728", "opacity": 0.12, "line": {"width": 0}, "layer": "below"}
              for a, b in list(throttles)[:MAX_SHAPES]]
    marks = alert_marks(episodes)
    shapes += marks["shapes"]
    if marks["trace"] is not None:
        traces.append(marks["trace"])  # last: live refresh extends the series traces by index
    legend = [t for t in (" · red: throttled" if throttles else "", " · orange: alerts" if episodes else "")]
    title = f"{metric.title} ({unit or 'value'}, bucket mean; hover for {spread}){''.join(legend)}{note}"
    return {"data": traces, "layout": {
        "title": {"text": title, "x": 0.01, "font": {"size": 14}}, "height": height,
        "margin": {"l": MARGIN_L, "r": 10, "t": 36, "b": 40}, "hovermode": "closest",
        "legend": {"orientation": "h", "y": -0.25, "font": {"size": 10}}, "template": TEMPLATE,
        "uirevision": "keep", "shapes": shapes, "xaxis": X_AXIS,
        "yaxis": {"title": {"text": unit}}, "yaxis2": {"overlaying": "y", "range": [0, 1], "visible": False,
                                                       "fixedrange": True}}}


def alert_marks(episodes) -> dict:
    """Bands from each alert episode's start to its end, and one marker trace at the top of the
    chart (its own hidden 0..1 axis) at the moments they fired."""
    eps = list(episodes)[:MAX_SHAPES]
    # a band where the end is known (resolved) or the alert still fires; an open episode (no
    # resolve recorded) gets its marker only: its end is unknown
    shapes = [{"type": "rect", "xref": "x", "yref": "paper", "x0": _naive(e.fired), "x1": _naive(e.end),
               "y0": 0, "y1": 1, "fillcolor": ALERT_COLOUR, "opacity": 0.15,
               "line": {"width": 1, "color": ALERT_COLOUR}, "layer": "below"}
              for e in eps if e.state != "open" and e.end is not None and e.end > e.fired]
    if not eps:
        return {"shapes": [], "trace": None}
    trace = {"type": "scatter", "mode": "markers", "name": "alerts", "uid": "alerts", "yaxis": "y2",
             "x": [_naive(e.fired) for e in eps], "y": [0.97] * len(eps),
             "marker": {"symbol": "triangle-down", "size": 10, "color": ALERT_COLOUR,
                        "line": {"width": 1, "color": "#92400e"}},
             "hovertext": [alert_text(e) for e in eps], "hoverinfo": "text", "showlegend": False}
    return {"shapes": shapes, "trace": trace}


def alert_text(e) -> str:
    return (f"alert {e.rule}: {e.state} ({duration_text(e.duration_s)}{'+' if e.state == 'open' else ''})"
            f"<br>{e.fired:%Y-%m-%d %H:%M:%S} UTC · {e.node}"
            + (f" · GPU{e.gpu_index}" if e.gpu_index is not None else "") + f"<br>{e.message}")


def duration_text(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def heatmap_figure(per_gpu: pa.Table, labels: dict, key: str = "util", unit: str = "%",
                   zmax: float | None = 100.0) -> dict:
    """GPU x time heatmap of one metric's bucket means (rows: GPUs by node and index), so one
    saturated GPU stands out even where lines are drawn per node."""
    if not per_gpu.num_rows:
        return empty_figure("no GPU samples")
    x_all = times(per_gpu["bucket"])
    xs, c_idx = np.unique(x_all, return_inverse=True)
    gpus = per_gpu.select(["series", "node", "gpu_index"]).group_by(["series", "node", "gpu_index"],
                                                                   use_threads=False).aggregate([])
    rows = sorted(zip(gpus["node"].to_pylist(), gpus["gpu_index"].to_pylist(), gpus["series"].to_pylist()),
                  key=lambda r: (r[0] or "", -1 if r[1] is None else r[1], r[2]))
    order = np.array([s for _, _, s in rows], dtype=object)
    keys = per_gpu["series"].to_numpy(zero_copy_only=False)
    sorter = np.argsort(order)
    r_idx = sorter[np.searchsorted(order, keys, sorter=sorter)]  # each row's GPU -> its heatmap row
    z = np.full((len(rows), len(xs)), np.nan)
    z[r_idx, c_idx] = np.round(_num(per_gpu, f"{key}_mean"), 1)
    names = [labels.get(s, s) for _, _, s in rows]
    height = 104 + max(4, len(rows)) * (22 if len(rows) <= 16 else 10)
    return {"data": [{"type": "heatmap", "x": xs, "y": names, "z": z, "colorscale": "Viridis", "zmin": 0,
                      "zmax": zmax, "colorbar": {"thickness": 8,  # (the unit is in the title)
                                                 "orientation": "h", "len": 0.25, "x": 1, "xanchor": "right",
                                                 "y": 1.03, "yanchor": "bottom"},
                      "hovertemplate": f"%{{y}}<br>%{{x|%Y-%m-%d %H:%M:%S}} UTC<br>%{{z}} {unit}"
                                       "<extra></extra>"}],
            "layout": {"title": {"text": "GPU utilization per GPU (bucket mean, %): a saturated GPU "
                                         "stands out", "x": 0.01, "font": {"size": 14}},
                       "height": height, "template": TEMPLATE,
                       "margin": {"l": MARGIN_L, "r": 10, "t": 60, "b": 40}, "uirevision": "keep",
                       "xaxis": X_AXIS,
                       "yaxis": {"autorange": "reversed", "type": "category", "tickfont": {"size": 10}}}}


def zoomed(fig: dict, zoom, revision=None) -> dict:
    """``fig`` shown over the time range ``zoom`` (x0, x1) when given (a zoom from the URL), with
    ``uirevision`` = ``revision`` (plotly keeps a user's zoom across redraws of one revision)."""
    layout = {**fig["layout"], "uirevision": revision or "keep"}
    if zoom and "xaxis" in layout and layout["xaxis"].get("visible", True):
        layout["xaxis"] = {**layout["xaxis"], "range": list(zoom), "autorange": False}
    return {**fig, "layout": layout}


def empty_figure(text: str) -> dict:
    return {"data": [], "layout": {
        "annotations": [{"text": text, "showarrow": False, "x": 0.5, "y": 0.5, "xref": "paper",
                         "yref": "paper"}],
        "height": 140, "template": TEMPLATE, "xaxis": {"visible": False}, "yaxis": {"visible": False},
        "margin": {"l": 10, "r": 10, "t": 10, "b": 10}}}
