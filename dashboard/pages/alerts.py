"""Alerts page: alert events (time, node, GPU, rule, value, threshold), newest first."""

from __future__ import annotations

from dash import Input, Output, dash_table, dcc, html

from dashboard.data import Data, preset_window

RANGES = [("last 24 h", "24h"), ("last 7 days", "7d"), ("everything", "all")]
NO_ALERTS = "No alerts recorded. Rules (temperature, memory, throttling, ...) fire while telemetry " \
            "records; add your own with `ffray telemetry record --alert NAME:FIELD>VALUE[@S]`."


def layout(data: Data) -> html.Div:
    return html.Div([
        html.Div([html.Label("Range"), dcc.Dropdown(id="a-range", value="7d", clearable=False,
                                                   options=[{"label": a, "value": b} for a, b in RANGES])],
                 className="ctl"),
        html.Div(id="a-body")])


def alert_rows(data: Data, preset: str) -> list[dict] | str:
    if data.missing():
        return f"No data directory at {data.target} yet. {NO_ALERTS}"
    start = None
    if preset != "all":
        ext = data.extent()
        if ext is not None:
            start, _ = preset_window(preset, ext[1])
    rows = data.alerts(start=start)
    if not rows:
        return NO_ALERTS
    return [{"time": r["ts"].strftime("%Y-%m-%d %H:%M:%S"), "node": r["node"],
             "gpu": "" if r["gpu_index"] is None else f"GPU{r['gpu_index']} {(r['gpu_uuid'] or '')[:12]}",
             "rule": r["rule"], "value": round(r["value"], 2) if r["value"] is not None else None,
             "threshold": r["threshold"], "message": r["message"]} for r in rows]


def register(app, data: Data) -> None:
    @app.callback(Output("a-body", "children"), Input("a-range", "value"))
    def _body(preset):
        rows = alert_rows(data, preset)
        if isinstance(rows, str):
            return html.P(rows, className="empty")
        return [html.H3(f"{len(rows)} alert(s)"), dash_table.DataTable(
            id="a-table", data=rows, page_size=50, sort_action="native", filter_action="native",
            columns=[{"id": c, "name": c} for c in ("time", "node", "gpu", "rule", "value", "threshold",
                                                   "message")],
            style_cell={"fontFamily": "sans-serif", "fontSize": 13, "padding": "4px", "textAlign": "left"})]
