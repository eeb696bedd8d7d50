"""`ffray submit` planning without a cluster: options forwarded to the jobs' `ffray swap` exactly,
entrypoints quoted, outputs named after inputs, bad inputs refused one line each, Ray's states
mapped, progress lines read back."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from ffray.cli import build_parser, main
from ffray.cluster.jobprogress import JobProgress, last_progress
from ffray.cluster.submit import STATES, output_for, plan_submissions, row, state_of
from ffray.cluster.submit_cli import forwarded_options, input_problem
from ffray.swap_cli import add_swap_options as _add_swap_options
from ffray.video import sample

SWAP_ARGS = ["-s", "face one.jpg", "-s", "/abs/f2.jpg", "--processor", "identity", "--crf", "21",
             "--no-track", "--map", "t.jpg=s.jpg", "--trim-start", "00:01.5", "--model-dir", "m",
             "--processor-opt", "delay=0.5", "--processor-opt", 'name="x y"', "--overwrite",
             "--mask-padding", "1,2,3,4", "--precision", "fp32", "--encoder-threads", "2", "--cuda-graphs"]


def _swap_dests() -> set[str]:
    import argparse

    p = argparse.ArgumentParser(add_help=False)
    _add_swap_options(p)
    return set(vars(p.parse_args([])))


def test_forwarded_options_reach_the_jobs_swap_unchanged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sub = build_parser().parse_args(["submit", "a.mp4", "b.mp4", "-o", "out", *SWAP_ARGS,
                                     "--address", "http://h:8265"])
    fwd = forwarded_options(sub, _add_swap_options)
    swap = build_parser().parse_args(["swap", "a.mp4", "-o", "x.mp4", *fwd])
    direct = build_parser().parse_args(["swap", "a.mp4", "-o", "x.mp4", *SWAP_ARGS])
    for dest in _swap_dests():
        want = getattr(direct, dest)
        if dest in ("source", "model_dir"):
            want = [str(tmp_path / w) if not w.startswith("/") else w for w in want]
        elif dest == "map":
            want = [f"{tmp_path / 't.jpg'}={tmp_path / 's.jpg'}"]
        assert getattr(swap, dest) == want, dest
    assert forwarded_options(build_parser().parse_args(["submit", "a.mp4", "-o", "o"]),
                             _add_swap_options) == []


def test_plan_keeps_input_order_quotes_entrypoints_and_refuses_clashes(tmp_path):
    inputs = [tmp_path / "it's a clip.mp4", tmp_path / "x" / "b.avi", tmp_path / "bad.mp4",
              tmp_path / "y" / "b.mp4"]
    tokens = iter(["t1", "t2", "t3"])
    plan = plan_submissions(inputs, tmp_path / "out", ["--processor", "a;b"],
                            lambda i, o: "no such file" if i.name == "bad.mp4" else None,
                            lambda: next(tokens))
    assert [p.input for p in plan] == inputs
    assert [p.refused for p in plan] == [None, None, "no such file",
                                         "another input has the same output name"]
    assert plan[1].output == tmp_path / "out" / "b.mp4"  # .avi is not written: .mp4
    assert [p.job_id for p in plan] == ["ffray-it-s-a-clip-t1", "ffray-b-t2", None, None]
    assert shlex.split(plan[0].entrypoint) == [
        "python", "-m", "ffray", "swap", str(inputs[0]), "-o", str(tmp_path / "out" / "it's a clip.mp4"),
        "--address", "auto", "--processor", "a;b"]
    assert output_for(Path("/v/c.MOV"), Path("/o")) == Path("/o/c.MOV")


def test_input_problems_are_decided_before_submission(tmp_path):
    good = sample.write_video(tmp_path / "g.mp4", sample.pattern_frames(4, 64, 48), fps=25,
                              audio=False)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    out = tmp_path / "out"
    out.mkdir()
    assert input_problem(good, out / "g.mp4", False, "h264") is None
    assert input_problem(tmp_path / "missing.mp4", out / "m.mp4", False, "h264") == "no such file"
    assert input_problem(tmp_path, out / "d.mp4", False, "h264") == "not a file"
    assert input_problem(text, out / "notes.mp4", False, "h264").startswith("not a video")
    (out / "g.mp4").write_bytes(b"old")
    assert "output exists" in input_problem(good, out / "g.mp4", False, "h264")
    assert input_problem(good, out / "g.mp4", True, "h264") is None


def test_submit_with_only_bad_inputs_contacts_no_cluster(tmp_path, capsys):
    """Nothing to submit: one stdout line per input ('-' first), one error line each, exit 2,
    and the (unreachable) cluster is never asked."""
    rc = main(["submit", str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"), "-o", str(tmp_path / "o"),
               "--processor", "identity", "--address", "http://127.0.0.1:9"])
    cap = capsys.readouterr()
    assert rc == 2
    assert [x.split()[0] for x in cap.out.splitlines()] == ["-", "-"]
    assert len(cap.err.splitlines()) == 2 and "a.mp4: no such file" in cap.err


def test_missing_face_refuses_the_whole_submission(tmp_path, capsys):
    clip = sample.write_video(tmp_path / "g.mp4", sample.pattern_frames(4, 64, 48), fps=25, audio=False)
    rc = main(["submit", str(clip), "-o", str(tmp_path / "o"), "-s", str(tmp_path / "nobody.jpg"),
               "--address", "http://127.0.0.1:9"])
    cap = capsys.readouterr()
    assert rc == 2 and cap.out == ""
    assert cap.err.strip().splitlines() == [f"ffray: error: no such file: {tmp_path / 'nobody.jpg'} "
                                            "(nothing submitted)"]


@pytest.mark.parametrize("cmd", [["jobs"], ["wait", "j1"], ["cancel", "j1"], ["logs", "j1"]])
def test_unreachable_cluster_is_one_line(cmd, capsys):
    rc = main([*cmd, "--address", "http://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "127.0.0.1:9" in err


def test_ray_states_map_onto_ffray_states():
    got = {s: state_of(s) for s in ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "JobStatus.STOPPED")}
    assert got == {"PENDING": "pending", "RUNNING": "running", "SUCCEEDED": "succeeded",
                   "FAILED": "failed", "JobStatus.STOPPED": "stopped"}
    assert state_of("STOPPED", "...\nffray: interrupted (finished chunks are kept)\n") == "cancelled"
    assert set(got.values()) | {"cancelled"} <= set(STATES)


def test_rows_show_progress_of_running_jobs_and_why_failed_ones_failed():
    p = JobProgress(40, 100, 2, 5, 12.5, 5)
    log = f"job x\n{JobProgress(0, 100, 0, 5, 0.0).line()}\nnote\n{p.line()}\n"
    assert last_progress(log) == p and last_progress("no progress yet") is None
    r = row("ffray-a-1", "RUNNING", {"ffray": "swap", "input": "/i/a.mp4", "output": "/o/a.mp4"},
            None, log)
    assert r.progress == p and r.line().split()[:2] == ["ffray-a-1", "running"]
    assert "40/100 frames (40 %), 12.5 frames/s, ETA 5 s" in r.line()
    f = row("ffray-b-2", "FAILED", {"ffray": "swap"}, "Job entrypoint command failed with exit code 2, "
            "last available logs:\nffray: error: input has no video stream\n")
    assert f.state == "failed" and f.reason == "input has no video stream" and f.progress is None


def test_cuda_graphs_is_a_face_swap_option_off_by_default():
    from ffray.faces.params import FaceSwapParams
    from ffray.swap_cli import request

    base = ["swap", "a.mp4", "-o", "x.mp4", "-s", "f.jpg"]
    on = request(build_parser().parse_args([*base, "--cuda-graphs"])).processor.params
    off = request(build_parser().parse_args(base)).processor.params
    assert FaceSwapParams.from_dict(on).cuda_graphs is True
    assert FaceSwapParams.from_dict(off).cuda_graphs is False
