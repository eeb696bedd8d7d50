"""Detached cluster jobs through Ray Jobs: what ``ffray submit`` sends and how ``ffray jobs`` reads
Ray's answers back. Pure planning and mapping here; the HTTP calls are in ``jobclient.py``.

One Ray Job per input video. Its entrypoint is ``python -m ffray swap INPUT -o OUTDIR/NAME
--address auto [swap options]`` (an argument list joined with ``shlex.join``), run by the cluster's
own Python with the cluster's environment (``FFRAY_HOME``, ``PYTHONPATH``). Inputs and outputs
are paths every node and the client share, or (``staging.py``) filesystem URIs and uploaded local
files: then the swap runs under ``python -m ffray.cluster.stage``, which stages them.
"""

from __future__ import annotations

import glob
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ffray.cluster.jobprogress import ENV as PROGRESS_ENV
from ffray.cluster.jobprogress import JobProgress, Layout, last_layout, last_progress
from ffray.cluster.slots import slot_state
from ffray.cluster.staging import META as STAGING_META
from ffray.cluster.staging import Staging
from ffray.telemetry.sink import is_uri, join

STATES = ("pending", "queued", "running", "succeeded", "failed", "stopped", "cancelled")
OUTPUT_SUFFIXES = (".mp4", ".mov", ".mkv")
# what a folder INPUT expands to (a glob takes every file it matches: the user chose the pattern)
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv",
                  ".wmv", ".3gp")
META = "ffray"  # metadata key marking the Ray Jobs ffray submitted
SLOT_META = "max_running"  # metadata key of a job that waits for a --max-running slot
PROGRESS_EVERY_S = 5
# Ray's job supervisor SIGTERMs the driver on stop_job and SIGKILLs it after this many seconds
# (Ray's default is 3): give `ffray swap` time to end its job `interrupted`, chunks kept.
STOP_GRACE_S = 30
INTERRUPTED = "ffray: interrupted"  # what `ffray swap` prints when SIGTERM/Ctrl-C ended its job


@dataclass(frozen=True)
class Planned:
    """One input of ``ffray submit``: a job to submit, or why it was refused (``refused``)."""

    input: Path | str  # a path, or a filesystem URI (str)
    output: Path | str | None = None  # for a kept output: where `ffray fetch` puts it
    job_id: str | None = None
    entrypoint: str = ""
    refused: str | None = None
    max_running: int | None = None
    staging: Staging | None = None


@dataclass(frozen=True)
class JobRow:
    """One line of ``ffray jobs``."""

    job_id: str
    state: str
    input: str = ""
    output: str = ""
    progress: JobProgress | None = None
    reason: str = ""
    layout: Layout | None = None  # nodes and GPUs of a running job's workers, once known

    def line(self) -> str:
        parts = [self.job_id, f"{self.state:9s}"]
        if self.progress is not None:
            parts.append(self.progress.summary())
        if self.layout is not None:
            parts.append(self.layout.summary())
        if self.input:
            parts.append(f"{self.input} -> {self.output}")
        if self.reason:
            parts.append(f"({self.reason})")
        return "  ".join(parts)


def output_for(input_path: Path | str, outdir: Path | str) -> Path | str:
    """``clip.mp4`` -> ``OUTDIR/clip.mp4``; an input whose container ffray does not write
    (``.avi``, ``.webm``, ...) keeps its stem and gets ``.mp4``. Either may be a URI."""
    name = Path(uri_name(input_path) if is_uri(input_path) else input_path.name)
    out = name.stem + (name.suffix if name.suffix.lower() in OUTPUT_SUFFIXES else ".mp4")
    return join(outdir, out) if is_uri(outdir) else Path(outdir) / out


def uri_name(uri: Path | str) -> str:
    from posixpath import basename
    from urllib.parse import urlsplit

    return basename(urlsplit(str(uri)).path.rstrip("/"))


def stem_of(inp: Path | str) -> str:
    return Path(uri_name(inp)).stem if is_uri(inp) else Path(inp).stem


def submission_id(stem: str, token: str) -> str:
    """A readable Ray submission id: ``ffray-<stem>-<token>`` (stem reduced to [A-Za-z0-9_-])."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-")[:40] or "video"
    return f"ffray-{slug}-{token}"


def expand_inputs(inputs: Sequence[str]) -> list[Path | str]:
    """``ffray submit``'s INPUTs as videos, in order: a folder becomes its video files (by
    suffix, not recursive), a glob (``*``, ``?``, ``[``) that names no existing file becomes the
    files it matches; each sorted by name. Anything else, and a folder or glob that finds
    nothing, stays itself (and is then refused in one line, in its place). A URI stays as it is."""
    out: list[Path | str] = []
    for raw in inputs:
        if is_uri(raw):
            out.append(raw)
            continue
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
        elif not p.exists() and glob.has_magic(str(p)):
            found = sorted(Path(f) for f in glob.glob(str(p)) if Path(f).is_file())
        else:
            found = []
        out += found or [p]
    return out


def swap_entrypoint(input_path: Path | str, output: Path | str, options: Sequence[str],
                    python: str = "python", max_running: int | None = None,
                    job_id: str = "", staging: Staging | None = None) -> str:
    """The job's command line: every word quoted (user text never reaches a shell unquoted).
    With ``max_running`` the swap runs under ``ffray.cluster.slots``, which waits for one of
    the cluster's slots first; with ``staging`` everything runs under ``ffray.cluster.stage``,
    which stages the input and output and gives the swap their paths on the cluster."""
    where = [] if staging else [str(input_path), "-o", str(output)]
    swap = [python, "-m", "ffray", "swap", *where, "--address", "auto", *options]
    if max_running:
        swap = [python, "-m", "ffray.cluster.slots", "--limit", str(max_running), "--job", job_id,
                "--", *swap]
    if staging:
        swap = stage_wrapped(swap, staging, job_id, python)
    return shlex.join(swap)


def stage_wrapped(cmd: Sequence[str], staging: Staging, job_id: str, python: str = "python") -> list[str]:
    return [python, "-m", "ffray.cluster.stage", "--spec", staging.to_json(), "--job", job_id,
            "--", *cmd]


def runtime_env(working_dir: str | None = None) -> dict:
    """Environment variables, and a working_dir package only for ``--upload``'s face images
    (small files; videos go in pieces, see staging.py)."""
    env = {"env_vars": {PROGRESS_ENV: str(PROGRESS_EVERY_S), "PYTHONUNBUFFERED": "1",
                        "RAY_JOB_STOP_WAIT_TIME_S": str(STOP_GRACE_S)}}
    if working_dir:
        env["working_dir"] = working_dir
    return env


def metadata(p: Planned) -> dict[str, str]:
    meta = {META: "swap", "input": str(p.input), "output": str(p.output)}
    if p.max_running:
        meta[SLOT_META] = str(p.max_running)
    if p.staging is not None:
        meta[STAGING_META] = p.staging.to_json()
    return meta


def metadata_for_resume(meta: dict, job_id: str, staging: Staging | None) -> dict[str, str]:
    """A resume job's metadata: the cancelled job's, naming it (no ``--max-running`` slot)."""
    out = {k: v for k, v in meta.items() if k != SLOT_META}
    out["resumes"] = job_id
    if staging is not None:
        out[STAGING_META] = staging.to_json()
    return out


def plan_submissions(inputs: Sequence[Path | str], outdir: Path | str, options: Sequence[str],
                     check: Callable[[Path | str, Path | str], str | None],
                     tokens: Callable[[], str], max_running: int | None = None,
                     stage: Callable[[Path | str, Path | str, str], Staging | None] = lambda *a: None,
                     ) -> list[Planned]:
    """One ``Planned`` per input, in input order. ``check(input, output)`` says why an input
    cannot be submitted (None: it can); two inputs with one output name: the later is refused.
    ``stage(input, output, job id)`` gives the staging of an input or output not on a shared
    path."""
    out, taken = [], set()
    for inp in inputs:
        dest = output_for(inp, outdir)
        why = "another input has the same output name" if dest in taken else check(inp, dest)
        if why:
            out.append(Planned(input=inp, output=dest, refused=why))
            continue
        taken.add(dest)
        token = tokens()
        job_id = submission_id(stem_of(inp), token)
        staging = stage(inp, dest, job_id)
        staging = staging if staging is not None and staging.needed else None
        out.append(Planned(input=inp, output=dest, job_id=job_id, max_running=max_running,
                           staging=staging,
                           entrypoint=swap_entrypoint(inp, dest, options, max_running=max_running,
                                                      job_id=job_id, staging=staging)))
    return out


def state_of(ray_status: str, log_tail: str = "", slot_job: bool = False) -> str:
    """Ray's job status as one of ``STATES``. A STOPPED job whose driver ended itself as
    interrupted (its ledger says so, finished chunks kept for resume) is ``cancelled``; one Ray
    stopped before or without that (pending, or killed after the grace time) is ``stopped``.
    ``queued`` is ffray's own queue: a RUNNING ``--max-running`` job (``slot_job``) whose
    driver has not been granted its slot yet (Ray has no such state); one whose swap ended and
    gave its slot back is shown as it ended (``slots.slot_state``). Pass the whole log then."""
    s = str(ray_status).rsplit(".", 1)[-1].upper()
    if s == "RUNNING" and slot_job and slot_state(log_tail):
        return slot_state(log_tail)
    if s == "STOPPED":
        return "cancelled" if INTERRUPTED in log_tail else "stopped"
    return {"PENDING": "pending", "RUNNING": "running", "SUCCEEDED": "succeeded",
            "FAILED": "failed"}.get(s, s.lower())


def needs_log(ray_status: str) -> bool:
    """Which jobs' logs ``ffray jobs`` reads: running ones (progress) and stopped ones
    (cancelled or stopped)."""
    return str(ray_status).rsplit(".", 1)[-1].upper() in ("RUNNING", "STOPPED")


def error_line(text: str | None) -> str:
    """The last ``ffray: error:`` line in a log or Ray's failure message, without the prefix."""
    found = ""
    for line in (text or "").splitlines():
        if line.startswith("ffray: error: "):
            found = line[len("ffray: error: "):].strip()
    return found


def row(job_id: str, ray_status: str, meta: dict | None, message: str | None,
        log: str = "") -> JobRow:
    """A ``JobRow`` from what Ray says about a job (and its log where read)."""
    meta = meta or {}
    slot_job = SLOT_META in meta
    state = state_of(ray_status, log if slot_job else log[-4000:], slot_job)
    reason = ""
    if state == "failed":
        reason = error_line(log) or error_line(message) or (message or "").strip().split("\n")[0]
    return JobRow(job_id=job_id, state=state, input=meta.get("input", ""),
                  output=meta.get("output", ""),
                  progress=last_progress(log) if state == "running" else None, reason=reason,
                  layout=last_layout(log) if state == "running" else None)


def ours(meta: dict | None) -> bool:
    return bool(meta) and META in meta
