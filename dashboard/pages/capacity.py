"""Capacity page: GPU-class fits, right-sizing of past jobs and a predict form (built on
``ffray.analytics.capacity``)."""

from __future__ import annotations

from dash import html

from dashboard.data import Data


def layout(data: Data) -> html.Div:
    return html.Div(html.P("Capacity planning: see `ffray analyze capacity`.", className="empty"))


def register(app, data: Data) -> None:
    return None
