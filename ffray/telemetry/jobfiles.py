"""Compaction of the per-job Parquet files of closed days: ``spans/date=D/job=<id>/spans.parquet``
and ``job_records/date=D/<id>.parquet`` become one ``date=D/compacted-<stamp>.parquet`` per day
and table (10,000 jobs are 20,000 small files otherwise; reading their footers dominates every
query).

Local data dirs only. Safe with concurrent readers the way ``ffray.telemetry.store.compact`` is
(a reader sees the job files or the merged file, never both), and with writers: compaction and
every job-file write take an exclusive ``flock`` on ``date=D/.lock``, and a write first removes
the job from any compacted file of its folder (``evict``), so a job published again (a resume,
or a job that runs across midnight) is never counted twice.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ffray.telemetry.store import replace_parts

PREFIX = "compacted-"
TABLES = {"spans": "job=*/spans.parquet", "job_records": "*.parquet"}


@contextmanager
def locked(folder: Path):
    """An exclusive lock on a ``date=`` folder (released when the holder exits, also by a crash)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _compacted(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"{PREFIX}*.parquet"))


def _job_files(folder: Path, table: str) -> list[Path]:
    return sorted(p for p in folder.glob(TABLES[table]) if not p.name.startswith((".", PREFIX)))


def _write(table: pa.Table, final: Path) -> None:
    tmp = final.with_name(f".{final.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, final)


def evict(folder: Path, job_id: str) -> None:
    """Remove ``job_id``'s rows from the compacted files of ``folder``. Call holding ``locked``."""
    for f in _compacted(folder):
        ids = pq.read_table(f, columns=["job_id"])["job_id"]
        if not pc.any(pc.equal(ids, job_id)).as_py():
            continue
        t = pq.read_table(f)
        rest = t.filter(pc.not_equal(t["job_id"], job_id))
        if rest.num_rows:
            _write(rest, f)
        else:
            f.unlink()


def compact_day(folder: Path, table: str, schema: pa.Schema) -> Path | None:
    """Merge a day's job files (and earlier compacted files) into one file."""
    with locked(folder):
        jobs, old = _job_files(folder, table), _compacted(folder)
        if not jobs and len(old) < 2:
            return None
        parts = [pq.read_table(p) for p in old + jobs]
        data = pa.concat_tables([_conform(t, schema) for t in parts])
        keys = [("job_id", "ascending")] + ([("chunk", "ascending"), ("attempt", "ascending")]
                                           if table == "spans" else [])
        data = data.sort_by(keys)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        final = replace_parts(data, old + jobs, folder / f"{PREFIX}{stamp}-{os.getpid()}.parquet",
                              row_group_size=1 << 20)
        if table == "spans":
            for p in jobs:
                shutil.rmtree(p.parent, ignore_errors=True)
        return final


def _conform(t: pa.Table, schema: pa.Schema) -> pa.Table:
    cols = [t[f.name].cast(f.type) if f.name in t.column_names else pa.nulls(t.num_rows, f.type)
            for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)


def compact_closed_days(target, now: float | None = None) -> list[Path]:
    """Compact every day before today (UTC) of ``spans`` and ``job_records`` under a local data
    dir; returns the merged files. Days already compacted cost one directory listing."""
    from ffray.telemetry.schema import JOB, SPAN

    if "://" in str(target):
        return []
    today = datetime.fromtimestamp(time.time() if now is None else now, tz=timezone.utc).strftime("%Y-%m-%d")
    out = []
    for table, schema in (("spans", SPAN), ("job_records", JOB)):
        for d in sorted((Path(target) / table).glob("date=*")):
            if d.is_dir() and d.name[5:] < today and (_job_files(d, table) or len(_compacted(d)) > 1):
                merged = compact_day(d, table, schema)
                if merged:
                    out.append(merged)
    return out
