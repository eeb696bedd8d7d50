"""The dashboard's data access: every read goes through ``ffray.analytics`` (DuckDB over the
Parquet layout); nothing here touches NVML. The browser never names a file: it names a job id,
which is checked against ``JOB_ID`` and looked up in the store."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

from dashboard.figures import gpu_label
from ffray.analytics import alertstate, metrics, queries
from ffray.analytics.costs import chunk_costs, job_costs
from ffray.analytics.source import VIEWS, Store, target_missing

JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
REPORT_FILES = {"trend.png": "image/png", "summary.md": "text/markdown; charset=utf-8",
                "summary.json": "application/json"}


@dataclass(frozen=True)
class Data:
    target: str  # data dir or filesystem URI holding telemetry/, spans/, job_records/
    ledgers: Path | None = None  # local data dir holding jobs/<id>/ (reports)
    bound: Store | None = None  # set inside ``session()``: every call shares one connection
    classes: tuple = ()  # GPU classes (ffray.analytics.gpus.load_classes); () = the defaults
    # lists ffray's Ray Jobs (``ffray.analytics.submitted.lister``, from ``--jobs-address``)
    submissions: Callable[[], list] | None = None
    # the last capacity job table and the store signature it was computed at (shared by the
    # copies ``session()`` makes; one entry, so bounded)
    memo: dict = field(default_factory=dict, compare=False, repr=False)

    def missing(self) -> bool:
        """True when there is no data dir at all (a URI is taken as present)."""
        return target_missing(self.target)

    @contextmanager
    def store(self):
        if self.bound is not None:
            yield self.bound
            return
        s = Store(self.target)
        try:
            yield s
        finally:
            s.close()

    @contextmanager
    def session(self):
        """This data source with one store for all calls inside the ``with`` (one page render)."""
        with self.store() as s:
            yield replace(self, bound=s)

    def status(self) -> dict:
        """Which tables have data: ``{"missing": bool, "gpu": bool, "jobs": bool, ...}``."""
        if self.missing():
            return {"missing": True, **{k: False for k in VIEWS}}
        with self.store() as s:
            return {"missing": False, **s.present}

    # cluster page
    def recording(self) -> bool:
        """Whether a recorder may still add samples to this data: an open journal in a local data
        dir's telemetry (a recorder keeps one per table while its window is open, and rolls it to
        Parquet when it stops), or a URI (the journals are on the recorders' nodes)."""
        from ffray.analytics.source import is_uri

        if is_uri(self.target):
            return True
        return any((Path(self.target) / "telemetry").glob("*/.journal/**/*.arrow"))

    def extent(self) -> tuple[datetime, datetime] | None:
        """First and last sample of GPU or host telemetry (a CPU-only cluster has host rows only)."""
        with self.store() as s:
            return metrics.cluster_extent(s)

    def gpu_trends(self, start, end, bucket_s: int, uuids=(), nodes=(), keys=metrics.PANELS):
        with self.store() as s:
            return metrics.gpu_trends(s, start, end, bucket_s, uuids, nodes, keys)

    def hosts(self, start=None, end=None) -> list[dict]:
        with self.store() as s:
            return metrics.host_inventory(s, start, end)

    def host_trends(self, start, end, bucket_s: int, nodes=()):
        with self.store() as s:
            return metrics.host_trends(s, start, end, bucket_s, nodes)

    def worker_trends(self, start, end, bucket_s: int, nodes=(), labelled: bool = True):
        with self.store() as s:
            return metrics.worker_trends(s, start, end, bucket_s, nodes, labelled=labelled)

    def reason_trends(self, start, end, bucket_s: int, uuids=(), nodes=()):
        with self.store() as s:
            return metrics.reason_trends(s, start, end, bucket_s, uuids, nodes)

    def proc_trends(self, start, end, bucket_s: int, uuids=(), nodes=()):
        with self.store() as s:
            return metrics.proc_trends(s, start, end, bucket_s, uuids, nodes)

    def episodes(self, now: datetime, start=None, end=None, last_seen=None,
                 stale_s: float = alertstate.STALE_S) -> list:
        """Alert episodes (``ffray.analytics.alertstate.Episode``), newest first."""
        with self.store() as s:
            return alertstate.episodes(s, now, start, end, last_seen=last_seen, stale_s=stale_s)

    def inventory(self, start=None, end=None) -> list[dict]:
        with self.store() as s:
            return queries.inventory(s, start, end)

    # jobs
    def jobs(self) -> list[dict]:
        """Every job record with its totals and cost (``gpus.with_prices``: GPU-seconds x the
        class's $/GPU-hour; None where the GPU or its price is unknown)."""
        from ffray.analytics.gpus import with_prices

        with self.store() as s:
            return with_prices(job_costs(s), self.gpu_classes()).to_pylist()

    def submitted(self, records: list[dict] | None = None):
        """(``analytics.submitted.Submitted`` rows, None) for the cluster's Jobs API, ([], why)
        when it cannot be read, or None when the dashboard was given no ``--jobs-address``."""
        from ffray.analytics.submitted import submitted

        if self.submissions is None:
            return None
        return submitted(self.submissions, self.jobs() if records is None else records)

    def job_host(self, job_id: str):
        """(host CPU/memory table of the job's nodes, bucket seconds)."""
        from ffray.analytics.jobview import job_host_trends

        with self.store() as s:
            return job_host_trends(s, job_id)

    def job_detail(self, job_id: str):
        """(job row, chunk rows, GPU trend table, bucket seconds, {uuid: label}) or None for an
        unknown job."""
        if not JOB_ID.match(job_id or ""):
            return None
        with self.store() as s:
            attempts = chunk_costs(s, job_id)
            rows = job_costs(s, job_id=job_id, chunks=attempts).to_pylist()
            if not rows:
                return None
            chunks = attempts.to_pylist()
            w = queries.window_of(chunks)
            trend, bucket = queries.job_trends(s, job_id, window=w or {"gpu_uuids": None})
            inv = queries.inventory(s, w["start"], w["end"]) if w else []
        used = set(w["gpu_uuids"] or []) if w else set()
        labels = {g["gpu_uuid"]: gpu_label(g["gpu_uuid"], g["node"], g["gpu_index"])
                  for g in inv if g["gpu_uuid"] in used}
        for c in chunks:
            if c["gpu_uuid"] and c["gpu_uuid"] not in labels:
                labels[c["gpu_uuid"]] = gpu_label(c["gpu_uuid"], c["node"])
        return rows[0], chunks, trend, bucket, labels

    # capacity
    def gpu_classes(self) -> list[dict]:
        from ffray.analytics.gpus import load_classes

        return list(self.classes) or load_classes()

    def capacity(self, refit: bool = False, deadline_s: float | None = None, extrapolate: bool = False):
        """(model dict, where it came from, fit rows, right-sizing rows, summary). Uses the model
        ``ffray analyze capacity`` cached in the data dir unless ``refit``; a refit here is not
        saved (the dashboard only reads)."""
        from ffray.analytics.capacity import (
            CapacityModel,
            fit_jobs,
            job_table,
            load_model,
            model_path,
        )
        from ffray.analytics.cli import fit_rows
        from ffray.analytics.rightsize import right_size

        classes = self.gpu_classes()
        cached = None if refit or self.ledgers is None else load_model(model_path(self.ledgers))
        with self.store() as s:
            # the jobs' costs join every span to the GPU samples (0.8 s on a 24 h x 64-GPU store):
            # computed again only when a file behind them changed
            key = (s.signature("spans", "jobs", "gpu", "gpu_proc"), repr(classes))
            if self.memo.get("capacity_key") != key:
                self.memo.update(capacity_key=key, capacity_jobs=job_table(s, classes))
            jobs = self.memo["capacity_jobs"]
            if cached is not None:
                model, source = cached, f"cached model of {cached.meta.get('fitted_at', '?')}"
            else:
                model = fit_jobs(jobs, classes, meta={"since": None, "processor": "faceswap"})
                source = "fitted now from the store (not saved; `ffray analyze capacity` saves it)"
            rows, summary = right_size(jobs, model, classes, deadline_s=deadline_s, extrapolate=extrapolate)
        assert isinstance(model, CapacityModel)
        return model.to_dict(), source, fit_rows(model), rows, summary

    def predict(self, model: dict, frames: int, width: int, height: int, faces: float, gpu=None,
                gpus: int = 1, extrapolate: bool = False) -> list[dict]:
        from ffray.analytics.capacity import CapacityModel, predict

        return predict(CapacityModel.from_dict(model), self.gpu_classes(), frames, width, height, faces,
                       gpu=gpu, gpus=gpus, extrapolate=extrapolate)

    def report_file(self, job_id: str, name: str) -> Path | None:
        """A job's report file (``ffray.analytics.report``), only for a known job id and a known
        file name."""
        if self.ledgers is None or name not in REPORT_FILES or not JOB_ID.match(job_id or ""):
            return None
        p = self.ledgers / "jobs" / job_id / "report" / name
        return p if p.is_file() else None


def preset_window(preset: str, newest: datetime) -> tuple[datetime, datetime]:
    """A named range ending at the newest sample: 15m, 1h, 6h, 24h, 7d (or 'all': caller's)."""
    span = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400}[preset]
    return newest - timedelta(seconds=span), newest
