"""Cluster page: per-GPU (or per-node) trends of utilization, memory, power and temperature with
throttled periods shaded; range presets or a custom range, node/GPU filters, and live refresh that
appends the buckets completed since the last draw (``extendData``) instead of redrawing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from dash import Input, Output, State, dcc, html, no_update

from dashboard.data import Data, preset_window
from dashboard.figures import METRICS, gpu_label, series_groups, trend_figure
from ffray.analytics.queries import bucket_seconds, throttle_periods

PRESETS = [("last 15 min", "15m"), ("last hour", "1h"), ("last 6 h", "6h"), ("last 24 h", "24h"),
           ("last 7 days", "7d"), ("everything", "all"), ("custom (UTC)", "custom")]
GRAPHS = list(METRICS)
POINT_BUDGET = 40_000  # points per chart across all series
EMPTY_HELP = ("Record some: `ffray demo`, `ffray swap …` (telemetry is on by default) or "
              "`ffray telemetry record --data-dir DIR` on each node.")


def layout(data: Data) -> html.Div:
    return html.Div([
        html.Div([
            html.Div([html.Label("Range"), dcc.Dropdown(id="c-range", options=[
                {"label": a, "value": b} for a, b in PRESETS], value="1h", clearable=False)],
                className="ctl"),
            html.Div([html.Label("From / to (UTC)"),
                      dcc.Input(id="c-from", type="text", placeholder="from YYYY-MM-DD HH:MM", debounce=True),
                      dcc.Input(id="c-to", type="text", placeholder="to YYYY-MM-DD HH:MM", debounce=True)],
                     className="ctl"),
            html.Div([html.Label("Nodes"), dcc.Dropdown(id="c-nodes", multi=True, placeholder="all")],
                     className="ctl wide"),
            html.Div([html.Label("GPUs"), dcc.Dropdown(id="c-gpus", multi=True, placeholder="all")],
                     className="ctl wide"),
            html.Div([html.Label("Lines"), dcc.RadioItems(id="c-by", options=[
                {"label": "auto", "value": "auto"}, {"label": "per GPU", "value": "gpu"},
                {"label": "per node", "value": "node"}], value="auto", inline=True)], className="ctl"),
            html.Div([dcc.Checklist(id="c-live", options=[{"label": " live", "value": "live"}],
                                    value=["live"])], className="ctl"),
        ], className="controls"),
        html.Div(id="c-msg", className="msg"),
        *[dcc.Graph(id=f"c-{g}", config={"displaylogo": False}) for g in GRAPHS],
        dcc.Interval(id="c-tick", interval=5000),
        dcc.Store(id="c-state"),
    ])


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text.strip().replace(" ", "T"))
    except ValueError:
        return None
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def window(data: Data, preset: str, t_from: str | None, t_to: str | None):
    """(start, end, note) for the controls; None when there is no telemetry at all."""
    ext = data.extent()
    if ext is None:
        return None
    lo, hi = ext
    hi = hi + timedelta(seconds=1)
    if preset == "all":
        return lo, hi, ""
    if preset == "custom":
        a, b = _parse(t_from), _parse(t_to)
        if a is None or b is None or a >= b:
            return lo, hi, "custom range: give From and To as YYYY-MM-DD HH:MM (UTC), From before To; " \
                           "showing everything"
        return a, b, ""
    a, b = preset_window(preset, hi)
    return a, b, ""


def draw(data: Data, preset="1h", t_from=None, t_to=None, nodes=(), gpus=(), by="auto"):
    """Figures for the four charts, the live-refresh state and a message (the cluster page's
    server-side work)."""
    if data.missing():
        return [_empty(f"No data directory at {data.target}. {EMPTY_HELP}")] * 4, None, \
            f"No data directory at {data.target} yet. {EMPTY_HELP}"
    with data.session() as d:
        return _draw(d, preset, t_from, t_to, nodes, gpus, by)


def _draw(data: Data, preset, t_from, t_to, nodes, gpus, by):
    w = window(data, preset, t_from, t_to)
    if w is None:
        return [_empty("no telemetry yet")] * 4, None, f"No GPU telemetry in {data.target} yet. {EMPTY_HELP}"
    start, end, note = w
    inv = data.inventory(start, end)
    chosen = [g for g in inv if (not nodes or g["node"] in nodes) and (not gpus or g["gpu_uuid"] in gpus)]
    if not chosen:
        return [_empty("no samples in this range")] * 4, None, note or "No samples in this range."
    if by == "auto":
        by = "gpu" if len(chosen) <= 16 else "node"
    n_series = len(chosen) if by == "gpu" else len({g["node"] for g in chosen})
    b = bucket_seconds((end - start).total_seconds(), max(60, min(600, POINT_BUDGET // n_series)))
    # whole buckets only, so live refresh can append the next ones without duplicates
    start = datetime.fromtimestamp(start.timestamp() // b * b, tz=timezone.utc)
    end = datetime.fromtimestamp(end.timestamp() // b * b, tz=timezone.utc) if preset != "custom" else end
    table = data.trends(start, end, b, uuids=gpus or (), nodes=nodes or (), by=by)
    labels = _labels(chosen, by)
    shaded = throttle_periods(table, b)
    figs = [trend_figure(table, m, labels, shaded) for m in GRAPHS]
    order = [k for k, _ in series_groups(table)]
    state = {"bucket": b, "end": end.isoformat(), "order": order, "by": by, "nodes": nodes or [],
             "gpus": gpus or [], "points": int((end - start).total_seconds() // b) + 1,  # the window slides
             "live": preset not in ("all", "custom")}
    msg = f"{len(chosen)} GPU(s) on {len({g['node'] for g in chosen})} node(s), {b}-second buckets" + \
        (f"; {note}" if note else "") + (f"; {len(shaded)} throttled period(s)" if shaded else "")
    return figs, state, msg


def extend(data: Data, state: dict):
    """extendData payloads for the buckets completed since ``state['end']`` (None if none)."""
    b = state["bucket"]
    start = datetime.fromisoformat(state["end"])
    now = datetime.now(timezone.utc)
    end = datetime.fromtimestamp(now.timestamp() // b * b, tz=timezone.utc)
    if end <= start:
        return None, state
    table = data.trends(start, end, b, uuids=state["gpus"], nodes=state["nodes"], by=state["by"])
    if not table.num_rows:
        return None, state
    index = {k: i for i, k in enumerate(state["order"])}
    payloads = []
    for metric in GRAPHS:
        col, _, _, scale = METRICS[metric]
        xs, ys, cds, idx = [], [], [], []
        for key, sl in series_groups(table):
            if key in index:
                idx.append(index[key])
                xs.append([t.replace(tzinfo=None).isoformat() for t in table["bucket"][sl].to_pylist()])
                ys.append(_scaled(table[f"{col}_mean"][sl], scale))
                # the hover's min/max travel with their means, so maxPoints trims all three alike
                cds.append([list(p) for p in zip(_scaled(table[f"{col}_min"][sl], scale),
                                                 _scaled(table[f"{col}_max"][sl], scale))])
        payloads.append(({"x": xs, "y": ys, "customdata": cds}, idx, state["points"]) if idx else no_update)
    return payloads, {**state, "end": end.isoformat()}


def _scaled(values, scale: float) -> list:
    return [round(v * scale, 2) if v is not None else None for v in values.to_pylist()]


def _labels(chosen: list[dict], by: str) -> dict:
    if by == "node":
        return {g["node"]: g["node"] for g in chosen}
    return {g["gpu_uuid"]: gpu_label(g["gpu_uuid"], g["node"], g["gpu_index"]) for g in chosen}


def _empty(text: str):
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(height=140, template="plotly_white", xaxis={"visible": False},
                      yaxis={"visible": False}, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return fig


def register(app, data: Data) -> None:
    @app.callback(Output("c-nodes", "options"), Output("c-gpus", "options"), Input("c-range", "value"))
    def _options(_preset):
        if data.missing():
            return [], []
        inv = data.inventory()
        nodes = sorted({g["node"] for g in inv})
        return nodes, [{"label": f"{gpu_label(g['gpu_uuid'], g['node'], g['gpu_index'])} "
                                 f"({g['gpu_name']})", "value": g["gpu_uuid"]} for g in inv]

    @app.callback(*[Output(f"c-{g}", "figure") for g in GRAPHS], Output("c-state", "data"),
                  Output("c-msg", "children"),
                  Input("c-range", "value"), Input("c-from", "value"), Input("c-to", "value"),
                  Input("c-nodes", "value"), Input("c-gpus", "value"), Input("c-by", "value"))
    def _draw(preset, t_from, t_to, nodes, gpus, by):
        figs, state, msg = draw(data, preset, t_from, t_to, nodes or [], gpus or [], by)
        return *figs, state, msg

    @app.callback(*[Output(f"c-{g}", "extendData") for g in GRAPHS],
                  Output("c-state", "data", allow_duplicate=True),
                  Input("c-tick", "n_intervals"), State("c-live", "value"), State("c-state", "data"),
                  prevent_initial_call=True)
    def _live(_n, live, state):
        if not live or not state or not state.get("live"):
            return *[no_update] * 4, no_update
        payloads, state = extend(data, state)
        if payloads is None:
            return *[no_update] * 4, no_update
        return *payloads, state
