"""Cluster page: GPU panels (utilization, memory, power, temperature per GPU or per node, a GPU x
time heatmap), host panels (CPU, memory per node; CPU per worker process; the only panels on a
CPU-only cluster), and a
metric view for every other recorded metric. Range presets or a custom range, node/GPU filters,
all in the URL's query string (shareable, reload-safe); live refresh appends the buckets completed
since the last draw (``extendData``) instead of redrawing; zoom and crosshair are linked across
the charts in the browser (assets/sync.js)."""

from __future__ import annotations

from datetime import datetime, timezone

from dash import ClientsideFunction, Input, Output, State, ctx, dcc, html, no_update

from dashboard.clusterview import CHARTS, draw, draw_metric, draw_workers, extend
from dashboard.data import Data
from dashboard.figures import gpu_label
from dashboard.trends import zoomed
from dashboard.urlstate import ClusterView, format_view, parse_view, zoom_of
from ffray.analytics.metrics import METRICS, PICKABLE

PRESETS = [("last 15 min", "15m"), ("last hour", "1h"), ("last 6 h", "6h"), ("last 24 h", "24h"),
           ("last 7 days", "7d"), ("everything", "all"), ("custom (UTC)", "custom")]
CONTROLS = [("c-range", "value"), ("c-from", "value"), ("c-to", "value"), ("c-nodes", "value"),
            ("c-gpus", "value"), ("c-by", "value"), ("c-metric", "value")]
HIDDEN = {"display": "none"}
WINDOW_IDS = ("c-range", "c-from", "c-to")


def _graph(key: str):
    return dcc.Graph(id=f"c-{key}", config={"displaylogo": False}, className="linked")


def layout(data: Data, search: str | None = None) -> html.Div:
    v = parse_view(search, PICKABLE)
    return html.Div([
        dcc.Location(id="c-url", refresh=False),
        html.Div([
            html.Div([html.Label("Range"), dcc.Dropdown(id="c-range", options=[
                {"label": a, "value": b} for a, b in PRESETS], value=v.range, clearable=False)],
                className="ctl"),
            html.Div([html.Label("From / to (UTC)"),
                      dcc.Input(id="c-from", type="text", placeholder="from YYYY-MM-DD HH:MM", debounce=True,
                                value=v.t_from),
                      dcc.Input(id="c-to", type="text", placeholder="to YYYY-MM-DD HH:MM", debounce=True,
                                value=v.t_to)],
                     className="ctl"),
            html.Div([html.Label("Nodes"), dcc.Dropdown(id="c-nodes", multi=True, placeholder="all",
                                                        options=list(v.nodes), value=list(v.nodes))],
                     className="ctl wide"),
            html.Div([html.Label("GPUs"), dcc.Dropdown(id="c-gpus", multi=True, placeholder="all",
                                                       options=list(v.gpus), value=list(v.gpus))],
                     className="ctl wide"),
            html.Div([html.Label("Lines"), dcc.RadioItems(id="c-by", options=[
                {"label": "auto", "value": "auto"}, {"label": "per GPU", "value": "gpu"},
                {"label": "per node", "value": "node"}], value=v.by, inline=True)], className="ctl"),
            html.Div([dcc.Checklist(id="c-live", options=[{"label": " live", "value": "live"}],
                                    value=["live"])], className="ctl"),
        ], className="controls"),
        html.Div(id="c-msg", className="msg"),
        html.Div([html.H4("GPUs"), *[_graph(k) for k in ("util", "mem", "power", "temp")], _graph("heat")],
                 id="c-gpu-sec"),
        html.Div([html.H4("Hosts"), _graph("cpu"), _graph("host_mem"), _graph("worker_cpu")],
                 id="c-host-sec"),
        html.Div([html.H4("Metric view"),
                  html.Div([html.Label("Metric"), dcc.Dropdown(
                      id="c-metric", clearable=False, value=v.metric,
                      options=[{"label": f"{METRICS[k].title} ({METRICS[k].unit or 'value'})", "value": k}
                               for k in PICKABLE])], className="ctl wide", style={"maxWidth": 480}),
                  _graph("extra")], id="c-extra-sec"),
        dcc.Interval(id="c-tick", interval=5000),
        dcc.Store(id="c-state"), dcc.Store(id="c-window"), dcc.Store(id="c-link"), dcc.Store(id="c-worder"),
        dcc.Store(id="c-zoom", data=list(v.zoom)),
    ])


def view_of(preset, t_from, t_to, nodes, gpus, by, metric, zoom=()) -> ClusterView:
    return ClusterView(preset or "1h", t_from or None, t_to or None, tuple(nodes or ()), tuple(gpus or ()),
                       by or "auto", metric or ClusterView.metric, tuple(zoom or ()))


def register(app, data: Data) -> None:
    @app.callback(Output("c-nodes", "options"), Output("c-gpus", "options"), Input("c-range", "value"))
    def _options(_preset):
        if data.missing():
            return [], []
        with data.session() as d:
            inv, hosts = d.inventory(), d.hosts()
        nodes = sorted({g["node"] for g in inv} | {h["node"] for h in hosts})
        return nodes, [{"label": f"{gpu_label(g['gpu_uuid'], g['node'], g['gpu_index'])} "
                                 f"({g['gpu_name']})", "value": g["gpu_uuid"]} for g in inv]

    # the zoom comes from the GPU utilization chart, or the host CPU chart on a CPU-only cluster
    # (every chart zooms together: assets/sync.js)
    @app.callback(Output("c-url", "search"), Output("c-zoom", "data"), *[Input(i, p) for i, p in CONTROLS],
                  Input("c-util", "relayoutData"), Input("c-cpu", "relayoutData"), State("c-zoom", "data"),
                  prevent_initial_call=True)
    def _url(*values):
        *controls, gpu_zoom, host_zoom, zoom = values
        event = {"c-cpu": host_zoom, "c-util": gpu_zoom}.get(ctx.triggered_id)
        # a new time window starts unzoomed; a filter or metric change keeps the zoom
        zoom = () if ctx.triggered_id in WINDOW_IDS else zoom_of(event, tuple(zoom or ()))
        return format_view(view_of(*controls, zoom)), list(zoom)

    @app.callback(*[Output(f"c-{k}", "figure") for k in (*CHARTS, "heat")],
                  Output("c-gpu-sec", "style"), Output("c-host-sec", "style"), Output("c-extra-sec", "style"),
                  Output("c-state", "data"), Output("c-window", "data"), Output("c-msg", "children"),
                  *[Input(i, p) for i, p in CONTROLS[:-1]], State("c-zoom", "data"))
    def _draw(preset, t_from, t_to, nodes, gpus, by, zoom):
        d = draw(data, view_of(preset, t_from, t_to, nodes, gpus, by, None), datetime.now(timezone.utc))
        if ctx.triggered_id in WINDOW_IDS:
            zoom = ()  # as _url decides (its c-zoom may not be written yet)
        rev = f"{preset}|{t_from}|{t_to}"  # plotly keeps a user's zoom across redraws of one window only
        figs = [zoomed(d.figures[k], zoom, rev) if k in d.figures else no_update for k in (*CHARTS, "heat")]
        styles = [None if d.gpu else HIDDEN, None if d.host else HIDDEN, None if d.gpu or d.host else HIDDEN]
        return *figs, *styles, d.state, d.window, d.msg

    @app.callback(Output("c-extra", "figure"), Input("c-metric", "value"), Input("c-window", "data"),
                  State("c-zoom", "data"))
    def _metric(key, win, zoom):
        return zoomed(draw_metric(data, win, key), zoom, win and f"{win['start']}|{win['end']}")

    # CPU per worker: its own callback over the drawn window (its labels read the spans), so the
    # panels' callback does not wait for it
    @app.callback(Output("c-worker_cpu", "figure"), Output("c-worder", "data"), Input("c-window", "data"),
                  State("c-zoom", "data"))
    def _workers(win, zoom):
        fig, order = draw_workers(data, win)
        return zoomed(fig, zoom, win and f"{win['start']}|{win['end']}"), order

    live_charts = (*CHARTS, "worker_cpu")

    @app.callback(*[Output(f"c-{k}", "extendData") for k in live_charts],
                  Output("c-state", "data", allow_duplicate=True),
                  Input("c-tick", "n_intervals"), State("c-live", "value"), State("c-state", "data"),
                  State("c-worder", "data"), prevent_initial_call=True)
    def _live(_n, live, state, worder):
        nothing = [no_update] * (len(live_charts) + 1)
        if not live or not state or not state.get("live"):
            return nothing
        payloads, state = extend(data, state, datetime.now(timezone.utc), worder or ())
        if payloads is None:
            return nothing
        return *[payloads.get(k, no_update) for k in live_charts], state

    # linked zoom and crosshair across the charts (assets/sync.js), re-attached on every redraw
    app.clientside_callback(ClientsideFunction("ffray", "link"), Output("c-link", "data"),
                            *[Input(f"c-{k}", "figure") for k in (*CHARTS, "heat", "extra", "worker_cpu")])
