"""Where ffray keeps its state: ``--data-dir``, else ``$FFRAY_HOME``, else ``~/.ffray``."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The local state folder. A filesystem URI given as --data-dir (s3://…) holds telemetry and
    spans only (see ``telemetry_target``); job ledgers then stay in $FFRAY_HOME or ~/.ffray."""
    if explicit and "://" in str(explicit):
        explicit = None
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get("FFRAY_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return (Path.home() / ".ffray").resolve()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp name beside ``path`` and rename it into place (the temp name is
    removed if the write fails)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # e.g. no space left: no half-written temp file stays behind
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def token_auth_for_clients() -> None:
    """Ray clients send the cluster's auth token only when RAY_AUTH_MODE=token, and Ray reads that
    when it is imported. Clusters started by `ray start` (Ray >= 2.5x) require the token: keep auth
    on and use the token when one is available. Call before importing ray."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def telemetry_target(explicit: str | os.PathLike | None = None) -> str:
    """Where telemetry and spans go: the --data-dir URI as given, else the local data dir."""
    if explicit and "://" in str(explicit):
        return str(explicit).rstrip("/")
    return str(data_dir(explicit))


def sha256_file(path: str | os.PathLike, h=None):
    """SHA-256 of a file's bytes, read in 8 MiB blocks. With ``h`` given, feeds that hash object
    and returns it (so callers can add more data); else returns the hex digest."""
    own = h is None
    h = hashlib.sha256() if own else h
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest() if own else h
