"""The cluster and alerts pages' controls in the URL's query string, so a view can be shared and
survives a reload: ``/?range=6h&nodes=n0,n1&by=node&metric=pcie_tx``, and the charts' zoom
(``zoom=2026-11-18 11:07,2026-11-18 11:08``). Pure: parse and format
only; unknown or malformed values fall back to the defaults (a URL never breaks a page)."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from urllib.parse import parse_qs, urlencode

RANGES = ("15m", "1h", "6h", "24h", "7d", "all", "custom")
LINES = ("auto", "gpu", "node")
TEXT_MAX = 40  # from/to are short date strings; node and GPU names are listed, not free text


@dataclass(frozen=True)
class ClusterView:
    range: str = "1h"
    t_from: str | None = None  # custom range, as typed (UTC)
    t_to: str | None = None
    nodes: tuple[str, ...] = ()
    gpus: tuple[str, ...] = ()
    by: str = "auto"
    metric: str = "sm_clock"
    zoom: tuple[str, ...] = ()  # (x0, x1): the charts' zoomed time range (UTC), () = the whole window


_KEYS = {"range": "range", "t_from": "from", "t_to": "to", "nodes": "nodes", "gpus": "gpus", "by": "by",
         "metric": "metric", "zoom": "zoom"}
_TIME = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d(\.\d{1,6})?)?$")


def parse_view(search: str | None, metrics=()) -> ClusterView:
    """The view a query string names (``metrics``: the metric keys the picker offers)."""
    q = {k: v[-1] for k, v in parse_qs((search or "").lstrip("?"), keep_blank_values=False).items()}
    v = ClusterView()
    got = {}
    if q.get("range") in RANGES:
        got["range"] = q["range"]
    for f in ("t_from", "t_to"):
        text = q.get(_KEYS[f])
        if text and len(text) <= TEXT_MAX:
            got[f] = text
    for f in ("nodes", "gpus"):
        if q.get(f):
            got[f] = tuple(x for x in q[f].split(",") if x and len(x) <= 200)[:200]
    if q.get("by") in LINES:
        got["by"] = q["by"]
    if q.get("metric") in metrics:
        got["metric"] = q["metric"]
    zoom = tuple((q.get("zoom") or "").split(","))
    if len(zoom) == 2 and all(_TIME.match(t) for t in zoom) and zoom[0] < zoom[1]:
        got["zoom"] = zoom
    return replace(v, **got)


def zoom_of(relayout: dict | None, previous: tuple[str, ...]) -> tuple[str, ...]:
    """The zoom a plotly ``relayoutData`` event leaves: a new x range, () after a reset
    (autorange), else the previous one (resizes, y-only changes)."""
    r = relayout or {}
    if "xaxis.range[0]" in r and "xaxis.range[1]" in r:
        a, b = (str(r[f"xaxis.range[{i}]"])[:26] for i in (0, 1))
    elif isinstance(r.get("xaxis.range"), list) and len(r["xaxis.range"]) == 2:
        a, b = (str(x)[:26] for x in r["xaxis.range"])
    elif r.get("xaxis.autorange"):
        return ()
    else:
        return previous
    return (a, b) if _TIME.match(a) and _TIME.match(b) and a < b else previous


def format_view(view: ClusterView) -> str:
    """The query string (with its ``?``; empty for the default view) naming ``view``."""
    default = ClusterView()
    q = {}
    for f in fields(ClusterView):
        val = getattr(view, f.name)
        if val == getattr(default, f.name) or val in (None, "", ()):
            continue
        q[_KEYS[f.name]] = ",".join(val) if isinstance(val, tuple) else val
    return "?" + urlencode(q) if q else ""


def parse_range(search: str | None, allowed, default: str) -> str:
    """The ``range`` a query string names, if it is one of ``allowed`` (the alerts page)."""
    got = parse_qs((search or "").lstrip("?")).get("range", [None])[-1]
    return got if got in allowed else default
