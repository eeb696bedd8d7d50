"""Batches without a Ray Jobs cluster: folders and globs expand to their videos in sorted order
(one stdout line each), `--max-running` jobs run under the slot wrapper and show `queued` until
granted, and the slot semaphore (real Ray actors) frees the slot of a driver that died."""

from __future__ import annotations

import shlex
import time

import pytest

from ffray.cli import build_parser, main
from ffray.cluster.slots import GRANTED, POLL_S, QUEUED, RELEASED, _actor_classes, slot_state, slot_times
from ffray.cluster.submit import expand_inputs, metadata, plan_submissions, row, swap_entrypoint


def test_folders_and_globs_expand_to_their_videos_in_sorted_order(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for n in ("b.mp4", "A.MOV", "c.webm", "notes.txt", "a.mkv"):
        (d / n).write_bytes(b"x")
    (d / "sub.mp4").mkdir()  # a folder named like a video is not one
    (tmp_path / "x1.mp4").write_bytes(b"x")
    (tmp_path / "x0.avi").write_bytes(b"x")
    empty = tmp_path / "empty"
    empty.mkdir()
    got = expand_inputs([str(tmp_path / "x*"), str(d), str(tmp_path / "lone.mp4"), str(empty),
                         str(tmp_path / "z*.mp4")])
    assert got == [tmp_path / "x0.avi", tmp_path / "x1.mp4",
                   d / "A.MOV", d / "a.mkv", d / "b.mp4", d / "c.webm",
                   tmp_path / "lone.mp4", empty, tmp_path / "z*.mp4"]


def test_batch_submit_prints_one_line_per_video_in_order(tmp_path, capsys):
    """A folder of bad files and a missing file: one line per video in sorted order, each
    refused with '-' and one error line, exit 2 (and the unreachable cluster is never needed)."""
    d = tmp_path / "in"
    d.mkdir()
    (d / "b.mp4").write_bytes(b"")
    (d / "a.mp4").write_text("not a video")
    (d / "c.mkv").write_text("nor this")
    (d / "readme.txt").write_text("no video suffix: not part of the batch")
    rc = main(["submit", str(d), str(tmp_path / "gone.mp4"), "-o", str(tmp_path / "o"),
               "--processor", "identity", "--max-running", "2", "--address", "http://127.0.0.1:9"])
    cap = capsys.readouterr()
    lines = cap.out.splitlines()
    assert rc == 2 and len(lines) == 4, cap
    want = [d / "a.mp4", d / "b.mp4", d / "c.mkv", tmp_path / "gone.mp4"]
    assert [line.split()[:2] for line in lines] == [["-", "refused"]] * 4
    assert [line.split()[2].rstrip(":") for line in lines] == [str(w) for w in want]
    errors = cap.err.splitlines()
    assert len(errors) == 4 and all(e.startswith("ffray: error: ") for e in errors), cap.err


@pytest.mark.parametrize("bad", ["0", "-1", "two"])
def test_max_running_must_be_a_positive_count(bad, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["submit", "a.mp4", "-o", "o", "--max-running", bad])
    assert e.value.code == 2 and "--max-running" in capsys.readouterr().err


def test_max_running_jobs_run_swap_under_the_slot_wrapper(tmp_path):
    plan = plan_submissions([tmp_path / "a b.mp4"], tmp_path / "o", ["--crf", "20"],
                            lambda i, o: None, lambda: "t1", max_running=3)
    words = shlex.split(plan[0].entrypoint)
    assert words[:8] == ["python", "-m", "ffray.cluster.slots", "--limit", "3", "--job",
                         "ffray-a-b-t1", "--"]
    assert words[8:] == shlex.split(swap_entrypoint(tmp_path / "a b.mp4", tmp_path / "o" / "a b.mp4",
                                                    ["--crf", "20"]))
    assert metadata(plan[0])["max_running"] == "3"
    plain = plan_submissions([tmp_path / "a.mp4"], tmp_path / "o", [], lambda i, o: None,
                             lambda: "t2")
    assert shlex.split(plain[0].entrypoint)[:4] == ["python", "-m", "ffray", "swap"]
    assert "max_running" not in metadata(plain[0])


def test_slot_jobs_show_queued_until_granted_and_their_end_once_released():
    meta = {"ffray": "swap", "max_running": "1"}
    queued = f"{QUEUED} (waiting)\n"
    granted = queued + f"{GRANTED} at 100.000\nffray progress: ...\n"
    done = granted + f"{RELEASED} at 130.500 exit 0\n"
    assert [slot_state(x) for x in ("", queued, granted, done)] == ["queued", "queued", None,
                                                                    "succeeded"]
    assert slot_state(granted + f"{RELEASED} at 1.0 exit 2\n") == "failed"
    assert [row("j", "RUNNING", meta, None, x).state for x in (queued, granted, done)] == [
        "queued", "running", "succeeded"]
    assert row("j", "RUNNING", {"ffray": "swap"}, None, queued).state == "running"  # no slot job
    assert slot_times(done) == (100.0, 130.5) and slot_times(granted) is None


def test_slot_semaphore_frees_the_slot_of_a_dead_driver(cluster):
    """Real actors: a holder keeps its slot, a second waits, and the slot comes back when the
    holder's lease (owned by its driver, dying with it) is gone."""
    import ray

    lease_cls, slots_cls = _actor_classes()
    slots = slots_cls.remote()  # anonymous here: the real one is named and detached
    one, two = lease_cls.remote(), lease_cls.remote()
    try:
        assert ray.get(slots.acquire.remote("a", 1, [one]))
        assert ray.get(slots.acquire.remote("a", 1, [one]))  # asking again keeps it
        assert not ray.get(slots.acquire.remote("b", 1, [two]))
        assert ray.get(slots.acquire.remote("b", 2, [two]))  # the latest limit counts
        ray.get(slots.release.remote("b"))
        ray.kill(one)  # asynchronous: a ping sent before the kill lands may still answer
        deadline, got = time.monotonic() + 30, False
        while not got and time.monotonic() < deadline:  # the waiting driver's own poll
            got = ray.get(slots.acquire.remote("b", 1, [two]))
            time.sleep(0 if got else POLL_S)
        assert got, "the dead holder's slot never came back"
        assert ray.get(slots.holders.remote()) == ["b"]
    finally:
        for a in (slots, one, two):
            ray.kill(a)


def test_a_slow_lease_keeps_its_slot(cluster):
    """A holder whose lease answers late (a loaded node) is not taken for dead: only a dead lease
    frees a slot, so two jobs never run where the limit says one."""
    import ray

    @ray.remote(num_cpus=0)
    class SlowLease:
        def ping(self) -> bool:
            import time

            time.sleep(3)
            return True

    _, slots_cls = _actor_classes()
    slots = slots_cls.remote(ping_s=0.5)
    slow, other = SlowLease.remote(), SlowLease.remote()
    try:
        assert ray.get(slots.acquire.remote("a", 1, [slow]))
        assert not ray.get(slots.acquire.remote("b", 1, [other]))
        assert ray.get(slots.holders.remote()) == ["a"]
    finally:
        for a in (slots, slow, other):
            ray.kill(a)
