"""Detached jobs whose files are not on a shared path, on a loopback `ray start --head` (own
network namespace where allowed; tests/rayhead.py): a local video uploaded in pieces through the
Jobs API and its output fetched back; S3 input and output (a moto server in the head's network)
read and written by the job; a queued job cancelled; a cancelled job resumed as a new Ray Job."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest

from ffray.cluster.staging import digest_key, package_path, piece_key
from ffray.processors import read_stamp
from ffray.video import sample
from tests.media import frames
from tests.procs import kill_and_wait
from tests.rayhead import start_head, wait_ready

pytestmark = pytest.mark.slow
COMMON = ("--chunk-seconds", "0.5", "--no-telemetry", "--actors", "1")
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
         "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
PIECE = 8192  # small upload pieces: a 30-frame clip goes up in several, through the window


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    h = start_head(tmp_path_factory.mktemp("head"), extra_env=CREDS)
    h.env = {**h.env, "FFRAY_UPLOAD_PIECE_BYTES": str(PIECE)}
    try:
        wait_ready(h)
        yield h
    finally:
        h.stop()


def _py(head, code: str, *args) -> str:
    """A Python snippet in the head's network (where the moto server and dashboard listen)."""
    r = subprocess.run(head.argv(sys.executable, "-c", code, *map(str, args)), env=head.env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


_PACKAGES = ("import sys\nfrom ffray.cluster.jobclient import Jobs\nj = Jobs(sys.argv[1])\n"
             "print(sum(j.has_package(p) for p in sys.argv[2:]))\n")


def test_upload_runs_on_the_cluster_copy_and_fetch_brings_the_output_back(head, tmp_path):
    here = tmp_path / "laptop"
    here.mkdir()
    clip = sample.write_video(here / "a.mp4", sample.pattern_frames(30, 160, 120), fps=25, gop=12,
                              audio=False)
    face = here / "face.jpg"
    cv2.imwrite(str(face), np.full((64, 64, 3), 128, np.uint8))
    size = clip.stat().st_size
    assert size > 3 * PIECE  # several pieces, more than the window
    out = tmp_path / "got"
    r = head.ffray("submit", clip, "-o", out, "--upload", "-s", face, "--processor", "stamp",
                   *COMMON, "--address", head.url, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    job = r.stdout.split()[0]
    assert r.stdout.splitlines() == [f"{job}  submitted  {clip} -> {out / 'a.mp4'}"]
    assert "uploaded" in r.stderr and f"ffray fetch {job}" in r.stderr
    # The job has its own copy now: the client's files can go.
    clip.rename(here / "moved.mp4")
    face.unlink()
    keys = [package_path(piece_key(job, k)) for k in range(size // PIECE + 1)]
    assert _py(head, _PACKAGES, head.url, *keys, package_path(digest_key(job))).strip() == "0"

    r = head.ffray("wait", job, "--address", head.url, timeout=240)
    assert r.returncode == 0, r.stdout + head.ffray("logs", job, "--address", head.url).stdout[-3000:]
    assert not (out / "a.mp4").exists()  # nothing comes back until fetched

    (out / "a.mp4").write_bytes(b"mine")
    r = head.ffray("fetch", job, "--address", head.url)
    assert r.returncode == 2 and "exists" in r.stderr and "Traceback" not in r.stderr
    assert (out / "a.mp4").read_bytes() == b"mine"  # untouched without --overwrite
    r = head.ffray("fetch", job, "--overwrite", "--address", head.url)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == str(out / "a.mp4")
    assert [read_stamp(img) for _, img in frames(out / "a.mp4")] == list(range(30))
    other = tmp_path / "other.mp4"
    assert head.ffray("fetch", job, "-o", other, "--address", head.url).returncode == 0
    assert other.read_bytes() == (out / "a.mp4").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4"]  # no temp file left
    assert not (head.home / "staging" / job).exists()  # staged input freed with the job
    assert (head.home / "results" / job / "a.mp4").is_file()


@pytest.fixture
def s3(head):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(head.argv(sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                      str(port)), env=head.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    # allow_delayed_open: small objects go up as one PutObject (moto fails pyarrow's
    # CompleteMultipartUpload; real S3 does not), as the telemetry sink does
    q = f"?endpoint_override=127.0.0.1:{port}&scheme=http&allow_delayed_open=true"
    try:
        deadline = time.time() + 30
        while True:
            r = subprocess.run(head.argv(sys.executable, "-c", _MAKE_BUCKET, f"s3://vids{q}"),
                               env=head.env, capture_output=True, text=True, timeout=60)
            if r.returncode == 0:
                break
            assert time.time() < deadline, r.stderr[-1500:]
            time.sleep(0.5)
        yield q
    finally:
        kill_and_wait([psutil.Process(proc.pid)])


_MAKE_BUCKET = ("import sys, pyarrow.fs as f\nfs, p = f.FileSystem.from_uri(sys.argv[1] + "
                "'&allow_bucket_creation=true')\nfs.create_dir(p)\n")
_PUT = ("import sys, pyarrow.fs as f\nfs, p = f.FileSystem.from_uri(sys.argv[1])\n"
        "with open(sys.argv[2], 'rb') as a, fs.open_output_stream(p) as b:\n"
        "    b.write(a.read())\n")
_LIST = ("import sys, pyarrow.fs as f\nfs, p = f.FileSystem.from_uri(sys.argv[1])\n"
         "print('\\n'.join(sorted(i.path for i in fs.get_file_info(f.FileSelector(p, recursive=True)))))\n")


def test_s3_input_and_output_are_read_and_written_by_the_job(head, s3, tmp_path):
    clip = sample.write_video(tmp_path / "b.mp4", sample.pattern_frames(25, 160, 120, seed=3),
                              fps=25, gop=12)
    _py(head, _PUT, f"s3://vids/in/b.mp4{s3}", clip)
    src, outdir = f"s3://vids/in/b.mp4{s3}", f"s3://vids/out{s3}"
    r = head.ffray("submit", src, f"s3://vids/in/none.mp4{s3}", "-o", outdir, "--processor",
                   "stamp", *COMMON, "--address", head.url, timeout=60)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert lines[1].split()[0] == "-" and "no such file" in lines[1]
    job = lines[0].split()[0]
    r = head.ffray("wait", job, "--address", head.url, timeout=240)
    assert r.returncode == 0, r.stdout + head.ffray("logs", job, "--address", head.url).stdout[-3000:]
    assert _py(head, _LIST, f"s3://vids/out{s3}").split() == ["vids/out/b.mp4"]  # no temp key left
    got = tmp_path / "fetched.mp4"
    r = head.ffray("fetch", job, "-o", got, "--address", head.url)
    assert r.returncode == 0, r.stderr[-2000:]
    assert [read_stamp(img) for _, img in frames(got)] == list(range(25))
    assert not (head.home / "staging" / job).exists()
    r = head.ffray("submit", src, "-o", outdir, "--processor", "stamp", *COMMON,
                   "--address", head.url, timeout=60)  # its output exists now: refused up front
    assert r.returncode == 2 and r.stdout.split()[0] == "-" and "output exists" in r.stderr


def test_cancel_a_queued_job_and_resume_a_cancelled_one(head, tmp_path):
    clips = tmp_path / "in"
    clips.mkdir()
    for n, seed in (("a", 5), ("b", 6)):
        sample.write_video(clips / f"{n}.mp4", sample.pattern_frames(40, 160, 120, seed=seed),
                           fps=25, gop=12, audio=False)
    out = tmp_path / "out"
    r = head.ffray("submit", clips / "a.mp4", clips / "b.mp4", "-o", out, "--max-running", "1",
                   "--processor", "tests.procs:Slow", "--processor-opt", "delay=0.5", *COMMON,
                   "--address", head.url, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    ids = [x.split()[0] for x in r.stdout.splitlines()]
    t0 = time.time()
    deadline = time.time() + 120
    while time.time() < deadline:  # one runs (frames done), the other waits for the slot
        listing = {x.split()[0]: x for x in head.ffray("jobs", "--address", head.url).stdout.splitlines()}
        lines = [listing[j] for j in ids]
        if [x.split()[1] for x in lines] in (["running", "queued"], ["queued", "running"]) and \
                any(" frames " in x and "frames (0 %)" not in x for x in lines):
            break
        time.sleep(1)
    a, b = ids if lines[0].split()[1] == "running" else ids[::-1]
    assert listing[b].split()[1] == "queued", lines
    assert " running " in listing[a] and "1 node(s), 0 GPU(s)" in listing[a], listing[a]
    t_run = time.time() - t0
    r = head.ffray("cancel", b, a, "--address", head.url, timeout=90)  # queued, and running
    assert r.returncode == 0 and r.stdout.split() == [b, "cancelled", a, "cancelled"], \
        r.stdout + r.stderr[-1500:]

    t_cancel = time.time() - t0 - t_run
    r = head.ffray("resume", b, "--address", head.url)
    assert r.returncode == 2 and "never started" in r.stderr  # nothing of it ran: no ledger
    r = head.ffray("resume", a, "--address", head.url, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    new, *rest = r.stdout.split()
    assert new != a and rest == ["submitted", "resume", "of", a, "->", listing[a].split(" -> ")[-1]]
    r = head.ffray("wait", new, "--address", head.url, timeout=240)
    assert r.returncode == 0, r.stdout + head.ffray("logs", new, "--address", head.url).stdout[-3000:]
    print(f"\nqueued/resume: running with frames after {t_run:.1f} s, cancel took {t_cancel:.1f} s, "
          f"resume to succeeded {time.time() - t0 - t_run - t_cancel:.1f} s")
    name_a, name_b = (Path(listing[j].split(" -> ")[-1]).name for j in (a, b))
    assert r.stdout.split() == [new, "succeeded"]
    assert [read_stamp(img) for _, img in frames(out / name_a)] == list(range(40))
    assert not (out / name_b).exists()
    ledger = next(json.loads(p.read_text()) for p in head.home.glob("jobs/*/job.json")
                  if json.loads(p.read_text())["input"] == str(clips / name_a))
    assert ledger["status"] == "done"
    assert 0 < ledger["chunks_run"] < ledger["chunks"], ledger  # only the missing chunks ran
