"""Detached jobs end to end on a loopback `ray start --head` cluster with its Jobs API and token
auth (tests/rayhead.py: own network and PID namespaces where the kernel allows): two videos
submitted and the client gone, both finish with every frame; `jobs` shows states; a bad input in
a submission is refused in one line while the other is submitted; `cancel` ends a slow job;
`wait` returns."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from ffray.cluster.submit import STATES
from ffray.processors import read_stamp
from ffray.video import sample
from tests.media import frames
from tests.rayhead import start_head, wait_ready

pytestmark = pytest.mark.slow
COMMON = ("--chunk-seconds", "0.5", "--no-telemetry", "--actors", "1")


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """One head for this file's tests (its start is a good part of their time)."""
    h = start_head(tmp_path_factory.mktemp("head"))
    try:
        wait_ready(h)
        yield h
    finally:
        h.stop()


def _states(r) -> dict[str, str]:
    return {line.split()[0]: line.split()[1] for line in r.stdout.splitlines()}


def test_submit_jobs_cancel_wait_on_a_ray_start_head(head, tmp_path):
    clips = tmp_path / "in"
    clips.mkdir()
    a = sample.write_video(clips / "a.mp4", sample.pattern_frames(30, 160, 120), fps=25, gop=12,
                           audio=False)
    b = sample.write_video(clips / "b clip.mp4", sample.pattern_frames(40, 160, 120, seed=1),
                           fps=25, gop=12)
    c = sample.write_video(clips / "c.mp4", sample.pattern_frames(50, 160, 120, seed=2), fps=25,
                           gop=12, audio=False)
    out = tmp_path / "out"
    t0 = time.time()
    r = head.ffray("submit", a, b, "-o", out, "--processor", "stamp", *COMMON,
                   "--address", head.url, timeout=60)
    submit_s = time.time() - t0
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and str(a) in lines[0] and str(b) in lines[1], r.stdout
    ids = [line.split()[0] for line in lines]

    r = head.ffray("submit", clips / "nope.mp4", c, "-o", out, "--processor", "tests.procs:Slow",
                   "--processor-opt", "delay=1.0", *COMMON, "--address", head.url, timeout=60)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and lines[0].split()[0] == "-" and "nope.mp4" in lines[0]
    slow = lines[1].split()[0]
    assert slow.startswith("ffray-c-") and str(c) in lines[1]
    errors = [x for x in r.stderr.splitlines() if x.startswith("ffray: error:")]
    assert len(errors) == 1 and "nope.mp4: no such file" in errors[0], r.stderr
    assert "Traceback" not in r.stderr

    seen = _states(head.ffray("jobs", "--address", head.url))
    assert set(ids + [slow]) <= set(seen) and all(s in STATES for s in seen.values()), seen

    deadline = time.time() + 90  # cancel the slow one once its driver is processing frames
    while time.time() < deadline:
        r = head.ffray("jobs", "--address", head.url)
        line = next(x for x in r.stdout.splitlines() if x.startswith(slow))
        if " frames " in line:
            break
        time.sleep(1)
    assert " running " in line and " frames " in line, line
    r = head.ffray("cancel", slow, "--address", head.url, timeout=90)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == [slow, "cancelled"], r.stdout + r.stderr[-2000:]

    r = head.ffray("wait", *ids, "--address", head.url, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert [x.split() for x in r.stdout.splitlines()] == [[j, "succeeded"] for j in ids]
    r = head.ffray("wait", slow, "--address", head.url)
    assert r.returncode == 1 and r.stdout.split() == [slow, "cancelled"]

    seen = _states(head.ffray("jobs", "--address", head.url))
    assert [seen[j] for j in ids + [slow]] == ["succeeded", "succeeded", "cancelled"], seen
    log = head.ffray("logs", ids[0], "--address", head.url).stdout
    assert log.splitlines()[-1] == str(out / "a.mp4"), log[-2000:]  # swap's stdout: the output
    print(f"\nsubmit of 2 videos: {submit_s:.1f} s; {'; '.join(head.notes)}")
    assert [read_stamp(img) for _, img in frames(out / "a.mp4")] == list(range(30))
    assert [read_stamp(img) for _, img in frames(out / "b clip.mp4")] == list(range(40))
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "b clip.mp4"]  # nothing of c's
    ledgers = [json.loads(p.read_text()) for p in head.home.glob("jobs/*/job.json")]
    by_input = {j["input"]: j["status"] for j in ledgers if j["input"].startswith(str(clips))}
    assert by_input == {str(a): "done", str(b): "done", str(c): "interrupted"}, by_input

    # the dashboard's Jobs page over this head: its Ray Jobs, each joined to the record its driver
    # published (the driver found its submission id in Ray's job config)
    code = ("import json, sys; from pathlib import Path; from dashboard.data import Data; "
            "from ffray.analytics.submitted import lister; "
            "d = Data(sys.argv[1], Path(sys.argv[1]), submissions=lister(sys.argv[2])); "
            "rows, err = d.submitted(); "
            "print(json.dumps([err, [[r.submission_id, r.state, r.job_id, r.frames_done] for r in rows]]))")
    r = subprocess.run(head.argv(sys.executable, "-c", code, str(head.home), head.url), capture_output=True,
                       text=True, timeout=60, env=head.env)
    assert r.returncode == 0, r.stderr[-2000:]
    err, rows = json.loads(r.stdout)
    by_sub = {sid: (state, job, done) for sid, state, job, done in rows}
    assert err is None and set(ids + [slow]) <= set(by_sub), r.stdout
    job_of = {json.loads(p.read_text())["input"]: p.parent.name for p in head.home.glob("jobs/*/job.json")}
    assert by_sub[ids[0]] == ("succeeded", job_of[str(a)], 30), by_sub
    assert by_sub[ids[1]] == ("succeeded", job_of[str(b)], 40), by_sub
    assert by_sub[slow][:2] == ("cancelled", job_of[str(c)]), by_sub


def test_batch_folder_with_max_running_one_runs_one_at_a_time(head, tmp_path):
    """A folder of three clips and a bad file, `--max-running 1`: one stdout line each in sorted
    order, the bad one refused in one line, the others queue on the cluster's slot and succeed;
    never two running at once (by `ffray jobs` polls and by the slot times in the jobs' logs)."""
    from ffray.cluster.slots import slot_times

    clips = tmp_path / "in"
    clips.mkdir()
    counts = {"c": 14, "a": 10, "b": 12}
    for n, k in counts.items():
        sample.write_video(clips / f"{n}.mp4", sample.pattern_frames(k, 160, 120, seed=k), fps=25,
                           gop=12, audio=False)
    (clips / "bad.mp4").write_text("not a video")
    (clips / "notes.txt").write_text("not a video either, and no video suffix: skipped")
    out = tmp_path / "out"
    polls = []
    r = head.ffray("submit", clips, "-o", out, "--processor", "stamp", "--max-running", "1",
                   *COMMON, "--address", head.url, timeout=60)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert [x.split()[0] == "-" for x in lines] == [False, False, True, False], r.stdout
    assert [lines[i].split()[-1] for i in (0, 1, 3)] == [str(out / f"{n}.mp4") for n in "abc"]
    assert str(clips / "bad.mp4") in lines[2] and "not a video" in lines[2]
    errors = [x for x in r.stderr.splitlines() if x.startswith("ffray: error:")]
    assert len(errors) == 1 and "bad.mp4: not a video" in errors[0], r.stderr
    ids = [lines[i].split()[0] for i in (0, 1, 3)]

    deadline = time.time() + 180
    while time.time() < deadline:
        seen = _states(head.ffray("jobs", "--address", head.url))
        polls.append([seen.get(j) for j in ids])
        if all(s in ("succeeded", "failed", "stopped", "cancelled") for s in polls[-1]):
            break
        time.sleep(0.5)
    assert all(p.count("running") <= 1 for p in polls), polls
    assert any("queued" in p for p in polls), polls
    assert polls[-1] == ["succeeded"] * 3, polls
    r = head.ffray("wait", *ids, "--address", head.url, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    spans = sorted(slot_times(head.ffray("logs", j, "--address", head.url).stdout) for j in ids)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans  # never overlapping
    gaps = [b[0] - a[1] for a, b in zip(spans, spans[1:])]
    print(f"\nbatch: {len(polls)} polls; slot handoffs {', '.join(f'{g:.1f}' for g in gaps)} s; "
          f"each video's slot held {', '.join(f'{b - a:.1f}' for a, b in spans)} s; "
          f"{'; '.join(head.notes)}")
    for n, k in counts.items():  # every frame of every good clip
        assert [read_stamp(img) for _, img in frames(out / f"{n}.mp4")] == list(range(k))
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "b.mp4", "c.mp4"]
