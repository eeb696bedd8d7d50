"""The cluster and alerts pages in Debian's Chromium (Playwright): a CPU-only cluster, the view in
the URL across a reload, the metric view, linked zoom and crosshair, alert states. Screenshots go
to ``$FFRAY_TEST_ARTIFACTS`` like the other browser tests'."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from dashboard.data import Data
from tests import host_data
from tests import store_data as sd
from tests import test_dashboard_browser as tb
from tests.test_dashboard_browser import Served, shot

browser, page = tb.browser, tb.page  # the Chromium fixtures (page fails a test on CSP violations)

SERIES = "() => ((document.querySelector('#c-util .js-plotly-plot') || {}).data || [])" \
         ".filter(t => t.uid !== 'alerts').map(t => t.name)"


POINT_XY = """() => { const gd = document.querySelector('#c-util .js-plotly-plot'), t = gd.data[0];
    const k = t.x.findIndex(v => String(v) >= '2026-11-18T11:07:15'), L = gd._fullLayout;
    const r = gd.getBoundingClientRect();
    return [r.left + L.xaxis._offset + L.xaxis.d2p(t.x[k]),
            r.top + L.yaxis._offset + L.yaxis.d2p(t.y[k])]; }"""


def _text(response) -> str:
    try:
        return response.text()
    except Exception:  # noqa: BLE001 - a response of a page already gone
        return ""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = sd.build(tmp_path_factory.mktemp("store"))
    s = Served(Data(str(root), root))
    yield s
    s.close()


@pytest.fixture(scope="module")
def cpu_served(tmp_path_factory):
    root = host_data.build_cpu(tmp_path_factory.mktemp("cpu"), sd.T0)
    s = Served(Data(str(root), root))
    yield s
    s.close()


def test_cpu_only_cluster_shows_host_panels(cpu_served, page):
    page.goto(cpu_served.url + "/")
    page.locator("#c-cpu g.trace.scatter").nth(1).wait_for(timeout=20000)
    assert page.locator("#c-host_mem g.trace.scatter").count() == 2  # a line per node
    msg = page.locator("#c-msg").inner_text()
    assert "No GPU telemetry in this range" in msg and "2 node(s)" in msg and "Record some" not in msg
    assert not page.locator("#c-gpu-sec").is_visible() and page.locator("#c-host-sec").is_visible()
    assert "time (UTC)" in page.locator("#c-cpu").inner_text()
    page.locator("#c-worker_cpu g.trace.scatter").nth(3).wait_for(timeout=20000)
    assert page.locator("#c-worker_cpu g.trace.scatter").count() == 4  # two workers on each of 2 nodes
    legend = page.locator("#c-worker_cpu").inner_text()
    assert "CPU per worker" in legend and "cpu0 · ChunkWorker · pid 1000" in legend
    shot(page, "cluster-cpu")


def test_view_is_in_the_url_and_survives_a_reload(served, page):
    routed = []  # page renders (the route callback's responses)
    page.on("response", lambda r: routed.append(r.url) if "_dash-update-component" in r.url and
            '"page":{"children"' in _text(r) else None)
    page.goto(served.url + "/?range=all&nodes=n1&metric=pcie_tx")
    page.wait_for_function(
        f"() => {{ const n = ({SERIES})(); return n.length == 2 && n[0] == 'n1 · GPU0'; }}", timeout=20000)
    page.get_by_text("PCIe transmit (MB/s").first.wait_for(timeout=20000)  # the metric view's title
    page.get_by_text("per node", exact=True).click()  # change a control: the URL follows
    page.wait_for_function("() => location.search.includes('by=node')", timeout=20000)
    q = parse_qs(urlsplit(page.url).query)
    assert q == {"range": ["all"], "nodes": ["n1"], "by": ["node"], "metric": ["pcie_tx"]}
    assert len(routed) == 1  # the URL follows the controls without rendering the page again
    page.reload()
    page.wait_for_function(f"() => {{ const n = ({SERIES})(); return n.length == 1 && n[0] == 'n1'; }}",
                           timeout=20000)
    assert page.locator("#c-by input[value=node]").is_checked()
    assert "everything" in page.locator("#c-range").inner_text()
    assert "n1" in page.locator("#c-nodes").inner_text()
    page.get_by_text("PCIe transmit (MB/s").first.wait_for(timeout=20000)


def test_metric_view_heatmap_linked_zoom_and_crosshair(served, page):
    page.goto(served.url + "/?range=all")
    page.locator("#c-util g.trace.scatter").nth(4).wait_for(timeout=20000)
    assert page.locator("#c-heat .hm, #c-heat .heatmaplayer image").count() >= 1  # GPU x time heatmap
    page.locator("#c-metric").click()
    page.get_by_role("option", name="Clock event (throttle) reasons (% of samples)").click()
    page.wait_for_function("() => { const d = document.querySelector('#c-extra .js-plotly-plot').data;"
                           " return d.length == 1 && d[0].name == 'SW thermal slowdown'; }", timeout=20000)
    assert "metric=reasons" in page.url
    shot(page, "cluster-metrics")
    # zoom on one chart: every other chart takes the same time range
    page.wait_for_function("() => document.querySelector('#c-mem .js-plotly-plot').__ffrayLinked",
                           timeout=20000)
    page.evaluate("() => Plotly.relayout(document.querySelector('#c-util .js-plotly-plot'),"
                  " {'xaxis.range': ['2026-11-18 11:07:00', '2026-11-18 11:07:30']})")
    page.wait_for_function("() => ['mem', 'temp', 'cpu', 'extra'].every(k => { const r = document"
                           ".querySelector('#c-' + k + ' .js-plotly-plot').layout.xaxis.range;"
                           " return r && String(r[0]).startsWith('2026-11-18 11:07:00'); })", timeout=20000)
    # the zoom is in the URL: a reload (or a colleague) gets the same range on every chart
    page.wait_for_function("() => new URLSearchParams(location.search).get('zoom') || false", timeout=20000)
    assert parse_qs(urlsplit(page.url).query)["zoom"][0].startswith("2026-11-18 11:07:00,2026-11-18 11:07:30")
    page.reload()
    page.wait_for_function("() => ['util', 'mem', 'cpu'].every(k => { const gd = document"
                           ".querySelector('#c-' + k + ' .js-plotly-plot');"
                           " const r = gd && gd.layout.xaxis.range;"
                           " return r && String(r[0]).startsWith('2026-11-18 11:07:00'); })", timeout=20000)
    # hover on one chart: the others show their hover label (the shared crosshair)
    page.wait_for_function("() => ['util', 'power', 'temp'].every(k => document"
                           ".querySelector('#c-' + k + ' .js-plotly-plot').__ffrayLinked)", timeout=20000)
    page.locator("#c-util").scroll_into_view_if_needed()
    x, y = page.evaluate(POINT_XY)  # a point of the first line, inside the zoomed range
    page.mouse.move(x, y)
    page.locator("#c-util .hoverlayer .hovertext").first.wait_for(timeout=10000)
    page.wait_for_function("() => document.querySelectorAll('#c-power .hoverlayer .hovertext').length > 0",
                           timeout=10000)
    assert page.locator("#c-temp .hoverlayer .hovertext").count() > 0


def test_alerts_page_shows_state_and_duration(served, page):
    page.goto(served.url + "/alerts?range=all")
    page.locator("#a-table").wait_for(timeout=20000)
    assert "1 resolved" in page.locator("#a-summary").inner_text()
    text = page.locator("#a-table").inner_text()
    assert "resolved" in text and "6 s" in text and "throttle" in text
    assert "everything" in page.locator("#a-range").inner_text()  # the range came from the URL
    shot(page, "alerts-state")
