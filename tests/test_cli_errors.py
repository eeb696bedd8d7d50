"""Bad input: one clear line, non-zero exit, nothing written, existing files untouched."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import pytest

from ffray.cli import main
from ffray.video import sample
from tests.media import audio_only_file, write_silence


def run_cli(capsys, *args) -> tuple[int, str]:
    rc = main([str(a) for a in args])
    err = capsys.readouterr().err
    return rc, err


def assert_one_line_error(rc: int, err: str, needle: str) -> None:
    assert rc != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("ffray: error:") and needle in lines[0], lines[0]
    assert "Traceback" not in err


def no_leftovers(folder: Path, keep: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == keep


@pytest.fixture
def work(tmp_path, media):
    d = tmp_path / "w"
    d.mkdir()
    shutil.copy(media.cfr_silent, d / "in.mp4")
    shutil.copy(media.face, d / "face.jpg")
    return d


def _zero_frame_video(path: Path) -> Path:
    """A Matroska file whose video track has no frames (its audio track keeps it readable)."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        write_silence(out, out.add_stream("aac", rate=48000, layout="stereo"))
    return path


CASES = {
    "missing input": (lambda d: [d / "nope.mp4", "-s", d / "face.jpg", "-o", d / "o.mp4"],
                      "input not found"),
    "input is a folder": (lambda d: [d, "-s", d / "face.jpg", "-o", d / "o.mp4"], "directory"),
    "not a media file": (lambda d: [d / "face.jpg", "-s", d / "face.jpg", "-o", d / "o.mp4"],
                         "still image"),
    "garbage bytes": (lambda d: [_write(d / "junk.mp4", os.urandom(5000)), "-s", d / "face.jpg",
                                 "-o", d / "o.mp4"], "not a readable media file"),
    "truncated": (lambda d: [_write(d / "cut.mp4", (d / "in.mp4").read_bytes()[:4000]), "-s",
                             d / "face.jpg", "-o", d / "o.mp4"], "cannot open"),
    "no video stream": (lambda d: [audio_only_file(d / "a.m4a"), "-s", d / "face.jpg", "-o",
                                   d / "o.mp4"], "no video stream"),
    "zero frames": (lambda d: [_zero_frame_video(d / "zero.mkv"), "-s", d / "face.jpg", "-o",
                               d / "o.mp4"], "no video frames"),
    "output is input": (lambda d: [d / "in.mp4", "-s", d / "face.jpg", "-o", d / "in.mp4",
                                   "--overwrite"], "output is the input"),
    "unwritable destination": (lambda d: [d / "in.mp4", "-s", d / "face.jpg", "-o",
                                          d / "missing-dir" / "o.mp4"], "does not exist"),
    "destination under a file": (lambda d: [d / "in.mp4", "-s", d / "face.jpg", "-o",
                                            d / "face.jpg" / "o.mp4"], "does not exist"),
    "source missing": (lambda d: [d / "in.mp4", "-s", d / "ghost.jpg", "-o", d / "o.mp4"],
                       "source face image not found"),
    "source not an image": (lambda d: [d / "in.mp4", "-s", d / "in.mp4", "-o", d / "o.mp4"],
                            "not a readable image"),
    "bad extension": (lambda d: [d / "in.mp4", "-s", d / "face.jpg", "-o", d / "o.avi"],
                      "unsupported output extension"),
    "bad codec": (lambda d: [d / "in.mp4", "-s", d / "face.jpg", "-o", d / "o.mp4", "--codec",
                             "vp8"], "unknown --codec"),
    "bad trim": (lambda d: [d / "in.mp4", "-s", d / "face.jpg", "-o", d / "o.mp4",
                            "--trim-start", "99"], "selects no frames"),
    "no source face": (lambda d: [d / "in.mp4", "-o", d / "o.mp4"], "needs a source face"),
    "bad processor": (lambda d: [d / "in.mp4", "-s", d / "face.jpg", "-o", d / "o.mp4",
                                 "--processor", "nosuch"], "unknown processor"),
    "no NVENC here": (lambda d: [d / "in.mp4", "-s", d / "face.jpg", "-o", d / "o.mp4",
                                 "--codec", "h264_nvenc"], "use --codec h264 or hevc"),
    "misspelt face option": (lambda d: [d / "in.mp4", "-s", d / "face.jpg", "-o", d / "o.mp4",
                                        "--processor-opt", "mask_blurr=0.2"],
                             "unknown face-swap option 'mask_blurr' (did you mean mask_blur?)"),
    "processor option it lacks": (lambda d: [d / "in.mp4", "-o", d / "o.mp4", "--processor", "stamp",
                                             "--processor-opt", "colour=red"],
                                  "processor 'stamp'"),
    "bad smoothing": (lambda d: [d / "in.mp4", "-s", d / "face.jpg", "-o", d / "o.mp4",
                                 "--smooth", "fast"], "--smooth 'fast': give CUTOFF"),
    "negative smoothing": (lambda d: [d / "in.mp4", "-s", d / "face.jpg", "-o", d / "o.mp4",
                                      "--smooth", "1,-2"], "--smooth values must be >= 0"),
    "bad slots": (lambda d: [d / "in.mp4", "-s", d / "face.jpg", "-o", d / "o.mp4", "--slots", "0"],
                  "--slots must be >= 1"),
    "bad chunk taper": (lambda d: [d / "in.mp4", "-s", d / "face.jpg", "-o", d / "o.mp4",
                                   "--chunk-taper", "1.5"], "--chunk-taper must be between 0 and 1"),
    "bad encoder threads": (lambda d: [d / "in.mp4", "-s", d / "face.jpg", "-o", d / "o.mp4",
                                       "--encoder-threads", "99"], "--encoder-threads"),
}


def _write(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_cleanly(capsys, work, tmp_path, case):
    make_args, needle = CASES[case]
    args = make_args(work)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in work.iterdir()
              if p.is_file()}
    rc, err = run_cli(capsys, "swap", *args, "--data-dir", tmp_path / "data")
    assert_one_line_error(rc, err, needle)
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in work.iterdir()
             if p.is_file()}
    assert after == before  # nothing new, nothing changed (inputs we made stay as they were)
    assert not (tmp_path / "data" / "jobs").exists() or not any((tmp_path / "data" / "jobs").iterdir())


def test_nvenc_on_a_cluster_without_it_fails_at_worker_setup_before_any_chunk(cluster, media, data_dir,
                                                                            tmp_path):
    """Attached to a cluster, the driver cannot test the nodes' GPUs itself: the workers open the
    encoder while they set up, so the job fails in one line before any chunk is processed."""
    from ffray.errors import JobFailed
    from ffray.video.encode import EncodeSettings
    from tests.media import swap

    with pytest.raises(JobFailed) as e:
        swap(media.cfr_silent, tmp_path / "o.mp4", data_dir, encode=EncodeSettings(codec="h264_nvenc"),
             address="attached", gpu_per_actor=1, actors=2)
    msg = str(e.value)
    assert msg.startswith("worker setup failed:") and "h264_nvenc" in msg and "\n" not in msg
    job = next((data_dir / "jobs").iterdir())
    assert not list((job / "chunks").glob("*.json")) and not (tmp_path / "o.mp4").exists()


def test_existing_output_is_untouched_without_overwrite(capsys, work, tmp_path):
    out = work / "o.mp4"
    out.write_bytes(b"precious")
    rc, err = run_cli(capsys, "swap", work / "in.mp4", "-s", work / "face.jpg", "-o", out,
                      "--data-dir", tmp_path / "data")
    assert_one_line_error(rc, err, "--overwrite")
    assert out.read_bytes() == b"precious"


def test_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["swap", "in.mp4"])  # -o missing
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "required" in err


def test_unknown_job_for_resume(capsys, tmp_path):
    rc, err = run_cli(capsys, "resume", "no-such-job", "--data-dir", tmp_path)
    assert_one_line_error(rc, err, "no job 'no-such-job'")


def test_probe_prints_json_and_errors_cleanly_in_a_real_process(media, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "ffray", "probe", str(media.vfr_mkv)],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0
    import json

    js = json.loads(ok.stdout)
    assert js["video"]["vfr"] is True and js["video"]["frame_count"] == 70
    bad = subprocess.run([sys.executable, "-m", "ffray", "probe", str(tmp_path / "missing.mp4")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "input not found" in bad.stderr and "Traceback" not in bad.stderr


def test_truncated_faststart_file_is_refused(capsys, work, tmp_path):
    # moov first, mdat cut short: the index says more than the file holds
    src = sample.write_video(tmp_path / "fs.mp4", sample.pattern_frames(40), fps=25, audio=False)
    fixed = tmp_path / "fs-faststart.mp4"
    with av.open(str(src)) as i, av.open(str(fixed), "w", options={"movflags": "+faststart"}) as o:
        s = o.add_stream_from_template(i.streams.video[0])
        for p in i.demux(i.streams.video[0]):
            if p.size:
                p.stream = s
                o.mux(p)
    cut = _write(work / "cut.mp4", fixed.read_bytes()[: fixed.stat().st_size * 2 // 3])
    rc, err = run_cli(capsys, "swap", cut, "-s", work / "face.jpg", "-o", work / "o.mp4",
                      "--data-dir", tmp_path / "data")
    assert_one_line_error(rc, err, "truncated or corrupt")
    assert not (work / "o.mp4").exists()
