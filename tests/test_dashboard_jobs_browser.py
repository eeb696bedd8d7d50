"""The Jobs and job pages in Debian's Chromium (Playwright): a CPU job's timeline on real time
with per-worker lanes and its events, the cost column and CSV export, and jobs submitted to a
cluster (Ray Jobs rows) from the moment they are queued."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone

import pytest

from dashboard.data import Data
from tests import cpu_store
from tests import store_data as sd
from tests import test_dashboard_browser as tdb
from tests.test_dashboard_browser import Served, shot

browser, page = tdb.browser, tdb.page  # the browser tests' fixtures (CSP violations fail a test)

FIG = "() => document.querySelector('#job-fig .js-plotly-plot')"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("jobs")
    sd.build(root)  # two GPU jobs (job-a, job-b) on fake H100s
    cpu_store.build(root, submission="ffray-cpu-1a2b3c4d")
    return root


@pytest.fixture(scope="module")
def served(store):
    s = Served(Data(str(store), store))
    yield s
    s.close()


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace(" ", "T")).replace(tzinfo=timezone.utc)


def test_cpu_job_timeline_is_on_real_time_with_a_lane_per_worker_slot(served, page):
    page.goto(served.url + "/job/cpu-job")
    bars = page.locator("#job-fig .barlayer .point")
    bars.nth(len(cpu_store.CHUNKS) - 1).wait_for(timeout=20000)
    assert bars.count() == len(cpu_store.CHUNKS)  # 8 finished attempts + the failed one
    lo, hi = (_utc(v) for v in page.evaluate(f"() => ({FIG})()._fullLayout.xaxis.range"))
    t0 = datetime.fromtimestamp(cpu_store.T0, tz=timezone.utc)
    assert t0 - timedelta(seconds=30) <= lo < hi <= t0 + timedelta(seconds=cpu_store.SECONDS + 30)
    for i in range(bars.count()):  # every bar is visible: at least its seconds' share of the axis
        assert bars.nth(i).bounding_box()["width"] > 20
    tick = page.locator("#job-fig .yaxislayer-above .y3tick")
    ticks = sorted((tick.nth(i).bounding_box()["y"], tick.nth(i).text_content()) for i in range(tick.count()))
    assert [t for _, t in ticks] == [f"cpu0 · CPU · worker {w} · slot {s}" for w in (1, 2) for s in (1, 2)]
    # the failed attempt sits on worker 2's first lane (where it ran), not on a lane of its own
    ys = page.evaluate(f"() => ({FIG})().data.find(d => d.name == 'chunks: failed').y")
    assert ys == ["cpu0 · CPU · worker 2 · slot 1"]
    # the "no GPU samples" note is in the top panel, above the chunk lanes
    note = page.locator("#job-fig .annotation-text", has_text="no GPU samples for this job")
    lanes_top = page.locator("#job-fig .yaxislayer-above .y3tick").first.bounding_box()["y"]
    assert note.count() == 1 and note.bounding_box()["y"] < lanes_top
    # the events in words, on the chart and in the list under it
    start = 4 * cpu_store.FRAMES / cpu_store.FPS
    words = f"from 0:{start:02.0f} the video has two faces per frame"
    assert page.locator("#job-fig .annotation-text", has_text=words).count() == 1
    assert page.locator("#job-fig .annotation-text", has_text="chunk 5: attempt 1 failed on").count() == 1
    events = page.locator("#job-events").inner_text()
    assert words in events and "retried on cpu0 · CPU · worker 1 · slot 1" in events
    shot(page, "job-cpu")


def test_jobs_page_has_a_cost_column_and_exports_csv(served, store, page):
    want = {j["job_id"]: j for j in Data(str(store), store).jobs()}
    assert want["job-a"]["cost"] is not None and want["cpu-job"]["cost"] is None  # no GPU: no price
    page.goto(served.url + "/jobs")
    page.locator("#j-table").wait_for(timeout=20000)
    headers = page.locator("#j-table th").all_inner_texts()
    assert any("cost ($)" in h for h in headers)
    row = page.locator("#j-table tr", has=page.get_by_role("link", name="job-a"))
    assert f"{want['job-a']['cost']:.4f}".rstrip("0") in row.inner_text()
    with page.expect_download(timeout=20000) as dl:
        page.locator("#j-csv-go").click()
    got = list(csv.DictReader(io.StringIO(open(dl.value.path()).read())))
    assert [r["job_id"] for r in got] == list(want)  # every job, in the table's order
    for r in got:
        cost = want[r["job_id"]]["cost"]
        assert (r["cost"] == "") if cost is None else float(r["cost"]) == pytest.approx(cost, abs=1e-4)
        assert float(r["gpu_seconds"] or 0) == pytest.approx(want[r["job_id"]]["gpu_seconds"] or 0, abs=0.05)
    # filtered in the table: the CSV holds the rows shown
    box = page.locator("#j-table th.dash-filter[data-dash-column='input'] input[type=text]")
    box.fill("job-b.mp4")
    box.press("Enter")
    page.wait_for_function("() => document.querySelectorAll('#j-table tbody tr td.dash-cell').length > 0 && "
                           "!document.querySelector('#j-table tbody').innerText.includes('job-a.mp4')",
                           timeout=20000)
    with page.expect_download(timeout=20000) as dl:
        page.locator("#j-csv-go").click()
    got = list(csv.DictReader(io.StringIO(open(dl.value.path()).read())))
    assert [r["job_id"] for r in got] == ["job-b"]


def test_jobs_page_lists_submitted_jobs_from_the_moment_they_are_queued(store, page):
    """Ray Jobs rows as ffray.cluster.submit maps them (the lister stands in for the cluster's
    HTTP API); a running one links to the job its driver published, and the rows refresh."""
    from ffray.cluster.jobprogress import JobProgress
    from ffray.cluster.submit import row

    meta = {"ffray": "swap", "input": "/v/cpu.mp4", "output": "/o/cpu.mp4"}
    now = [row("ffray-cpu-1a2b3c4d", "RUNNING", meta, "", JobProgress(300, 800, 3, 8, 20.0, 25).line()),
           row("ffray-two-00000001", "RUNNING", {**meta, "max_running": "1"}, "", "ffray: queued\n"),
           row("ffray-three-0000002", "PENDING", meta, "")]
    s = Served(Data(str(store), store, submissions=lambda: list(now)))
    try:
        page.goto(s.url + "/jobs")
        page.locator("#j-sub").wait_for(timeout=20000)
        assert "3 job(s) submitted" in page.locator("#j-sub-title").inner_text()
        text = page.locator("#j-sub").inner_text()
        assert "waiting for a --max-running slot" in text and "waiting for Ray to start its driver" in text
        running = page.locator("#j-sub tr", has_text="ffray-cpu-1a2b3c4d")
        assert "running" in running.inner_text() and "300/800 frames (38 %), 20.0 frames/s, ETA 25 s" in \
            running.inner_text()
        assert running.get_by_role("link").get_attribute("href") == "/job/cpu-job"
        queued = page.locator("#j-sub tr", has_text="ffray-two-00000001")
        assert "queued" in queued.inner_text()
        shot(page, "jobs-submitted")
        now[1] = row("ffray-two-00000001", "FAILED", meta, "ffray: error: input.mp4: no video stream")
        page.wait_for_function("() => document.querySelector('#j-sub').innerText.includes('no video stream')",
                               timeout=20000)  # the 5 s refresh
        assert "failed" in page.locator("#j-sub tr", has_text="ffray-two-00000001").inner_text()
    finally:
        s.close()


def test_unreachable_jobs_api_is_one_line_on_the_jobs_page(store, page):
    from ffray.analytics.submitted import lister

    s = Served(Data(str(store), store, submissions=lister("http://127.0.0.1:9")))  # nothing listens
    try:
        page.goto(s.url + "/jobs")
        page.locator("#j-sub-error").wait_for(timeout=30000)
        assert "Could not read the cluster's Jobs API" in page.locator("#j-sub-error").inner_text()
        page.locator("#j-table").wait_for(timeout=30000)  # the store's jobs are still listed
        assert page.locator("#j-table").count() == 1
    finally:
        s.close()
