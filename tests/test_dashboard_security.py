"""The dashboard's Host allow-list, security headers and server, over real HTTP: the app on
waitress in a thread, and `ffray dashboard` itself in a subprocess."""

from __future__ import annotations

import base64
import http.client
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import waitress

from dashboard.app import create_app
from dashboard.data import Data
from dashboard.security import allowed_hosts, host_name, normalise
from tests import store_data as sd

HEADERS = ("content-security-policy", "x-frame-options", "x-content-type-options")


def test_host_names_are_parsed_and_ipv6_is_not_confused():
    assert host_name("LocalHost:8050") == "localhost" and host_name("[::1]:8050") == "::1"
    assert host_name("[::2]:80") == "::2"  # Werkzeug's host_is_trusted matched this against [::1]
    for bad in ("", None, "a b", "x:abc", "user@evil.example", "evil.example/x", "::1"):
        assert host_name(bad) is None, bad
    assert normalise("::1") == normalise("[::1]") == "::1" and normalise("Dash.Example") == "dash.example"
    assert normalise("host:8080") is None and normalise("http://host") is None
    hosts = allowed_hosts("10.1.2.3", ["Dash.Example"])
    assert hosts == {"localhost", "127.0.0.1", "::1", "10.1.2.3", "dash.example"}


def request(port: int, path: str, host: str, auth: str | None = None, method: str = "GET", body=None):
    """One real HTTP request to 127.0.0.1:port with the Host header forged (as a page on a
    rebound name sends it; PORT in ``host`` is replaced by the port)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Host": host.replace("PORT", str(port))}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


class OnWaitress:
    """The app on waitress (as `ffray dashboard` serves it) on a free loopback port."""

    def __init__(self, app):
        self.server = waitress.create_server(app.server, host="127.0.0.1", port=0, threads=2)
        self.port = self.server.effective_port
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def request(self, path: str, host: str, auth: str | None = None, method: str = "GET", body=None):
        return request(self.port, path, host, auth, method, body)

    def close(self):
        self.server.close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return sd.build(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def served(root):
    hosts = allowed_hosts("127.0.0.1", ["dash.example"])
    s = OnWaitress(create_app(Data(str(root), root), ("ops", "pw"), hosts))
    yield s
    s.close()


def test_a_forged_host_is_refused_before_auth_and_any_route(served):
    for host in ("evil.example", "evil.example:PORT", "[::2]:PORT", "127.0.0.1.evil.example:PORT",
                 "dash.example.evil:PORT"):
        for path, method, body in (("/", "GET", None), ("/_dash-layout", "GET", None),
                                   ("/report/job-a/x", "GET", None),
                                   ("/_dash-update-component", "POST", b"{}")):
            code, headers, text = served.request(path, host, "ops:pw", method, body)
            assert code == 403 and b"host not allowed" in text, (host, path)
            assert all(h in headers for h in HEADERS)
    # refused before auth: no credentials, still 403 (not 401)
    assert served.request("/", "evil.example")[0] == 403


def test_allowed_hosts_pass_to_auth_and_every_response_has_the_headers(served):
    for host in ("127.0.0.1:PORT", "localhost:PORT", "LOCALHOST", "[::1]:PORT", "dash.example:PORT"):
        code, headers, _ = served.request("/", host, "ops:pw")
        assert code == 200, host
        assert headers["server"] == "waitress"
    code, headers, _ = served.request("/", "localhost:PORT")
    assert code == 401 and all(h in headers for h in HEADERS)
    for path in ("/_dash-layout", "/assets/style.css", "/report/job-a/summary.md", "/nothing/here"):
        code, headers, _ = served.request(path, "localhost:PORT", "ops:pw")
        assert code in (200, 404), path
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "script-src 'self' 'sha256-" in headers["content-security-policy"]


def test_default_hosts_are_loopback_names_only(root):
    s = OnWaitress(create_app(Data(str(root), root)))
    try:
        assert s.request("/", "localhost:PORT")[0] == 200
        assert s.request("/", "dash.example:PORT")[0] == 403
    finally:
        s.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serves_on_waitress_beyond_loopback_with_allow_host(tmp_path):
    env = {**os.environ, "FFRAY_HOME": str(tmp_path)}
    env.pop("FFRAY_DASHBOARD_AUTH", None)
    cmd = [sys.executable, "-m", "ffray.cli", "dashboard", "--auth", "ops:pw"]
    r = subprocess.run(cmd + ["--allow-host", "dash.example:8050"], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode != 0 and "--allow-host 'dash.example:8050'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    port = _free_port()
    p = subprocess.Popen(cmd + ["--host", "0.0.0.0", "--port", str(port), "--allow-host", "Dash.Example"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                code, headers, _ = request(port, "/", "dash.example:PORT", "ops:pw")
                break
            except (ConnectionError, OSError):
                assert time.time() < deadline and p.poll() is None, "dashboard did not start"
                time.sleep(0.3)
        assert code == 200 and headers["server"] == "waitress"  # not Werkzeug's development server
        assert request(port, "/", "0.0.0.0:PORT", "ops:pw")[0] == 200  # the bound address
        assert request(port, "/", "attacker.example:PORT", "ops:pw")[0] == 403
    finally:
        p.terminate()
        out = p.communicate(timeout=20)[0]
    assert "hosts allowed: 0.0.0.0, 127.0.0.1, ::1, dash.example, localhost" in out
