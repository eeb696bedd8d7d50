"""Inputs and outputs of detached jobs that are not on a path every node shares (pure planning).

A submitted job whose input is a filesystem URI (``s3://…``, any pyarrow filesystem) or a local
file uploaded through the Jobs API (``ffray submit --upload``), or whose output goes to a URI or
stays on the cluster for ``ffray fetch``, runs under ``python -m ffray.cluster.stage`` (stage.py):
it copies the input in bounded blocks to the head's ``$FFRAY_HOME/staging/<stage id>/``, runs the
swap on that copy, and then writes the output to its URI (temp key, then moved) or keeps it in
``$FFRAY_HOME/results/<stage id>/`` behind a link in Ray's log folder, where the dashboard's
log-file endpoint serves it back (``ffray fetch``). What the wrapper needs is one ``Staging``
spec, passed as one JSON word and kept in the Ray job's metadata (``ffray resume JOB`` reuses it).

Uploads go through the dashboard's package store (``PUT /api/packages/gcs/NAME``: one GCS KV entry
per request, below Ray's 512 MiB gRPC limit) in pieces of ``PIECE_BYTES``: the client puts a piece
once fewer than ``WINDOW`` are waiting, the job's wrapper writes each piece to disk and deletes it,
so the head's GCS never holds more than ``WINDOW`` pieces of a video.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

SHARED, URI, UPLOAD, KEPT = "shared", "uri", "upload", "kept"
PIECE_BYTES = 64 << 20  # one upload request (Ray's gRPC message limit is 512 MiB)
PIECE_ENV = "FFRAY_UPLOAD_PIECE_BYTES"  # tests use small pieces to exercise the window
WINDOW = 2  # pieces waiting in the head's GCS at most, per upload
BLOCK = 16 << 20  # bytes per read/write when copying to and from a filesystem URI
RESULT = "ffray: result"  # the wrapper's line naming a kept output: size, sha256, node, file
RESULTS_LINK = "ffray-results"  # folder under Ray's log folder holding links to kept outputs
META = "staging"  # metadata key of a staged job (the spec's JSON)


@dataclass(frozen=True)
class Staging:
    """Where one job's input comes from and its output goes."""

    stage_id: str  # folder key on the cluster: staging/<id>/, results/<id>/
    input_kind: str  # SHARED | URI | UPLOAD
    output_kind: str  # SHARED | URI | KEPT
    name: str  # the input's file name (staged as staging/<id>/<name>)
    out_name: str  # the output's file name
    input_uri: str = ""
    output_uri: str = ""  # the final object/file for URI outputs
    size: int = 0  # UPLOAD: the file's bytes
    piece_bytes: int = PIECE_BYTES
    overwrite: bool = False
    resume: bool = False  # the command is `ffray resume LEDGER`: the input is already staged

    @property
    def needed(self) -> bool:
        return self.input_kind != SHARED or self.output_kind != SHARED

    @property
    def pieces(self) -> int:
        return piece_count(self.size, self.piece_bytes)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Staging:
        return cls(**json.loads(text))

    def for_resume(self) -> Staging:
        """The same staging for ``ffray resume``: the input is already on the cluster."""
        return replace(self, resume=True)


def piece_count(size: int, piece_bytes: int) -> int:
    return max(1, math.ceil(size / max(1, piece_bytes)))


def piece_key(stage_id: str, k: int) -> str:
    """The package URI of upload piece ``k`` (the dashboard stores ``gcs://NAME`` as a GCS KV
    key; ``_ray_pkg_`` is Ray's own prefix for packages)."""
    return f"gcs://_ray_pkg_ffray-{stage_id}-{k:05d}.bin"


def digest_key(stage_id: str) -> str:
    """The last piece: the upload's SHA-256 (hex), put once every piece has gone up."""
    return f"gcs://_ray_pkg_ffray-{stage_id}-sha256.bin"


def package_path(key: str) -> str:
    """``gcs://NAME`` -> the dashboard's ``/api/packages/gcs/NAME``."""
    protocol, _, name = key.partition("://")
    return f"/api/packages/{protocol}/{name}"


def with_paths(cmd: Sequence[str], staged_input: str, output: str) -> list[str]:
    """``… -m ffray swap [options]`` -> ``… -m ffray swap INPUT -o OUTPUT [options]`` (the first
    ``-m ffray swap`` in the command, which may sit behind the ``--max-running`` wrapper)."""
    cmd = list(cmd)
    for i in range(len(cmd) - 2):
        if cmd[i:i + 3] == ["-m", "ffray", "swap"]:
            return cmd[:i + 3] + [staged_input, "-o", output] + cmd[i + 3:]
    raise ValueError("no `-m ffray swap` in the staged command")


@dataclass(frozen=True)
class Result:
    """A kept output as the wrapper announced it: fetch it from ``node`` as ``file`` (a path
    under Ray's log folder there)."""

    size: int
    sha256: str
    node: str
    file: str

    def line(self) -> str:
        return f"{RESULT} {self.size} {self.sha256} {self.node} {self.file}"


_RESULT = re.compile(rf"^{re.escape(RESULT)} (\d+) ([0-9a-f]{{64}}) ([0-9a-f]+) (\S.*)$", re.M)
_LEDGER = re.compile(r"^job (\S+) \(ledger\b", re.M)  # rich may wrap the line after it
_RESUME_HINT = re.compile(r"ffray resume (\S+?)`")


def last_result(log: str) -> Result | None:
    found = None
    for m in _RESULT.finditer(log):
        found = m
    if found is None:
        return None
    size, sha, node, file = found.groups()
    return Result(int(size), sha, node, file.strip())


def ledger_of(log: str) -> str | None:
    """The ledger id of the ``ffray swap``/``resume`` a job's log shows (its ``job ID (ledger
    …)`` line, else the ``ffray resume ID`` hint of an interrupted run)."""
    m = _LEDGER.findall(log) or _RESUME_HINT.findall(log)
    return m[-1] if m else None
