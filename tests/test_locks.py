"""One output, one job: a second job writing a file that a running job holds is refused before
any work; a lock dies with its holder; a job that cannot write its output ends failed, not running."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from ffray.cluster.lock import OutputLock, holder_of, lock_path
from ffray.errors import FFrayError

_HOLD = ("import sys, time; from pathlib import Path; from ffray.cluster.lock import OutputLock; "
         "l = OutputLock(Path(sys.argv[1]), 'job-A').__enter__(); print('held', flush=True); "
         "time.sleep(60)")


def test_a_held_output_is_refused_up_front_and_freed_when_the_holder_dies(media, data_dir, tmp_path):
    from ffray.cluster.jobs import SwapRequest, prepare_swap

    out = tmp_path / "o.mp4"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert holder_of(out) == "job-A"
        with pytest.raises(FFrayError, match="being written by job job-A") as e:
            prepare_swap(SwapRequest(input=str(media.cfr_silent), output=str(out)), data_dir)
        assert "\n" not in str(e.value)
        with pytest.raises(FFrayError, match="job-A"):
            OutputLock(out, "job-B").__enter__()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock_path(out).exists() and holder_of(out) is None  # the kernel dropped the lock
    with OutputLock(out, "job-C"):
        assert holder_of(out) == "job-C"
    assert not lock_path(out).exists()


def test_a_job_whose_output_appeared_ends_failed(cluster, media, data_dir, tmp_path):
    from ffray.cluster.jobs import SwapRequest, prepare_swap, run_job

    out = tmp_path / "o.mp4"
    ledger = prepare_swap(SwapRequest(input=str(media.cfr_silent), output=str(out), chunk_seconds=1.0,
                                      telemetry=False), data_dir)
    out.write_bytes(b"someone else's file")
    with pytest.raises(FFrayError, match="output exists"):
        run_job(ledger)
    spec = ledger.spec
    assert spec["status"] == "failed" and "output exists" in spec["error"]
    assert out.read_bytes() == b"someone else's file"
    assert not lock_path(out).exists()


def test_a_job_refused_by_the_lock_ends_failed(media, data_dir, tmp_path):
    from ffray.cluster.jobs import SwapRequest, prepare_swap, run_job

    out = tmp_path / "o.mp4"
    ledger = prepare_swap(SwapRequest(input=str(media.cfr_silent), output=str(out), telemetry=False),
                          data_dir)
    with OutputLock(out, "job-A"):  # another job took the output after this one was planned
        with pytest.raises(FFrayError, match="job-A"):
            run_job(ledger)
    spec = ledger.spec
    assert spec["status"] == "failed" and "job-A" in spec["error"]
    assert not out.exists()
