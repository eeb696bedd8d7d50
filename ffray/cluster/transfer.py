"""The client's side of staged jobs (staging.py): uploading a local video in pieces after its job
is submitted, ``ffray fetch JOB`` (a kept output back from the cluster, or a URI output copied
down) and ``ffray resume JOB`` (a cancelled or failed cluster job finished by a new Ray Job)."""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ffray.cluster.staging import (
    KEPT,
    META,
    PIECE_BYTES,
    PIECE_ENV,
    URI,
    WINDOW,
    Staging,
    digest_key,
    last_result,
    ledger_of,
    package_path,
    piece_key,
)
from ffray.errors import FFrayError

POLL_S = 0.2


def piece_bytes(environ=os.environ) -> int:
    try:
        return max(1, int(environ.get(PIECE_ENV, PIECE_BYTES)))
    except ValueError:
        return PIECE_BYTES


def upload(jobs, job_id: str, spec: Staging, path: Path, note: Callable[[str], None] = lambda s: None,
           clock: Callable[[], float] = time.monotonic) -> float:
    """Put ``path`` into the head's package store in ``spec.piece_bytes`` pieces, at most
    ``WINDOW`` waiting at once (the job's wrapper takes and deletes them), then its SHA-256.
    Stops with FFrayError when the job ends first. Returns the seconds it took."""
    t0, last_note = clock(), clock()
    waiting: deque[str] = deque()
    h = hashlib.sha256()
    sent = 0
    with open(path, "rb") as f:
        for k in range(spec.pieces):
            _drain(jobs, job_id, waiting, WINDOW - 1)
            data = f.read(spec.piece_bytes)
            h.update(data)
            key = piece_key(spec.stage_id, k)
            jobs.has_package(package_path(key))  # Ray pins it: freed within 10 min if never taken
            jobs.put_package(package_path(key), data)
            waiting.append(key)
            sent += len(data)
            if clock() - last_note > 5:
                last_note = clock()
                note(f"ffray: uploading {path.name}: {sent / 1e6:.0f}/{spec.size / 1e6:.0f} MB")
    if sent != spec.size:
        raise FFrayError(f"{path} changed while it was uploaded ({sent} bytes, {spec.size} expected)")
    key = digest_key(spec.stage_id)
    jobs.has_package(package_path(key))
    jobs.put_package(package_path(key), h.hexdigest().encode())
    waiting.append(key)
    _drain(jobs, job_id, waiting, 0)
    return clock() - t0


def _drain(jobs, job_id: str, waiting: deque, keep: int) -> None:
    """Until at most ``keep`` pieces wait in the package store (the job deletes what it took)."""
    while len(waiting) > keep:
        if not jobs.has_package(package_path(waiting[0])):
            waiting.popleft()
            continue
        status = jobs.status(job_id).rsplit(".", 1)[-1].upper()
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            row = jobs.row(job_id)
            raise FFrayError(f"the job ended ({row.state}{': ' + row.reason if row.reason else ''}) "
                             "before its upload")
        time.sleep(POLL_S)


def staging_of(meta: dict | None) -> Staging | None:
    text = (meta or {}).get(META)
    return Staging.from_json(text) if text else None


def fetch(jobs, job_id: str, dest: str | None, overwrite: bool) -> Path:
    """Bring a succeeded job's output to ``dest`` (default: where ``submit`` said it would land):
    ``.NAME.ffray-tmp-PID`` beside it, checked (size, SHA-256), then renamed. An existing file is
    left as it is without ``overwrite``: refused before anything is read."""
    info = jobs.info(job_id)
    meta = info.metadata or {}
    spec = staging_of(meta)
    target = Path(dest or meta.get("output", "")).expanduser().absolute()
    if spec is None or spec.output_kind not in (KEPT, URI):
        raise FFrayError(f"job {job_id} wrote its output on a shared path: {meta.get('output')} "
                         "(nothing to fetch)")
    row = jobs.row(job_id)
    if row.state != "succeeded":
        hint = f" (finish it with `ffray resume {job_id}`)" if row.state in ("cancelled", "failed") else ""
        raise FFrayError(f"job {job_id} is {row.state}: nothing to fetch{hint}")
    if target.is_dir():
        target = target / spec.out_name
    if target.exists() and not overwrite:
        raise FFrayError(f"{target} exists (use --overwrite to replace it)")
    if not target.parent.is_dir():
        raise FFrayError(f"folder does not exist: {target.parent}")
    tmp = target.with_name(f".{target.name}.ffray-tmp-{os.getpid()}")
    try:
        if spec.output_kind == URI:
            from ffray.cluster.uriio import download

            download(spec.output_uri, tmp)
        else:
            _download_kept(jobs, job_id, tmp, target)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def _download_kept(jobs, job_id: str, tmp: Path, target: Path) -> None:
    result = last_result(jobs.logs(job_id))
    if result is None:
        raise FFrayError(f"job {job_id}: its log names no kept output")
    free = shutil.disk_usage(target.parent).free
    if result.size > free:
        raise FFrayError(f"not enough space in {target.parent}: {result.size / 1e9:.2f} GB needed, "
                         f"{free / 1e9:.2f} GB free")
    h, n = hashlib.sha256(), 0
    with open(tmp, "wb") as f:
        for block in jobs.stream_file(result.node, result.file):
            f.write(block)
            h.update(block)
            n += len(block)
    if n != result.size or h.hexdigest() != result.sha256:
        raise FFrayError(f"job {job_id}: fetched {n} bytes that do not match its output ({result.size} "
                         "bytes; SHA-256 differs): nothing written")


def resume(jobs, job_id: str, new_id: str, overwrite: bool = False,
           keep_chunks: bool = False) -> tuple[str, str]:
    """Submit a Ray Job that runs ``ffray resume LEDGER`` for a cancelled (or failed) cluster
    job: only its missing chunks run; a staged job keeps its staging. Returns (id, output)."""
    from ffray.cluster.submit import META as OURS
    from ffray.cluster.submit import metadata_for_resume, stage_wrapped

    info = jobs.info(job_id)
    meta = info.metadata or {}
    if OURS not in meta:
        raise FFrayError(f"job {job_id} was not submitted by ffray")
    row = jobs.row(job_id)
    if row.state not in ("cancelled", "failed", "stopped"):
        raise FFrayError(f"job {job_id} is {row.state}: only a cancelled or failed job resumes")
    ledger = ledger_of(jobs.logs(job_id))
    if ledger is None:
        raise FFrayError(f"job {job_id} never started its swap (its log names no ledger): "
                         "submit the video again")
    cmd = ["python", "-m", "ffray", "resume", ledger, "--address", "auto"]
    cmd += ["--overwrite"] * overwrite + ["--keep-chunks"] * keep_chunks
    spec = staging_of(meta)
    if spec is not None:
        spec = spec.for_resume()
        cmd = stage_wrapped(cmd, spec, new_id)
    jobs.submit_raw(shlex.join(cmd), new_id, metadata_for_resume(meta, job_id, spec))
    return new_id, meta.get("output", "")
