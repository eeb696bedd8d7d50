"""Issue 13, item 3 (and the full-filesystem fault of item 8): free space is checked against an
estimate before any work; a disk that fills up anyway (chunks, ledger or output) ends the job
in one line, leaves nothing partial at the destination, and ``ffray resume`` finishes it once
there is room. The full file systems are real: small tmpfs mounts, skipped where mounting is
not allowed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ffray.cluster.space import SpaceNeed, check_space, estimate
from ffray.errors import FFrayError
from ffray.video import sample
from tests.media import frames

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "300"}


def test_estimate_scales_the_video_by_what_is_selected_and_still_to_run():
    # 100 frames, 1000 video bytes in a 1300-byte file: 10 bytes a frame, 3 of other streams
    e = estimate(1000, 1300, 100, selected=50, to_run=20)
    assert e == SpaceNeed(chunks=200, output=500 + 150)
    whole = estimate(1000, 1300, 100, 100, 100)
    assert whole.chunks + whole.output == 2300  # a whole job: about twice the input


def test_check_space_adds_up_what_shares_a_file_system(tmp_path):
    a, b = tmp_path / "ledger", tmp_path / "out"
    a.mkdir()
    b.mkdir()
    need = SpaceNeed(chunks=600, output=500)
    check_space(need, a, b, free=lambda p: 1100)
    with pytest.raises(FFrayError, match=r"needs about 0.0 MB \(chunks ~0.0 MB \+ output ~0.0 MB\)"):
        check_space(need, a, b, free=lambda p: 1099)
    check_space(need, a / "not" / "yet", b, free=lambda p: 1100)  # folders made later: their parent


@pytest.fixture
def tmpfs(tmp_path):
    """Mount small tmpfs folders (``mount(size_kb)``); all unmounted at the end."""
    mounts = []

    def mount(size_kb: int) -> Path:
        d = tmp_path / f"fs-{uuid.uuid4().hex[:6]}"
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(d)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode})")
        mounts.append(d)
        return d

    def grow(d: Path, size_kb: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size_kb}k", str(d)], check=True)

    mount.grow = grow
    yield mount
    for d in mounts:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def ffray(*args, timeout=240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ffray", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=ENV)


def one_error_line(r: subprocess.CompletedProcess, needle: str) -> str:
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("ffray: error:")]
    assert len(errors) == 1 and needle in errors[0], r.stderr[-3000:]
    assert not [ln for ln in r.stderr.splitlines() if "warning" in ln.lower()
                and "no GPU" not in ln], r.stderr[-3000:]
    return errors[0]


def test_a_job_that_cannot_fit_is_refused_before_any_work(tmpfs, tmp_path, capsys):
    from ffray.cli import main

    src = sample.write_video(tmp_path / "big.mp4", sample.pattern_frames(30), fps=25, crf=0,
                             audio=False)  # ~1 MB: chunks + output ~2 MB
    small = tmpfs(512)
    rc = main(["swap", str(src), "--processor", "identity", "-o", str(tmp_path / "o.mp4"),
               "--data-dir", str(small)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "not enough free space in" in err, err
    assert list(small.iterdir()) == [] and not (tmp_path / "o.mp4").exists()


def _resume(data: Path, job_id: str):
    """``ffray resume`` in this process, on the tests' cluster."""
    from ffray.cluster.jobs import run_job
    from ffray.cluster.ledger import JobLedger

    return run_job(JobLedger.open(data, job_id))


def test_full_data_dir_mid_job_is_one_line_and_resumable(tmpfs, tmp_path, cluster):
    # a tiny, low-quality input re-encoded losslessly: the estimate fits, the chunks do not
    src = sample.write_video(tmp_path / "tiny.mp4", sample.pattern_frames(30), fps=25, crf=45,
                             gop=10, audio=False)
    data, out = tmpfs(200), tmp_path / "o.mp4"
    r = ffray("swap", src, "--processor", "identity", "-o", out, "--data-dir", data, "--crf", "0",
              "--chunk-seconds", "0.4")  # the real CLI, telemetry on: one line, no traceback
    line = one_error_line(r, "No space left on device")
    assert "cannot write" in line and "ffray resume" in line
    (job,) = (data / "jobs").iterdir()
    assert f"ffray resume {job.name}" in line
    assert not out.exists() and not list(tmp_path.glob(".o.mp4*"))  # nothing at the destination
    assert not [p for p in job.rglob("*") if ".tmp-" in p.name]  # no half-written temp files
    spec = json.loads((job / "job.json").read_text())  # the ledger is whole
    assert spec["status"] in ("failed", "running")
    kept = len(list((job / "chunks").glob("*.json")))  # chunks written before the disk filled
    assert kept < spec["chunks"]
    tmpfs.grow(data, 64 * 1024)
    res = _resume(data, job.name)
    assert json.loads((job / "job.json").read_text())["status"] == "done"
    assert res.chunks_run == spec["chunks"] - kept  # only what was missing ran again
    assert len(frames(out)) == 30


def test_full_destination_leaves_nothing_there_and_resume_assembles(tmpfs, tmp_path, cluster):
    from ffray.errors import StorageError
    from ffray.video.encode import EncodeSettings
    from tests.media import swap

    src = sample.write_video(tmp_path / "tiny.mp4", sample.pattern_frames(30), fps=25, crf=45,
                             gop=10, audio=False)
    dest, data = tmpfs(160), tmp_path / "data"
    with pytest.raises(StorageError) as e:
        swap(src, dest / "o.mp4", data, chunk_seconds=0.4, encode=EncodeSettings(crf=0),
             actors=1, gpu_per_actor=1, telemetry=False)
    line = str(e.value)
    assert "\n" not in line and line.startswith(f"cannot write the output {dest / 'o.mp4'}")
    assert "No space left on device" in line and "nothing was left there" in line
    assert list(dest.iterdir()) == []  # no partial output, no temp name, no lock file
    (job,) = (data / "jobs").iterdir()
    assert f"ffray resume {job.name}" in line
    spec = json.loads((job / "job.json").read_text())
    assert spec["status"] == "failed" and "No space left" in spec["error"]
    assert len(list((job / "chunks").glob("*.json"))) == spec["chunks"]  # the work is kept
    tmpfs.grow(dest, 64 * 1024)
    res = _resume(data, job.name)
    assert res.chunks_run == 0 and len(frames(dest / "o.mp4")) == 30  # only the assembly ran
