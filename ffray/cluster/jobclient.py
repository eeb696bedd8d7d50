"""The HTTP edge of detached jobs: Ray's Job Submission SDK (``JobSubmissionClient``) against a
cluster's dashboard address. Errors come back as one-line ``FFrayError``s."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

from ffray.cluster.submit import JobRow, Planned, metadata, needs_log, ours, row, runtime_env
from ffray.errors import FFrayError
from ffray.settings import token_auth_for_clients

DEFAULT_ADDRESS = "http://127.0.0.1:8265"


def dashboard_url(address: str | None) -> str:
    """``--address``, else $RAY_API_SERVER_ADDRESS (as `ray job` reads it), else the local
    dashboard; ``HOST:PORT`` gets ``http://``."""
    url = (address or os.environ.get("RAY_API_SERVER_ADDRESS") or DEFAULT_ADDRESS).strip().rstrip("/")
    if url.startswith(("ray://", "auto")) or "://" in url and not url.startswith(("http://", "https://")):
        raise FFrayError(f"--address {url}: give the dashboard's http://HOST:PORT (Ray Jobs API, "
                         "port 8265 by default)")
    return url if "://" in url else f"http://{url}"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class Jobs:
    """A connected Job Submission client (token auth on when a token is found)."""

    def __init__(self, address: str | None):
        self.url = dashboard_url(address)
        token_auth_for_clients()  # before ray is imported
        from ray.job_submission import JobSubmissionClient

        try:
            self._c = JobSubmissionClient(self.url)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise FFrayError(f"cannot reach the Ray Jobs API at {self.url}: {_first_line(e)}") from None

    def submit(self, p: Planned, working_dir: str | None = None) -> str | None:
        """Submit one planned job; returns why it failed (None: submitted). ``working_dir``: a
        small folder (face images) Ray uploads as the job's package and frees with the job."""
        try:
            self._c.submit_job(entrypoint=p.entrypoint, submission_id=p.job_id,
                               runtime_env=runtime_env(working_dir), metadata=metadata(p))
        except (ConnectionError, RuntimeError, ValueError) as e:
            return f"submission failed: {_first_line(e)}"
        return None

    def status(self, job_id: str) -> str:
        try:
            return str(self._c.get_job_status(job_id))
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise FFrayError(f"job {job_id}: {_first_line(e)}") from None

    def logs(self, job_id: str) -> str:
        try:
            return self._c.get_job_logs(job_id)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise FFrayError(f"job {job_id}: {_first_line(e)}") from None

    def info(self, job_id: str):
        """Ray's ``JobDetails`` (status, metadata, entrypoint, driver_node_id)."""
        try:
            return self._c.get_job_info(job_id)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise FFrayError(f"job {job_id}: {_first_line(e)}") from None

    def row(self, job_id: str) -> JobRow:
        return self._row(self.info(job_id))

    def submit_raw(self, entrypoint: str, job_id: str, meta: dict, working_dir: str | None = None):
        try:
            self._c.submit_job(entrypoint=entrypoint, submission_id=job_id,
                               runtime_env=runtime_env(working_dir), metadata=meta)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise FFrayError(f"submission failed: {_first_line(e)}") from None

    # The dashboard's package store (uploads in pieces) and log-file endpoint (kept outputs):
    # plain HTTP with the SDK client's own headers (its token) and TLS settings.
    def _http(self, method: str, path: str, **kw):
        import requests

        try:
            r = requests.request(method, self._c._address + path, headers=self._c._headers,
                                 cookies=self._c._cookies, verify=self._c._verify, **kw)
        except requests.RequestException as e:
            raise FFrayError(f"{self.url}: {_first_line(e)}") from None
        if r.status_code in (401, 403):
            raise FFrayError(f"{self.url}: not authorized ({r.status_code}): copy the cluster's "
                             "token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)")
        return r

    def has_package(self, path: str) -> bool:
        """Whether ``/api/packages/gcs/NAME`` is in the GCS (Ray also pins it for 10 minutes:
        an upload nobody takes is freed by Ray after that)."""
        r = self._http("GET", path, timeout=60)
        if r.status_code not in (200, 404):
            raise FFrayError(f"package store: HTTP {r.status_code}: {r.text.strip()[:200]}")
        return r.status_code == 200

    def put_package(self, path: str, data: bytes) -> None:
        r = self._http("PUT", path, data=data, timeout=600)
        if r.status_code != 200:
            last = r.text.strip().splitlines()[-1:] or [f"HTTP {r.status_code}"]
            raise FFrayError(f"upload refused: {last[0][:300]}")

    def stream_file(self, node_id: str, file: str, block: int = 1 << 20):
        """The bytes of ``file`` (relative to Ray's log folder on node ``node_id``), in blocks."""
        r = self._http("GET", "/api/v0/logs/file", stream=True, timeout=600,
                       params={"node_id": node_id, "filename": file, "lines": -1,
                               "timeout": 86400})
        if r.status_code != 200:
            raise FFrayError(f"cannot read {file} on node {node_id[:8]}: HTTP {r.status_code} "
                             f"{r.text.strip()[:200]}")
        with r:
            yield from r.iter_content(block)

    def rows(self) -> list[JobRow]:
        """ffray's submitted jobs, oldest first."""
        try:
            found = [d for d in self._c.list_jobs() if d.submission_id and ours(d.metadata)]
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise FFrayError(f"cannot list jobs at {self.url}: {_first_line(e)}") from None
        return [self._row(d) for d in sorted(found, key=lambda d: (d.start_time or 0, d.submission_id))]

    def _row(self, d) -> JobRow:
        log = ""
        if needs_log(d.status):
            try:
                log = self._c.get_job_logs(d.submission_id)
            except (ConnectionError, RuntimeError, ValueError):
                log = ""  # progress unknown: still one line for the job
        return row(d.submission_id, str(d.status), d.metadata, d.message, log)

    def stop(self, job_id: str) -> bool:
        try:
            return bool(self._c.stop_job(job_id))
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise FFrayError(f"job {job_id}: {_first_line(e)}") from None

    def wait(self, job_ids: Sequence[str], timeout: float | None = None, poll_s: float = 1.0,
             clock: Callable[[], float] = time.monotonic,
             sleep: Callable[[float], None] = time.sleep) -> dict[str, str]:
        """Ray statuses once every job has ended, or at ``timeout`` (then some are not terminal)."""
        end = None if timeout is None else clock() + timeout
        last = {j: self.status(j) for j in job_ids}  # unknown ids fail here, before any wait
        while True:
            todo = [j for j, s in last.items() if not _terminal(s)]
            if not todo or (end is not None and clock() >= end):
                return last
            sleep(poll_s)
            last.update({j: self.status(j) for j in todo})


def _terminal(ray_status: str) -> bool:
    return str(ray_status).rsplit(".", 1)[-1].upper() in ("SUCCEEDED", "FAILED", "STOPPED")
