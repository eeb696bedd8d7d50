"""Staged detached jobs without a cluster: entrypoints of URI/upload jobs, the wrapper's spec and
result lines, URI checks and the bounded-block copies (real files through pyarrow's file://)."""

from __future__ import annotations

import shlex

import pytest

from ffray.cluster import uriio
from ffray.cluster.jobprogress import Layout, last_layout, layout_of
from ffray.cluster.staging import (
    KEPT,
    UPLOAD,
    URI,
    Result,
    Staging,
    last_result,
    ledger_of,
    piece_count,
    with_paths,
)
from ffray.cluster.submit import expand_inputs, output_for, plan_submissions
from ffray.cluster.submit_cli import input_problem
from ffray.errors import FFrayError
from ffray.video import sample

Q = "?endpoint_override=127.0.0.1:9000&scheme=http"


def test_uri_jobs_run_the_swap_under_the_stage_wrapper(tmp_path):
    src = f"s3://b/in/my clip.avi{Q}"
    assert expand_inputs([src]) == [src]  # a URI is never globbed ('?' in its query)
    assert output_for(src, f"s3://b/out{Q}") == f"s3://b/out/my clip.mp4{Q}"
    assert output_for(src, tmp_path) == tmp_path / "my clip.mp4"

    def stage(i, o, job):
        return Staging(stage_id=job, input_kind=URI, output_kind=URI, name="my clip.avi",
                       out_name="my clip.mp4", input_uri=i, output_uri=o)

    plan = plan_submissions([src], f"s3://b/out{Q}", ["--crf", "20"], lambda i, o: None,
                            lambda: "t1", max_running=2, stage=stage)
    p = plan[0]
    assert p.job_id == "ffray-my-clip-t1" and p.staging.output_uri == f"s3://b/out/my clip.mp4{Q}"
    words = shlex.split(p.entrypoint)
    assert words[:3] == ["python", "-m", "ffray.cluster.stage"]
    assert Staging.from_json(words[words.index("--spec") + 1]) == p.staging
    inner = words[words.index("--") + 1:]
    assert inner[:3] == ["python", "-m", "ffray.cluster.slots"]  # the slot wait runs inside
    swap = with_paths(inner, "/h/staging/x/my clip.avi", "/h/staging/x/out/my clip.mp4")
    i = swap.index("swap")
    assert swap[i + 1:i + 4] == ["/h/staging/x/my clip.avi", "-o", "/h/staging/x/out/my clip.mp4"]
    assert swap[i + 4:] == ["--address", "auto", "--crf", "20"]
    with pytest.raises(ValueError):
        with_paths(["python", "-m", "ffray", "resume", "L"], "a", "b")
    shared = plan_submissions([tmp_path / "a.mp4"], tmp_path, [], lambda i, o: None, lambda: "t2",
                              stage=lambda i, o, j: Staging(j, "shared", "shared", "a.mp4", "a.mp4"))
    assert shared[0].staging is None and "ffray.cluster.stage" not in shared[0].entrypoint


def test_pieces_results_ledgers_and_layouts_read_back():
    assert [piece_count(n, 10) for n in (0, 1, 10, 11, 95)] == [1, 1, 1, 2, 10]
    s = Staging("j", UPLOAD, KEPT, "a.mp4", "a.mp4", size=25, piece_bytes=10)
    assert s.pieces == 3 and s.needed and s.for_resume().resume and not s.resume
    r = Result(123, "ab" * 32, "d9" * 28, "ffray-results/j/a b.mp4")
    assert last_result(f"noise\n{r.line()}\nmore\n") == r and last_result("none") is None
    log = "job 20261201-174756-4e3aeb (ledger \n/tmp/home/jobs/20261201-174756-4e3aeb)\n"
    assert ledger_of(log) == "20261201-174756-4e3aeb"  # rich wrapped the line after "(ledger"
    assert ledger_of("ffray: error: interrupted; finish it with `ffray resume 2026-x`") == "2026-x"
    assert ledger_of("ffray: queued\nffray: interrupted (while queued)") is None
    infos = [{"node_id": "n1", "gpu_ids": [0, 1]}, {"node_id": "n1", "gpu_ids": [1]},
             {"node_id": "n2", "gpu_ids": [0]}]
    lay = layout_of(infos)
    assert lay == Layout(3, 2, 3) and last_layout(f"x\n{lay.line()}\n") == lay
    assert last_layout("ffray progress: frames 1/2 chunks 0/1 fps 1.0") is None


def test_uri_inputs_and_outputs_are_checked_before_submitting(tmp_path):
    good = sample.write_video(tmp_path / "g.mp4", sample.pattern_frames(4, 64, 48), fps=25, audio=False)
    (tmp_path / "t.mp4").write_text("not a video")
    out = tmp_path / "out"
    out.mkdir()
    u = f"file://{tmp_path}"
    assert input_problem(f"{u}/g.mp4", f"file://{out}/g.mp4", False, "h264") is None
    assert input_problem(f"{u}/none.mp4", f"file://{out}/n.mp4", False, "h264") == "no such file"
    assert input_problem(f"{u}/t.mp4", f"file://{out}/t.mp4", False, "h264").startswith("not a video")
    (out / "g.mp4").write_bytes(b"old")
    assert "output exists" in input_problem(f"{u}/g.mp4", f"file://{out}/g.mp4", False, "h264")
    assert input_problem(f"{u}/g.mp4", f"file://{out}/g.mp4", True, "h264") is None
    assert good.is_file()


def test_uri_copies_go_in_blocks_through_temp_names(tmp_path):
    data = bytes(range(256)) * 1000
    (tmp_path / "src.bin").write_bytes(data)
    got = tmp_path / "got.bin"
    assert uriio.download(f"file://{tmp_path}/src.bin", got, block=4096) == len(data)
    assert got.read_bytes() == data
    calls = []
    with pytest.raises(KeyboardInterrupt):  # a cancel between blocks: no partial file stays
        uriio.download(f"file://{tmp_path}/src.bin", tmp_path / "cut.bin",
                       stop=lambda: calls.append(1) or len(calls) > 3, block=4096)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["got.bin", "src.bin"]
    dest = tmp_path / "dest"
    dest.mkdir()
    uriio.upload(got, f"file://{dest}/o.bin", "j1", overwrite=False, block=4096)
    assert (dest / "o.bin").read_bytes() == data
    (tmp_path / "other.bin").write_bytes(b"new")
    with pytest.raises(FFrayError, match="output exists"):
        uriio.upload(tmp_path / "other.bin", f"file://{dest}/o.bin", "j2", overwrite=False)
    assert (dest / "o.bin").read_bytes() == data  # untouched, and no temp object left beside it
    assert [p.name for p in dest.iterdir()] == ["o.bin"]
    uriio.upload(tmp_path / "other.bin", f"file://{dest}/o.bin", "j3", overwrite=True)
    assert (dest / "o.bin").read_bytes() == b"new"


# A stand-in for `python -m ffray swap IN -o OUT …`: the wrapper inserts IN -o OUT after `-m ffray
# swap`; this child copies IN to OUT (or exits 3 when asked), so the wrapper's own work is tested.
_CHILD = "import shutil, sys; sys.exit(3) if 'fail' in sys.argv else shutil.copy(sys.argv[4], sys.argv[6])"


def _stage(tmp_path, spec: Staging, *extra: str):
    import os
    import subprocess
    import sys

    env = {**os.environ, "FFRAY_HOME": str(tmp_path / "home")}
    return subprocess.run([sys.executable, "-m", "ffray.cluster.stage", "--spec", spec.to_json(),
                           "--job", spec.stage_id, "--", sys.executable, "-c", _CHILD, "-m",
                           "ffray", "swap", *extra], env=env, capture_output=True, text=True,
                          timeout=60)


def test_the_stage_wrapper_copies_in_runs_and_moves_out(tmp_path):
    data = bytes(range(256)) * 300
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "v.mp4").write_bytes(data)
    dest = tmp_path / "dest"
    spec = Staging("j1", URI, URI, "v.mp4", "v.mp4", input_uri=f"file://{tmp_path}/in/v.mp4",
                   output_uri=f"file://{dest}/v.mp4")
    r = _stage(tmp_path, spec)
    assert r.returncode == 0, r.stderr
    assert (dest / "v.mp4").read_bytes() == data and [p.name for p in dest.iterdir()] == ["v.mp4"]
    assert "ffray: staged v.mp4" in r.stdout
    assert not (tmp_path / "home" / "staging" / "j1").exists()  # freed once the output is out

    r = _stage(tmp_path, Staging("j2", URI, URI, "v.mp4", "v.mp4", input_uri=spec.input_uri,
                                 output_uri=spec.output_uri))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"ffray: error: output exists: file://{dest}/v.mp4 (use --overwrite to replace it)"]
    assert (dest / "v.mp4").read_bytes() == data and [p.name for p in dest.iterdir()] == ["v.mp4"]

    r = _stage(tmp_path, Staging("j3", URI, URI, "v.mp4", "w.mp4", input_uri=spec.input_uri,
                                 output_uri=f"file://{dest}/w.mp4"), "fail")
    assert r.returncode == 3  # the swap failed: its staged input stays for `ffray resume`
    assert (tmp_path / "home" / "staging" / "j3" / "v.mp4").read_bytes() == data
    assert not (dest / "w.mp4").exists()
    r = _stage(tmp_path, Staging("j4", URI, URI, "v.mp4", "x.mp4", input_uri=f"file://{tmp_path}/none",
                                 output_uri=f"file://{dest}/x.mp4"))
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "home" / "staging" / "j4").exists()  # nothing half-staged stays
