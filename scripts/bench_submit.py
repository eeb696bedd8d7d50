"""Per-video overhead of detached jobs: `ffray swap --address` vs `ffray submit` + `wait` with a
shared path, with `--upload` (+ `fetch`) and with S3 in/out (moto), on one clip, on a loopback
`ray start --head` (tests/rayhead.py, own network namespace). Prints one table row per run:
client return, first chunk done (the ledger's first chunk end, from the command's start), whole
video (until the output is where the user wants it).

    python scripts/bench_submit.py [--frames 60] [--rounds 2]
    python scripts/bench_submit.py --upload-mib 512   # upload throughput alone: a file of that
        size through the package store into a job's staging (the swap replaced by a stand-in)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ffray.video import sample  # noqa: E402
from tests.rayhead import start_head, wait_ready  # noqa: E402
from tests.test_submit_io import _MAKE_BUCKET, _PUT, CREDS  # noqa: E402

COMMON = ["--processor", "stamp", "--chunk-seconds", "0.5", "--actors", "1", "--no-telemetry"]


_UPLOAD = r"""
import os, shlex, sys, time
from pathlib import Path
from ffray.cluster.jobclient import Jobs
from ffray.cluster.staging import SHARED, UPLOAD, Staging
from ffray.cluster.submit import stage_wrapped
from ffray.cluster.transfer import upload
url, path = sys.argv[1], Path(sys.argv[2])
spec = Staging("bench-up", UPLOAD, SHARED, "blob.bin", "blob.out", size=path.stat().st_size)
child = ["python", "-c", "import sys, os; print('staged', os.path.getsize(sys.argv[4]))",
         "-m", "ffray", "swap"]
jobs = Jobs(url)
t0 = time.time()
jobs.submit_raw(shlex.join(stage_wrapped(child, spec, "bench-up")), "bench-up", {"ffray": "bench"})
secs = upload(jobs, "bench-up", spec, path)
jobs.wait(["bench-up"])
print(f"{spec.size / 2**20:.0f} MiB in {secs:.1f} s after submit at +{time.time() - t0 - secs:.1f} s: "
      f"{spec.size / 2**20 / secs:.0f} MiB/s; job log: {jobs.logs('bench-up').strip().splitlines()[-2:]}")
"""


def bench_upload(mib: int) -> int:
    root = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    blob = root / "blob.bin"
    with open(blob, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
    head = start_head(root)
    try:
        wait_ready(head)
        r = subprocess.run(head.argv(sys.executable, "-c", _UPLOAD, head.url, str(blob)),
                           env=head.env, capture_output=True, text=True, timeout=3600)
        print(r.stdout.strip() or r.stderr[-2000:])
    finally:
        head.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--upload-mib", type=int, default=0)
    a = ap.parse_args()
    if a.upload_mib:
        return bench_upload(a.upload_mib)
    root = Path(tempfile.mkdtemp(prefix="bench-submit-"))
    clip = sample.write_video(root / "clip.mp4", sample.pattern_frames(a.frames, 160, 120), fps=25,
                              gop=12, audio=False)
    head = start_head(root, extra_env=CREDS)
    moto = None
    try:
        wait_ready(head)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        moto = subprocess.Popen(head.argv(sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                          "-p", str(port)), env=head.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        q = f"?endpoint_override=127.0.0.1:{port}&scheme=http&allow_delayed_open=true"
        for _ in range(60):  # until moto answers
            if subprocess.run(head.argv(sys.executable, "-c", _MAKE_BUCKET, f"s3://bench{q}"),
                              env=head.env, capture_output=True).returncode == 0:
                break
            time.sleep(0.5)
        else:
            raise SystemExit("moto did not start")
        subprocess.run(head.argv(sys.executable, "-c", _PUT, f"s3://bench/in/clip.mp4{q}", str(clip)),
                       env=head.env, check=True)
        env = {**head.env, "FFRAY_HOME": str(head.home)}
        print("| round | path | client returns s | first chunk done s | whole video s |")
        print("|---|---|---|---|---|")
        for rnd in range(a.rounds):
            for mode in ("swap", "submit", "upload", "s3"):
                out = root / f"out-{mode}-{rnd}"
                out.mkdir()

                def ff(*args):
                    return subprocess.run(head.argv(sys.executable, "-m", "ffray", *map(str, args)),
                                          env=env, capture_output=True, text=True, timeout=600)
                t0 = time.time()
                if mode == "swap":
                    r = ff("swap", clip, "-o", out / "clip.mp4", *COMMON, "--address", "127.0.0.1:6379")
                    t_client = t_done = time.time() - t0
                else:
                    src = f"s3://bench/in/clip.mp4{q}" if mode == "s3" else clip
                    dst = f"s3://bench/out{rnd}{q}" if mode == "s3" else out
                    extra = ["--upload"] if mode == "upload" else []
                    r = ff("submit", src, "-o", dst, *extra, *COMMON, "--address", head.url)
                    t_client = time.time() - t0
                    job = r.stdout.split()[0]
                    r = ff("wait", job, "--address", head.url)
                    if mode in ("upload", "s3"):
                        r = ff("fetch", job, "-o", out / "clip.mp4", "--address", head.url)
                    t_done = time.time() - t0
                assert r.returncode == 0, r.stderr[-1500:]
                firsts = []  # chunk ends of the ledger this run created
                for jobf in (head.home / "jobs").glob("*/job.json"):
                    spec = json.loads(jobf.read_text())
                    if spec.get("created", 0) >= t0:
                        ends = [json.loads(p.read_text()).get("end")
                                for p in (jobf.parent / "chunks").glob("*.json")]
                        firsts += [e for e in ends if e]
                first = min(firsts) - t0 if firsts else float("nan")
                print(f"| {rnd + 1} | {mode} | {t_client:.1f} | {first:.1f} | {t_done:.1f} |",
                      flush=True)
    finally:
        if moto is not None:
            moto.kill()
            moto.wait()
        head.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
