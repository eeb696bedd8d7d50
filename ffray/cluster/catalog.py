"""``ffray jobs``: the ledgers of a data dir, listed with their true state (a job whose driver died
is shown, and recorded, as ``interrupted``: see ``ffray.cluster.liveness``), and ``ffray jobs
clean`` to delete the ledgers of finished jobs.

Retention: a ledger stays until ``ffray jobs clean`` removes it. ``clean`` removes ``done`` jobs
(their output is written; the ledger holds the chunk stats, the report, copies of the source
images and, with ``--keep-chunks``, the encoded chunks); ``--all`` also removes jobs that
can still be resumed (``failed``, ``interrupted``, never started); a running job is never
removed. ``--older-than`` counts from the job's end (or its last update). The analytics' copy
(job records and spans under ``<data-dir>/job_records`` and ``spans``) is not touched.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ffray.errors import FFrayError

FINISHED = ("done",)
RESUMABLE = ("failed", "interrupted", "created")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class JobEntry:
    job_id: str
    root: Path
    status: str
    chunks_done: int
    chunks: int | None
    input: str | None
    output: str | None
    when: float  # its end, else its last update, else its creation
    error: str | None = None

    @classmethod
    def from_spec(cls, root: Path, spec: dict) -> JobEntry:
        return cls(job_id=root.name, root=root, status=str(spec.get("status", "?")),
                   chunks_done=len(list((root / "chunks").glob("*.json"))), chunks=spec.get("chunks"),
                   input=spec.get("input"), output=spec.get("output"),
                   when=float(spec.get("ended") or spec.get("updated") or spec.get("created") or 0),
                   error=spec.get("error"))


def duration(text: str) -> float:
    """``7d``, ``36h``, ``90m``, ``45s``, ``2w``; a bare number is days. Seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 7d, 12h, 30m)")
    return float(m.group(1)) * _UNITS[m.group(2) or "d"]


def to_clean(entries: list[JobEntry], now: float, older_than_s: float | None = None,
             include_resumable: bool = False) -> list[JobEntry]:
    """The entries ``ffray jobs clean`` removes (pure): finished ones (resumable ones too with
    ``include_resumable``) that ended at least ``older_than_s`` ago; never a running job."""
    states = FINISHED + (RESUMABLE if include_resumable else ())
    return [e for e in entries if e.status in states
            and (older_than_s is None or now - e.when >= older_than_s)]


def load(data_dir: Path) -> list[JobEntry]:
    """Every job of the data dir, oldest first, each reconciled with its driver's liveness."""
    from ffray.cluster.ledger import JobLedger
    from ffray.cluster.liveness import reconcile

    root = data_dir / "jobs"
    out = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            json.loads((d / "job.json").read_text())
            spec = reconcile(JobLedger(d))
        except (OSError, ValueError):
            continue
        out.append(JobEntry.from_spec(d, spec))
    return out


def add_parser(sub) -> None:
    j = sub.add_parser("jobs", help="list the jobs of the data dir, or clean finished ones; with "
                                    "--address, a cluster's submitted jobs")
    j.add_argument("action", nargs="?", default="list", choices=["list", "clean"],
                   help="list (default), or clean: delete the ledgers of finished jobs")
    j.add_argument("--older-than", type=duration, metavar="AGE",
                   help="clean: only jobs that ended at least AGE ago (7d, 12h, 30m; a number is days)")
    j.add_argument("--all", action="store_true",
                   help="clean: also jobs that could be resumed (failed, interrupted, never run)")
    j.add_argument("--dry-run", action="store_true", help="clean: only say what would be deleted")
    j.add_argument("--data-dir")
    j.add_argument("--address", help="list the jobs `ffray submit` sent to this dashboard, http://HOST:8265")


def run(args) -> int:
    from ffray.settings import data_dir

    if getattr(args, "address", None):
        if args.action != "list":
            raise FFrayError("`ffray jobs clean` works on a data dir, not on --address")
        from ffray.cluster import submit_cli

        return submit_cli.run(args)

    root = data_dir(args.data_dir)
    entries = load(root)
    if args.action == "clean":
        return _clean(entries, args)
    if args.older_than is not None or args.all or args.dry_run:
        raise FFrayError("--older-than, --all and --dry-run go with `ffray jobs clean`")
    if not entries:
        print(f"no jobs in {root / 'jobs'}")
    for e in entries:
        print(f"{e.job_id}  {e.status:11s} {e.chunks_done}/{e.chunks if e.chunks is not None else '?'} "
              f"chunks  {e.input} -> {e.output}")
        if e.status in ("failed", "interrupted") and e.error:
            print(f"    {e.error}")
    return 0


def _clean(entries: list[JobEntry], args) -> int:
    chosen = to_clean(entries, time.time(), args.older_than, args.all)
    freed = 0
    for e in chosen:
        size = sum(p.stat().st_size for p in e.root.rglob("*") if p.is_file())
        freed += size
        if not args.dry_run:
            shutil.rmtree(e.root, ignore_errors=True)
        print(f"{'would remove' if args.dry_run else 'removed'} {e.job_id} ({e.status}, "
              f"{size / 1e6:.1f} MB)")
    kept = len(entries) - len(chosen)
    print(f"{'would free' if args.dry_run else 'freed'} {freed / 1e6:.1f} MB; {kept} job(s) kept")
    return 0
