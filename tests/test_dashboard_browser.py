"""The dashboard served over real HTTP and driven in Debian's Chromium by Playwright (no browser
download: scripts/test.sh installs the `chromium` package). Screenshots go to
``$FFRAY_TEST_ARTIFACTS`` (default ``artifacts/screenshots``)."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from dashboard.app import create_app
from dashboard.data import Data
from tests import store_data as sd

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]
SHOTS = Path(os.environ.get("FFRAY_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "artifacts"
                            / "screenshots"))


class Served:
    def __init__(self, data: Data, auth=None):
        self.server = make_server("127.0.0.1", 0, create_app(data, auth).server, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), \
        "Debian's chromium is needed for the browser tests: apt-get install chromium (scripts/test.sh does)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = sd.build(tmp_path_factory.mktemp("store"))
    (root / "jobs" / "job-a" / "report").mkdir(parents=True)
    (root / "jobs" / "job-a" / "report" / "summary.md").write_text("# job-a\n")
    (root / "jobs" / "job-a" / "secret.json").write_text("top secret")
    s = Served(Data(str(root), root))
    yield s
    s.close()


CSP_WATCH = """window.__csp = []; document.addEventListener('securitypolicyviolation',
    e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"""


@pytest.fixture
def page(browser):
    """A page that fails its test on a script error or any Content-Security-Policy violation
    (the dashboard sends a CSP on every response: dashboard/security.py)."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    ctx.add_init_script(CSP_WATCH)
    pg = ctx.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    yield pg
    errors.extend(pg.evaluate("window.__csp || []"))
    ctx.close()
    assert not errors, errors


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_cluster_page_draws_a_trace_per_gpu_on_each_chart(served, page):
    page.goto(served.url + "/")
    page.locator("#c-util g.trace.scatter").nth(4).wait_for(timeout=20000)
    for g in ("util", "mem", "power", "temp"):  # a line per GPU, and the alert markers
        assert page.locator(f"#c-{g} g.trace.scatter").count() == 5
    assert "4 GPU(s) on 2 node(s)" in page.locator("#c-msg").inner_text()
    assert page.locator("#c-util .shapelayer path").count() >= 1  # throttled period shaded
    shot(page, "cluster")
    # filter to one node: the charts redraw with its two GPUs
    page.locator("#c-nodes").click()
    page.get_by_role("option", name="n1").click()
    page.wait_for_function("() => document.querySelectorAll('#c-util g.trace.scatter').length == 3",
                           timeout=20000)
    assert page.locator("#c-mem g.trace.scatter").count() == 3  # its alert is on n1


def test_pages_render_and_call_back_under_the_csp(served, page):
    """Every page draws its content (so its callbacks ran) under the strict script policy: no
    'unsafe-inline' or 'unsafe-eval', Dash's one inline script allowed by its hash; the page
    fixture fails the test on any violation."""
    resp = page.goto(served.url + "/jobs")
    csp = resp.headers["content-security-policy"]
    script_src = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
    assert "unsafe" not in script_src and "'sha256-" in script_src and "frame-ancestors 'none'" in csp
    assert resp.headers["x-frame-options"] == "DENY" and resp.headers["x-content-type-options"] == "nosniff"
    for path, sel in [("/jobs", "#j-table"), ("/", "#c-util g.trace.scatter"), ("/alerts", "#a-table"),
                      ("/job/job-a", "#job-fig .barlayer .point"), ("/capacity", "#cap-msg")]:
        page.goto(served.url + path)
        page.locator(sel).first.wait_for(timeout=20000)
    assert page.evaluate("window.__csp") == []


def test_job_page_timeline_bars_hover_and_selection(served, page):
    page.goto(served.url + "/job/job-a")
    bars = page.locator("#job-fig .barlayer .point")
    bars.nth(4).wait_for(timeout=20000)
    assert bars.count() == 5  # 4 finished attempts + the failed one
    assert page.locator("#job-fig g.trace.scatter").count() == 4  # util + memory of its 2 GPUs
    assert page.locator("#job-chunks tbody tr").count() == 6  # header + 5 attempts
    first = page.locator("#job-chunks tbody tr").nth(1).inner_text()
    assert "20" in first  # sorted by GPU-seconds, largest first (20 s chunks)
    bars.nth(0).hover(force=True)
    page.locator("#job-fig .hoverlayer .hovertext").first.wait_for(timeout=10000)
    assert "chunk" in page.locator("#job-fig .hoverlayer").text_content()
    box = bars.nth(0).bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("() => document.querySelector('#job-sel').innerText.includes('Selected: chunk')",
                           timeout=10000)
    assert "GPU-seconds" in page.locator("#job-sel").inner_text()
    assert page.get_by_role("link", name="summary").count() == 1
    shot(page, "job")


def test_jobs_and_alerts_pages(served, page):
    page.goto(served.url + "/jobs")
    page.locator("#j-table").wait_for(timeout=20000)
    text = page.locator("#j-table").inner_text()
    assert "job-a" in text and "job-b" in text and "1920x1080" in text
    page.get_by_role("link", name="job-b").click()
    page.locator("#job-fig .barlayer .point").nth(1).wait_for(timeout=20000)
    assert page.locator("#job-fig .barlayer .point").count() == 2
    shot(page, "jobs")
    page.goto(served.url + "/alerts")
    page.locator("#a-table").wait_for(timeout=20000)
    assert "throttle" in page.locator("#a-table").inner_text()
    shot(page, "alerts")


def test_empty_data_dir_says_what_to_do(browser, tmp_path):
    s = Served(Data(str(tmp_path), tmp_path))
    ctx = browser.new_context()
    page = ctx.new_page()
    try:
        page.goto(s.url + "/")
        page.get_by_text("No GPU or host telemetry").wait_for(timeout=20000)
        assert "ffray telemetry record" in page.locator("#c-msg").inner_text()
        shot(page, "empty-cluster")
        page.goto(s.url + "/jobs")
        page.get_by_text("No jobs yet").wait_for(timeout=20000)
        assert "Traceback" not in page.content()
        page.goto(s.url + "/job/..%2F..%2Fetc%2Fpasswd")
        page.get_by_text("No job").wait_for(timeout=20000)
    finally:
        ctx.close()
        s.close()


def _fetch(url: str, auth: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _get(url: str, auth: str | None = None) -> int:
    return _fetch(url, auth)[0]


def test_report_route_serves_known_files_only(served):
    assert _fetch(served.url + "/report/job-a/summary.md") == (200, b"# job-a\n")
    assert _get(served.url + "/report/job-b/summary.md") == 404  # no report for job-b
    assert _get(served.url + "/report/job-a/job.json") == 404  # not a report file name
    for path in ("/report/job-a/..%2Fsecret.json", "/report/..%2Fjob-a%2Freport/summary.md"):
        code, body = _fetch(served.url + path)
        assert b"top secret" not in body and b"# job-a" not in body


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_non_loopback_bind_needs_auth_and_auth_is_enforced(tmp_path):
    env = {**os.environ, "FFRAY_HOME": str(tmp_path)}
    env.pop("FFRAY_DASHBOARD_AUTH", None)
    r = subprocess.run([sys.executable, "-m", "ffray.cli", "dashboard", "--host", "0.0.0.0"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode != 0 and "without authentication" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    port = _free_port()
    p = subprocess.Popen([sys.executable, "-m", "ffray.cli", "dashboard", "--host", "0.0.0.0", "--port",
                          str(port), "--auth", "ops:s3cret"], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                code = _get(url)
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        else:
            pytest.fail("dashboard did not start")
        assert code == 401
        assert _get(url + "_dash-layout") == 401
        assert _get(url, "ops:wrong") == 401
        assert _get(url, "ops:s3cret") == 200
    finally:
        p.terminate()
        p.wait(timeout=20)


def _record(root: Path, t0: float, seconds: int) -> None:
    from ffray.telemetry.sampler import Sampler
    from ffray.telemetry.store import TelemetryStore
    from tests.fake_nvml import FakeGpus

    gpus = FakeGpus(2, "live")
    store = TelemetryStore(root / "telemetry", "live", roll_seconds=3600)
    sampler = Sampler("live", gpus)
    for i in range(seconds):
        gpus.util = {0: float(i % 100), 1: 50.0}
        store.append(sampler.sample(t0 + i), t0 + i)
        gpus.advance(1.0)
    store.close()


HOVER_JS = """() => { const t = document.querySelector('#c-util .js-plotly-plot').data[0];
    return {x: t.x, y: t.y, cd: t.customdata}; }"""


def _check_hover(root: Path, trace: dict) -> int:
    """Every point's hover min/max equal the bucket's samples of GPU 0 in the Parquet, and bracket
    its mean; returns the number of points checked."""
    import duckdb

    x = [datetime.fromisoformat(v.replace(" ", "T")).replace(tzinfo=timezone.utc) for v in trace["x"]]
    b = (x[1] - x[0]).total_seconds()
    assert len(trace["cd"]) == len(x) == len(trace["y"])
    rows = duckdb.sql(f"""SELECT floor(epoch(ts) / {b}) * {b} AS b, min(util_gpu), max(util_gpu)
        FROM read_parquet('{root}/telemetry/gpu/**/*.parquet') WHERE gpu_index = 0 GROUP BY ALL""").fetchall()
    truth = {float(k): (lo, hi) for k, lo, hi in rows}
    for t, y, (lo, hi) in zip(x, trace["y"], trace["cd"]):
        assert (lo, hi) == tuple(round(v, 2) for v in truth[t.timestamp()]), t
        assert lo <= y <= hi
    return len(x)


def test_live_refresh_appends_new_points_without_redrawing(browser, tmp_path):
    """More than the window's hour is recorded, so appending slides the window: the hover's
    min/max must slide with their means (they used to stay behind)."""
    from ffray.telemetry.store import TelemetryStore

    now = time.time()
    _record(tmp_path, now - 3800, 3700)  # samples up to 100 s ago, more than the 1 h window
    # a recorder still running (its journal open): the page keeps the last bucket back, since a
    # roll may still add samples to it
    live = TelemetryStore(tmp_path / "telemetry", "recorder", roll_seconds=3600)
    live.append({"host": [{"ts": datetime.fromtimestamp(now, timezone.utc), "node": "recorder"}]}, now)
    s = Served(Data(str(tmp_path), tmp_path))
    ctx = browser.new_context()
    page = ctx.new_page()
    updates = []

    def on_response(r):
        if "_dash-update-component" in r.url:
            try:
                updates.append(r.text())
            except Exception:  # noqa: BLE001 - a response of a closed page
                pass

    page.on("response", on_response)
    try:
        page.goto(s.url + "/")
        page.locator("#c-util g.trace.scatter").nth(1).wait_for(state="attached", timeout=20000)
        js = "() => document.querySelector('#c-util .js-plotly-plot').data.map(t => t.x.length)"
        before = page.evaluate(js)
        first = page.evaluate(HOVER_JS)
        _check_hover(tmp_path, first)
        _record(tmp_path, now - 99, 80)  # 80 more seconds arrive (a roll of the real store)
        page.wait_for_function(
            f"() => document.querySelector('#c-util .js-plotly-plot').data[0].x[0] > '{first['x'][0]}'",
            timeout=30000)
        after = page.evaluate(js)
        assert len(after) == len(before) == 2
        trace = page.evaluate(HOVER_JS)
        assert trace["x"][-1] > first["x"][-1]  # new points at the end, old ones left at the front
        assert _check_hover(tmp_path, trace) == len(trace["x"]) >= len(first["x"]) - 1
        # appended, not redrawn: the new points came as extendData, and no figure was sent again
        figures = [u for u in updates if '"c-util":{"figure"' in u]  # (the metric view draws once too)
        extends = [u for u in updates if '"extendData"' in u]
        assert len(figures) == 1 and extends and all('"customdata"' in u for u in extends)
        shot(page, "live")
    finally:
        ctx.close()
        s.close()
        live.close()


@pytest.fixture(scope="module")
def capacity_served(tmp_path_factory):
    """Jobs following a known cost law on an H100 and an L4 (10 each), 3 on an A10G (no fit), and
    one long L4 job at 4x its law's time (the outlier that used to wreck the L4's fit)."""
    import numpy as np

    from tests.analytics_data import Gpu, law_job, write_store

    law = {"A": 0.004, "B": 0.006, "C": 0.002, "D": 3.0, "M0": 1.5e9, "M1": 1.2e9}
    gpus = [(Gpu("GPU-h100-0", "NVIDIA H100 80GB HBM3", "n0", 0, 80 << 30), 1.0, 10),
            (Gpu("GPU-l4-0", "NVIDIA L4", "n1", 0, 24 << 30), 0.3, 10),
            (Gpu("GPU-a10g-0", "NVIDIA A10G", "n2", 0, 24 << 30), 0.35, 3)]
    rng = np.random.default_rng(5)
    jobs = []
    for gpu, rel, n in gpus:
        for k in range(n):
            w, h = [(1280, 720), (1920, 1080), (3840, 2160)][k % 3]
            jobs.append(law_job(f"{gpu.uuid}-{k:02d}", gpu, law, rel, w, h, float(rng.choice([0.5, 1, 2])),
                                [int(x) for x in rng.integers(60, 300, 3)]))
    jobs.append(law_job("long-l4", gpus[1][0], law, 0.3, 1920, 1080, 1.0, [300] * 8, noise=4.0))
    root = tmp_path_factory.mktemp("capacity")
    write_store(root, jobs)
    data = Data(str(root), root)
    s = Served(data)
    yield s, data
    s.close()


def test_capacity_page_shows_fits_right_sizing_and_predicts(capacity_served, page):
    s, data = capacity_served
    page.goto(s.url + "/capacity")
    page.locator("#cap-fits").wait_for(timeout=30000)
    fits = page.locator("#cap-fits tbody tr")
    assert fits.count() == 3  # header + H100 + L4
    text = page.locator("#cap-fits").inner_text()
    assert "H100" in text and "L4" in text and "A10G" not in text
    assert "A10G (3 jobs)" in page.locator("#cap-nofit").inner_text()  # seen, but not fitted
    assert "24 finished jobs" in page.locator("#cap-msg").inner_text()
    assert page.locator("#cap-jobs tbody tr:has(td.dash-cell)").count() == 24  # a row per job
    outliers = page.locator("#cap-outliers").inner_text()  # listed, with why
    assert "long-l4" in outliers and "x the fit's GPU-seconds" in outliers and "left out" in outliers
    assert page.locator("#cap-poor").count() == 0
    cards = page.locator(".cards").inner_text()
    assert "projected saving" in cards and "95 %:" in cards
    page.locator("#p-res").fill("3840x2160")
    page.locator("#p-frames").fill("3000")
    page.locator("#p-go").click()
    page.locator("#p-table").wait_for(timeout=20000)
    model, *_ = data.capacity()
    want = data.predict(model, 3000, 3840, 2160, 1.0)
    shown = page.locator("#p-table").inner_text()
    for r in want:  # every class with a fit, its predicted GPU-seconds as the model gives them
        assert r["gpu_class"] in shown and f"{r['gpu_seconds']:,.0f} (" in shown
        assert r["cost_low"] > 0
    assert "$0.000 " not in shown
    shot(page, "capacity")
    page.locator("#p-res").fill("19x")
    page.locator("#p-go").click()
    page.get_by_text("WIDTHxHEIGHT").wait_for(timeout=20000)
