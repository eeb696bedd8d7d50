"""Chunk spans: one row per chunk attempt, written to ``<data-dir>/spans`` as Parquet (their
attribution to GPU samples is ``ffray.analytics.costs.attribute``), and job records."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa

from ffray.telemetry.schema import SCHEMA_VERSION, SPAN


def _ts(x: float | None):
    return None if x is None else datetime.fromtimestamp(x, tz=timezone.utc)


def span_rows(job_id: str, stats: list[dict], events: list[dict]) -> list[dict]:
    """Rows for finished attempts (from chunk stats) and failed ones (from ledger events)."""
    rows = []
    for s in stats:
        st = s.get("stages", {})
        uuids = s.get("gpu_uuids") or [None]
        rows.append({
            "schema_version": SCHEMA_VERSION, "job_id": job_id, "chunk": s["chunk"],
            "attempt": s["attempt"], "status": "done",
            "node": s.get("node") or s.get("node_id"), "ray_node": s.get("node_id"),
            "gpu_uuid": uuids[0], "pid": s.get("pid"), "actor_id": s.get("actor_id"),
            "start": _ts(s["start"]), "end": _ts(s["end"]), "frames": s.get("frames"),
            "faces_detected": int(st.get("faces_detected", 0)),
            "faces_swapped": int(st.get("faces_swapped", 0)), "decode_s": s.get("decode_s"),
            "infer_s": s.get("process_s"), "encode_s": s.get("encode_s"),
            "gpus": s.get("gpus")})
    for e in events:
        if e.get("kind") == "attempt_failed":
            # where it ran (the worker's node, GPU, process), recorded since the failure event
            # carries it; older ledgers' failures have no place (their lane is "failed attempts")
            rows.append({"schema_version": SCHEMA_VERSION, "job_id": job_id, "chunk": e["chunk"],
                         "attempt": e["attempt"], "status": "failed",
                         "node": e.get("node") or e.get("node_id"), "ray_node": e.get("node_id"),
                         "gpu_uuid": e.get("gpu_uuid"), "pid": e.get("pid"), "actor_id": e.get("actor_id"),
                         "start": _ts(e.get("submitted")), "end": _ts(e.get("time"))})
    return rows


def write_spans(target, job_id: str, rows: list[dict]) -> str | None:
    """Write a job's spans (all attempts) to ``<target>/spans/date=…/job=<id>/spans.parquet``;
    ``target`` is the data dir or a pyarrow filesystem URI."""
    from ffray.telemetry.sink import Sink, join

    if not rows:
        return None
    table = pa.Table.from_pylist(rows, schema=SPAN)
    first = min(r["start"] for r in rows if r["start"] is not None)
    sink = Sink(join(target, "spans"))
    return _write_job_file(sink, f"date={first.strftime('%Y-%m-%d')}", f"job={job_id}/spans.parquet",
                           table, job_id)


def _write_job_file(sink, day: str, name: str, table: pa.Table, job_id: str) -> str:
    """Write a job's file into ``day``; in a local folder under its lock, after taking the job
    out of the day's compacted files (see ``ffray.telemetry.jobfiles``)."""
    if not sink.local:
        return sink.write_parquet(table, f"{day}/{name}")
    from pathlib import Path

    from ffray.telemetry.jobfiles import evict, locked

    folder = Path(sink.path(day))
    with locked(folder):
        evict(folder, job_id)
        return sink.write_parquet(table, f"{day}/{name}")


def submission_id(environ) -> str | None:
    """The Ray Jobs submission id of the driver this runs in (``ffray submit``), from the job
    config Ray's job supervisor hands its driver (``RAY_JOB_CONFIG_JSON_ENV_VAR``: metadata
    ``job_submission_id``); None outside a Ray Job."""
    import json

    try:
        meta = json.loads(environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}").get("metadata") or {}
    except (ValueError, AttributeError):
        return None
    sid = meta.get("job_submission_id") if isinstance(meta, dict) else None
    return str(sid) if sid else None


def job_record(spec: dict, chunks_done: int, submission: str | None = None) -> dict:
    """The job's row for ``job_records`` (see ``ffray.telemetry.schema.JOB``) from its ledger spec;
    ``submission``: the Ray Jobs submission id when the driver runs as one (``ffray submit``)."""
    from pathlib import Path

    video = spec.get("video") or {}
    rate = video.get("avg_frame_rate")
    try:
        fps = float(eval_rate(rate)) if rate else None
    except (ValueError, ZeroDivisionError):
        fps = None
    proc = spec.get("processor") or {}
    return {"schema_version": SCHEMA_VERSION, "job_id": spec["job_id"], "status": spec.get("status"),
            "created": _ts(spec.get("created")), "started": _ts(spec.get("started")),
            "ended": _ts(spec.get("ended")), "input": Path(spec.get("input", "")).name,
            "width": video.get("width"), "height": video.get("height"), "fps": fps,
            "frames": spec.get("frames"), "chunks": spec.get("chunks"), "chunks_done": chunks_done,
            "retries": spec.get("retries"), "wall_s": spec.get("wall_s"),
            "processor": proc.get("kind"), "pipeline": spec.get("pipeline"),
            "actors": spec.get("actors_used", spec.get("actors")),
            "gpu_per_actor": spec.get("gpu_per_actor_used", spec.get("gpu_per_actor")),
            "error": spec.get("error"), "submission_id": submission}


def eval_rate(rate) -> float:
    """``30000/1001`` (or a number) as a float."""
    if isinstance(rate, (int, float)):
        return float(rate)
    num, _, den = str(rate).partition("/")
    return float(num) / float(den or 1)


def write_job_record(target, record: dict) -> str:
    """Write (or rewrite) ``<target>/job_records/date=<created>/<job-id>.parquet``."""
    from ffray.telemetry.schema import JOB
    from ffray.telemetry.sink import Sink, join

    created = record["created"] or datetime.now(timezone.utc)
    return _write_job_file(Sink(join(target, "job_records")), f"date={created.strftime('%Y-%m-%d')}",
                           f"{record['job_id']}.parquet", pa.Table.from_pylist([record], schema=JOB),
                           record["job_id"])


def publish(ledger) -> None:
    """Write a job's spans (every attempt so far) and its job record where its telemetry goes
    (the data dir or the job's filesystem URI); rewritten whole each time. Never raises: a job must
    not fail because its analytics copy could not be written."""
    import logging
    import os

    spec = ledger.spec
    target = spec.get("telemetry_target") or ledger.root.parent.parent
    try:
        stats = ledger.chunk_stats()  # also of a done job whose chunk files were deleted
        write_spans(target, ledger.job_id, span_rows(ledger.job_id, stats, ledger.events()))
        write_job_record(target, job_record(spec, len(stats), submission_id(os.environ)))
    except Exception as e:  # noqa: BLE001
        logging.getLogger("ffray").warning("could not write spans/job record of %s: %s", ledger.job_id, e)

