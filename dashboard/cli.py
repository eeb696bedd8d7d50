"""``ffray dashboard``: serve the Dash app over a data dir (127.0.0.1 unless told otherwise; any
other address needs ``--auth user:password`` or $FFRAY_DASHBOARD_AUTH, and turns on HTTP basic
auth). Requests must name an allowed host (loopback names, the bound address, each
``--allow-host``); the server is waitress on every address (dashboard/security.py)."""

from __future__ import annotations

import ipaddress
import os
import socket

from ffray.errors import FFrayError

AUTH_ENV = "FFRAY_DASHBOARD_AUTH"


def add_parser(sub) -> None:
    d = sub.add_parser("dashboard", help="serve the web dashboard (GPU trends, jobs, alerts, capacity)")
    d.add_argument("--data-dir", help="data dir or filesystem URI (default $FFRAY_HOME or ~/.ffray)")
    d.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    d.add_argument("--port", type=int, default=8050, help="port (default 8050)")
    d.add_argument("--prices", metavar="FILE", help="$/GPU-hour per GPU class or model (JSON; capacity page)")
    d.add_argument("--gpu-specs", metavar="FILE", help="extra or changed GPU classes (JSON; capacity page)")
    d.add_argument("--jobs-address", metavar="URL",
                   help="the cluster's Ray Jobs API (http://HEAD:8265): the Jobs page lists the jobs "
                        "`ffray submit` sent there, with state and progress, from the moment they are queued")
    d.add_argument("--auth", metavar="USER:PASSWORD",
                   help=f"require HTTP basic auth (needed to bind a non-loopback address; or ${AUTH_ENV})")
    d.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also accept requests whose Host header names NAME (the name users or a reverse "
                        "proxy reach the dashboard by; repeatable). Default: localhost, 127.0.0.1, [::1] "
                        "and the --host address; others get 403")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_auth(text: str | None) -> tuple[str, str] | None:
    if not text:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise FFrayError("--auth must be USER:PASSWORD (both non-empty)")
    return user, password


def check_bind(host: str, port: int, auth) -> None:
    if not is_loopback(host) and auth is None:
        raise FFrayError(f"refusing to serve on {host} without authentication: add --auth USER:PASSWORD "
                         f"(or set ${AUTH_ENV}), or bind 127.0.0.1")
    if not 0 < port < 65536:
        raise FFrayError(f"--port {port} is not a valid port")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise FFrayError(f"cannot bind {host}: {e.strerror}") from None
    fam, _, _, _, addr = infos[0]
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        try:
            s.bind(addr)
        except OSError as e:
            raise FFrayError(f"cannot bind {host}:{port}: {e.strerror}") from None


def run(args) -> int:
    from dashboard.app import create_app
    from dashboard.data import Data
    from dashboard.security import allowed_hosts, normalise, serve
    from ffray.settings import data_dir, telemetry_target

    auth = parse_auth(args.auth or os.environ.get(AUTH_ENV))
    check_bind(args.host, args.port, auth)
    hosts = allowed_hosts(args.host, args.allow_host)
    bad = [n for n in args.allow_host if normalise(n) is None]
    if bad:
        raise FFrayError(f"--allow-host {bad[0]!r} is not a host name or address (no port, no scheme)")
    from ffray.analytics.gpus import load_classes

    classes = tuple(load_classes(args.gpu_specs, args.prices))  # bad files: one-line errors now
    submissions = None
    if args.jobs_address:
        from ffray.analytics.submitted import lister

        submissions = lister(args.jobs_address)  # a malformed URL: one line now
    data = Data(telemetry_target(args.data_dir), data_dir(args.data_dir), classes=classes,
                submissions=submissions)
    app = create_app(data, auth, hosts)
    print(f"ffray dashboard on http://{args.host}:{args.port}/ over {data.target}"
          + (" (basic auth on)" if auth else "") + f"; hosts allowed: {', '.join(sorted(hosts))}", flush=True)
    serve(app.server, args.host, args.port)
    return 0
