"""The Dash app: one layout with a navigation bar and a page area routed on the URL path.

Pages: ``/`` cluster trends, ``/jobs`` job list, ``/job/<id>`` one job, ``/alerts``,
``/capacity``. ``/report/<id>/<file>`` serves a job's report files (known names only).
Callbacks are bound to this app instance (no module-level registry), so several apps over
different data dirs can live in one process (the tests do that).
"""

from __future__ import annotations

import base64
import hmac
import logging

import dash
from dash import Input, Output, dcc, html, set_props
from flask import Response, abort, request, send_file

from dashboard.data import REPORT_FILES, Data
from dashboard.pages import alerts, capacity, cluster, jobs
from dashboard.security import allowed_hosts, content_security_policy, guard, security_headers

log = logging.getLogger("ffray.dashboard")
NAV = [("/", "Cluster"), ("/jobs", "Jobs"), ("/alerts", "Alerts"), ("/capacity", "Capacity")]


def page_for(data: Data, path: str | None, search: str | None = None):
    """The page component for a URL path and query string (the cluster and alerts pages take
    their controls from it); unknown paths get a short message, not an error."""
    path = (path or "/").rstrip("/") or "/"
    if path == "/":
        return cluster.layout(data, search)
    if path == "/jobs":
        return jobs.jobs_layout(data)
    if path.startswith("/job/"):
        return jobs.job_layout(data, path[len("/job/"):])
    if path == "/alerts":
        return alerts.layout(data, search)
    if path == "/capacity":
        return capacity.layout(data)
    return html.P(f"No page at {path}.", className="empty")


def create_app(data: Data, auth: tuple[str, str] | None = None,
               hosts: frozenset[str] | None = None) -> dash.Dash:
    """The app over ``data``; requests must name one of ``hosts`` (default: loopback names) in
    their Host header, and with ``auth`` must carry those basic-auth credentials."""
    def on_error(err: Exception):  # one line in the page; the trace goes to the server log only
        log.exception("dashboard callback failed")
        set_props("page-error", {"children": f"Could not load this view: {str(err).splitlines()[0][:300]}",
                                 "className": "error"})

    app = dash.Dash(__name__, title="ffray", update_title=None, suppress_callback_exceptions=True,
                    serve_locally=True, on_error=on_error)
    app.layout = html.Div([
        dcc.Location(id="url"),
        html.Div([html.A("ffray", href="/", className="brand"),
                  *[html.A(label, href=href) for href, label in NAV],
                  html.Span(data.target, style={"color": "#9ca3af", "marginLeft": "auto", "fontSize": 12})],
                 className="nav"),
        html.Div([html.Div(id="page-error"), html.Div(id="page")], className="page"),
    ])

    # the query string is an input too: back/forward between views of a page re-renders it
    @app.callback(Output("page", "children"), Output("page-error", "children"), Input("url", "pathname"),
                  Input("url", "search"))
    def _route(path, search):
        return page_for(data, path, search), None

    cluster.register(app, data)
    jobs.register(app, data)
    alerts.register(app, data)
    capacity.register(app, data)

    @app.server.route("/report/<job_id>/<name>")
    def _report(job_id: str, name: str):
        p = data.report_file(job_id, name)
        if p is None:
            abort(404)
        return send_file(p, mimetype=REPORT_FILES[name])

    # after every callback is registered: csp_hashes covers the inline scripts Dash renders
    csp = content_security_policy(app.csp_hashes())
    guard(app.server, allowed_hosts("127.0.0.1") if hosts is None else hosts, security_headers(csp))
    if auth is not None:
        _basic_auth(app.server, *auth)
    return app


def _basic_auth(server, user: str, password: str) -> None:
    """HTTP basic auth on every route (pages, callbacks, assets, reports)."""
    expected = base64.b64encode(f"{user}:{password}".encode()).decode()

    @server.before_request
    def _check():
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic ") and hmac.compare_digest(header[6:].strip(), expected):
            return None
        return Response("authentication required\n", 401, {"WWW-Authenticate": 'Basic realm="ffray"'})
