"""Alerts page: alert episodes (fired, state firing/resolved/open, duration, node, GPU, rule,
value, threshold), newest first; the range is in the URL (``/alerts?range=all``)."""

from __future__ import annotations

from datetime import datetime, timezone

from dash import Input, Output, dash_table, dcc, html

from dashboard.data import Data, preset_window
from dashboard.trends import duration_text
from dashboard.urlstate import parse_range

RANGES = [("last 24 h", "24h"), ("last 7 days", "7d"), ("everything", "all")]
NO_ALERTS = "No alerts recorded. Rules (temperature, memory, throttling, ...) fire while telemetry " \
            "records; add your own with `ffray telemetry record --alert NAME:FIELD>VALUE[@S]`."
STATES = {"firing": "firing now", "resolved": "resolved",
          "open": "no resolve recorded (telemetry stopped while it fired, or an older file)"}


def layout(data: Data, search: str | None = None) -> html.Div:
    preset = parse_range(search, [b for _, b in RANGES], "7d")
    return html.Div([
        dcc.Location(id="a-url", refresh=False),
        html.Div([html.Label("Range"), dcc.Dropdown(id="a-range", value=preset, clearable=False,
                                                   options=[{"label": a, "value": b} for a, b in RANGES])],
                 className="ctl"),
        html.Div(id="a-body")])


def alert_rows(data: Data, preset: str, now: datetime | None = None) -> list[dict] | str:
    if data.missing():
        return f"No data directory at {data.target} yet. {NO_ALERTS}"
    now = now or datetime.now(timezone.utc)
    with data.session() as d:
        start = None
        if preset != "all":
            ext = d.extent()
            if ext is not None:
                start, _ = preset_window(preset, ext[1])
        eps = d.episodes(now, start=start)
    if not eps:
        return NO_ALERTS
    return [{"fired (UTC)": e.fired.strftime("%Y-%m-%d %H:%M:%S"), "state": e.state,
             "duration": duration_text(e.duration_s) + ("+" if e.state == "open" else ""),
             "resolved (UTC)": e.end.strftime("%Y-%m-%d %H:%M:%S") if e.state == "resolved" else "",
             "node": e.node,
             "gpu": "" if e.gpu_index is None else f"GPU{e.gpu_index} {(e.gpu_uuid or '')[:12]}",
             "rule": e.rule, "value": round(e.value, 2) if e.value is not None else None,
             "threshold": e.threshold, "message": e.message} for e in eps]


def register(app, data: Data) -> None:
    @app.callback(Output("a-url", "search"), Input("a-range", "value"), prevent_initial_call=True)
    def _url(preset):
        return "" if preset == "7d" else f"?range={preset}"

    @app.callback(Output("a-body", "children"), Input("a-range", "value"))
    def _body(preset):
        rows = alert_rows(data, preset)
        if isinstance(rows, str):
            return html.P(rows, className="empty")
        counts = {s: sum(r["state"] == s for r in rows) for s in STATES}
        summary = ", ".join(f"{n} {STATES[s]}" for s, n in counts.items() if n)
        return [html.H3(f"{len(rows)} alert(s): {summary}", id="a-summary"), dash_table.DataTable(
            id="a-table", data=rows, page_size=50, sort_action="native", filter_action="native",
            columns=[{"id": c, "name": c} for c in rows[0]],
            style_data_conditional=[
                {"if": {"filter_query": '{state} = "firing"'}, "backgroundColor": "#fde8e8"},
                {"if": {"filter_query": '{state} = "resolved"'}, "color": "#555"}],
            style_cell={"fontFamily": "sans-serif", "fontSize": 13, "padding": "4px", "textAlign": "left"})]
