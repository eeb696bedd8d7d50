"""What every dashboard response is checked for and carries: a Host-header allow-list (against DNS
rebinding), anti-framing and no-sniff headers and a Content-Security-Policy that Dash works with;
and the WSGI server it runs on (waitress, on every address).

The allow-list is ours rather than Werkzeug's ``host_is_trusted`` / Flask's ``TRUSTED_HOSTS``:
those cut the port at the first ``:``, so every bracketed IPv6 host (``[::2]:80``) matched
``[::1]``; and they answer 400, not 403. Names are parsed with ``urllib.parse.urlsplit``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from flask import Flask, Response, request

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
SERVER_THREADS = 8  # waitress worker threads: a few browsers, each with a 5 s refresh and page loads


def host_name(header: str | None) -> str | None:
    """The lower-case name of a Host header (``name``, ``name:port``, ``[v6]:port``), brackets and
    port removed; None when it is not one."""
    if not header or any(c in header for c in "/?#@\\ \t"):
        return None
    try:
        parts = urlsplit(f"//{header}")
        _ = parts.port  # a bad port raises
    except ValueError:
        return None
    return parts.hostname or None


def normalise(name: str) -> str | None:
    """A host name or address as ``host_name`` gives it (``::1`` and ``[::1]`` are one); None when
    it is not one (a port, scheme or path in it)."""
    name = name.strip()
    try:
        if ipaddress.ip_address(name).version == 6:
            name = f"[{name}]"
    except ValueError:
        pass
    got = host_name(name)
    return got if got and got == name.lower().strip("[]") else None


def allowed_hosts(bind: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """Loopback names, the bound address and each extra name (``--allow-host``), normalised."""
    return frozenset({*LOOPBACK_NAMES, *filter(None, map(normalise, (bind, *extra)))})


def content_security_policy(script_hashes: Iterable[str]) -> str:
    """Scripts only from the app and the inline ones Dash renders (by hash, ``Dash.csp_hashes``).
    Styles allow 'unsafe-inline': plotly.js and Dash's components write <style> elements and style
    attributes at run time (no script can run from a style)."""
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'", *script_hashes],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{k} {' '.join(v)}" for k, v in directives.items())


def security_headers(csp: str) -> dict[str, str]:
    return {"Content-Security-Policy": csp, "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


def guard(server: Flask, hosts: frozenset[str], headers: dict[str, str]) -> None:
    """Refuse (403) a request whose Host is not in ``hosts`` before anything else of ours runs
    (register this before auth), and add ``headers`` to every response, refusals included."""

    @server.before_request
    def _check_host():
        if host_name(request.headers.get("Host")) not in hosts:
            return Response("host not allowed (see ffray dashboard --allow-host)\n", 403,
                            {"Content-Type": "text/plain; charset=utf-8"})
        return None

    @server.after_request
    def _headers(resp: Response) -> Response:
        for k, v in headers.items():
            resp.headers.setdefault(k, v)
        return resp

    # Dash registers its own before_request (server setup) when it is created: ours goes first.
    funcs = server.before_request_funcs.setdefault(None, [])
    funcs.insert(0, funcs.pop(funcs.index(_check_host)))


def serve(app, host: str, port: int) -> None:
    """Run the WSGI app on waitress until the process is stopped."""
    import waitress

    waitress.serve(app, host=host, port=port, threads=SERVER_THREADS)
