"""A job driver's progress as plain log lines, for drivers nobody watches in a terminal.

A job submitted with ``ffray submit`` runs ``ffray swap`` as a Ray Job on the cluster; its stderr
is the job's log. With ``FFRAY_PROGRESS_EVERY=SECONDS`` in its environment the driver writes a
``progress`` line that often, and ``ffray jobs`` reads the last one back from the log. The line's
format and its parser live here together, so they cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ENV = "FFRAY_PROGRESS_EVERY"
_LINE = re.compile(r"^ffray progress: frames (\d+)/(\d+) chunks (\d+)/(\d+) fps ([0-9.]+)"
                   r"(?: eta (\d+)s)?$", re.M)


@dataclass(frozen=True)
class JobProgress:
    frames_done: int
    frames_total: int
    chunks_done: int
    chunks_total: int
    fps: float
    eta_s: int | None = None

    def line(self) -> str:
        """The log line (one line, no newline)."""
        eta = "" if self.eta_s is None else f" eta {self.eta_s}s"
        return (f"ffray progress: frames {self.frames_done}/{self.frames_total} chunks "
                f"{self.chunks_done}/{self.chunks_total} fps {self.fps:.1f}{eta}")

    def summary(self) -> str:
        """What ``ffray jobs`` shows."""
        pct = 100.0 * self.frames_done / self.frames_total if self.frames_total else 0.0
        eta = "" if self.eta_s is None else f", ETA {self.eta_s} s"
        return (f"{self.frames_done}/{self.frames_total} frames ({pct:.0f} %), "
                f"{self.fps:.1f} frames/s{eta}")


def last_progress(log: str) -> JobProgress | None:
    """The last progress line in a job's log, or None when it has none yet."""
    found = None
    for m in _LINE.finditer(log):
        found = m
    if found is None:
        return None
    fd, ft, cd, ct, fps, eta = found.groups()
    return JobProgress(int(fd), int(ft), int(cd), int(ct), float(fps),
                       None if eta is None else int(eta))


def every_seconds(environ) -> float | None:
    """The period asked for in the environment (None: no progress lines)."""
    try:
        value = float(environ.get(ENV, ""))
    except ValueError:
        return None
    return value if value > 0 else None


WORKERS = "ffray workers:"
_WORKERS = re.compile(rf"^{re.escape(WORKERS)} (\d+) on (\d+) node\(s\), (\d+) GPU\(s\)$", re.M)


@dataclass(frozen=True)
class Layout:
    """Where a job's workers run: counted from their ``info()`` (node, GPU ids)."""

    workers: int
    nodes: int
    gpus: int

    def line(self) -> str:
        return f"{WORKERS} {self.workers} on {self.nodes} node(s), {self.gpus} GPU(s)"

    def summary(self) -> str:
        return f"{self.nodes} node(s), {self.gpus} GPU(s)"


def layout_of(worker_info: list[dict]) -> Layout:
    nodes = {i.get("node_id") or i.get("node") for i in worker_info}
    gpus = {(i.get("node_id") or i.get("node"), g) for i in worker_info for g in i.get("gpu_ids") or []}
    return Layout(len(worker_info), len(nodes), len(gpus))


def last_layout(log: str) -> Layout | None:
    found = None
    for m in _WORKERS.finditer(log):
        found = m
    return None if found is None else Layout(*map(int, found.groups()))
