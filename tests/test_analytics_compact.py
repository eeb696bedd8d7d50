"""Compaction of the per-job span and job-record files of closed days, and writes after it."""

from __future__ import annotations

import json
from datetime import timedelta

from ffray.analytics.costs import job_costs
from ffray.analytics.source import Store
from ffray.cli import main
from ffray.telemetry.jobfiles import compact_closed_days
from ffray.telemetry.spans import write_job_record, write_spans
from tests.analytics_data import Chunk, Gpu, Job, write_store

GPU = Gpu("GPU-c0", "NVIDIA L4", "n0", 0, 24 << 30)


def costs(root) -> list[dict]:
    return sorted(job_costs(Store(root)).to_pylist(), key=lambda r: r["job_id"])


def test_compaction_keeps_every_row_and_a_rewritten_job_is_never_counted_twice(tmp_path, capsys):
    jobs = [Job(f"c-{i}", [GPU], [Chunk(5 + i), Chunk(3, failed_s=1 if i == 1 else None)]) for i in range(4)]
    write_store(tmp_path, jobs)  # 2026-11-18: a closed day
    before = costs(tmp_path)
    assert len(list((tmp_path / "spans").rglob("*.parquet"))) == 4
    assert main(["analyze", "compact", "--data-dir", str(tmp_path)]) == 0
    assert "2 day file(s) written" in capsys.readouterr().out
    spans = list((tmp_path / "spans").rglob("*.parquet"))
    records = list((tmp_path / "job_records").rglob("*.parquet"))
    assert len(spans) == len(records) == 1 and spans[0].name.startswith("compacted-")
    assert not list((tmp_path / "spans").glob("date=*/job=*"))  # the job folders went too
    assert costs(tmp_path) == before
    assert compact_closed_days(tmp_path) == []  # nothing left to merge

    # job c-2 is published again (a resume): its new spans and record replace the compacted ones
    s = Store(tmp_path)
    rows = s.rows("SELECT * FROM spans WHERE job_id = 'c-2' AND chunk = 0")
    rec = s.rows("SELECT * FROM jobs WHERE job_id = 'c-2'")[0]
    rows[0]["end"] = rows[0]["start"] + timedelta(seconds=2)  # only chunk 0 now, 2 s long
    write_spans(tmp_path, "c-2", rows)
    write_job_record(tmp_path, {**rec, "chunks": 1, "status": "failed"})
    after = {r["job_id"]: r for r in costs(tmp_path)}
    assert len(after) == 4
    assert Store(tmp_path).rows("SELECT count(*) AS n FROM spans WHERE job_id = 'c-2'")[0]["n"] == 1
    assert after["c-2"]["status"] == "failed" and after["c-2"]["chunks"] == 1
    assert after["c-2"]["gpu_seconds"] == 2.0
    others = {r["job_id"]: r for r in before if r["job_id"] != "c-2"}
    assert {k: after[k] for k in others} == others
    # merged again: the same answers from one file per day
    assert len(compact_closed_days(tmp_path)) == 2
    assert {r["job_id"]: r for r in costs(tmp_path)} == after


def test_today_is_not_compacted(tmp_path):
    import time

    write_store(tmp_path, [Job("t-0", [GPU], [Chunk(4)])])
    assert compact_closed_days(tmp_path, now=1_795_000_000 + 3600) == []  # still 2026-11-18 there
    assert len(compact_closed_days(tmp_path, now=time.time())) == 2
    out = json.loads(json.dumps(costs(tmp_path), default=str))
    assert out[0]["gpu_seconds"] == 4.0
