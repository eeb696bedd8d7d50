"""Jobs submitted to a cluster with ``ffray submit`` (Ray Jobs), for the dashboard's Jobs page from
the moment they are queued: Ray's Jobs API is asked (``ffray.cluster.jobclient``, the same rows
``ffray jobs --address`` prints: state, progress from the driver's log), and each submission is
joined to the job record its driver published once it started (``job_records.submission_id``)
for a link to the job's page and its cost so far.

Why the Jobs API and not a row the client writes into the store: the client need not see the
cluster's data dir (it talks HTTP only), a queued or pending job has no driver that could write
one, and Ray's GCS already holds the truth about state (cancelled, failed before starting) that a
client-written row could not follow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ffray.errors import FFrayError


@dataclass(frozen=True)
class Submitted:
    submission_id: str
    state: str
    input: str = ""
    output: str = ""
    frames_done: int | None = None
    frames_total: int | None = None
    fps: float | None = None
    eta_s: int | None = None
    reason: str = ""
    job_id: str | None = None  # the ffray job its driver runs (once it published a record)

    def progress(self) -> str:
        if self.frames_total:
            pct = 100.0 * (self.frames_done or 0) / self.frames_total
            eta = "" if self.eta_s is None else f", ETA {self.eta_s} s"
            return (f"{self.frames_done}/{self.frames_total} frames ({pct:.0f} %), "
                    f"{self.fps or 0:.1f} frames/s{eta}")
        return {"pending": "waiting for Ray to start its driver",
                "queued": "waiting for a --max-running slot",
                "running": "starting (no progress line yet)"}.get(self.state, "")


def merge(rows, records: list[dict]) -> list[Submitted]:
    """``jobclient`` rows (``submit.JobRow``) joined to job records by submission id, newest
    submission first; a job that ran to its end shows its record's frames."""
    by_sub = {r["submission_id"]: r for r in records if r.get("submission_id")}
    out = []
    for r in rows:
        rec = by_sub.get(r.job_id) or {}
        p = r.progress
        done, total = (p.frames_done, p.frames_total) if p else (None, None)
        if p is None and r.state == "succeeded" and rec.get("frames"):
            done = total = rec["frames"]
        out.append(Submitted(r.job_id, r.state, r.input, r.output, done, total, p.fps if p else None,
                             p.eta_s if p else None, r.reason, rec.get("job_id")))
    return out[::-1]


def lister(address: str) -> Callable[[], list]:
    """A function that lists ffray's Ray Jobs at ``address`` (``http://HEAD:8265``); it raises
    ``FFrayError`` (one line) when the cluster cannot be reached; a malformed address is refused
    here, at once."""
    from ffray.cluster.jobclient import Jobs, dashboard_url

    url = dashboard_url(address)

    def rows() -> list:
        return Jobs(url).rows()

    return rows


def submitted(list_rows: Callable[[], list], records: list[dict]) -> tuple[list[Submitted], str | None]:
    """(rows, None), or ([], why) when the Jobs API could not be read."""
    try:
        return merge(list_rows(), records), None
    except FFrayError as e:
        return [], str(e)
