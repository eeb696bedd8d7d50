"""The model cache (``<data-dir>/models``): locate, fetch with resume and SHA-256 check, verify,
and load an ORT session whose I/O is checked against the manifest contract."""

from __future__ import annotations

import io
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ffray.errors import FFrayError
from ffray.models.manifest import ModelEntry, check_contract, get
from ffray.settings import atomic_write_bytes, sha256_file


def _recorded(cache: Path) -> dict:
    p = cache / "hashes.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def expected_hash(entry: ModelEntry, cache: Path) -> tuple[str | None, str]:
    if entry.sha256:
        return entry.sha256, "manifest"
    h = _recorded(cache).get(entry.file)
    return (h, "recorded at first fetch") if h else (None, "none")


def file_digest(path: Path, memo: Path | None = None) -> str:
    """SHA-256 of a model file, remembered by path, size and modification time in ffray's cache
    (``<data dir>/cache/model-digests.json``; never beside the user's files): a 554 MB model takes
    about a second to hash, and jobs name their models' digests at every start."""
    from ffray.settings import atomic_write_text, data_dir

    path = Path(path).resolve()
    st = path.stat()
    memo = memo or data_dir(None) / "cache" / "model-digests.json"
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    digest = sha256_file(path)
    known = {k: v for k, v in known.items() if not k.startswith(f"{path}|")}
    known[key] = digest
    try:
        atomic_write_text(memo, json.dumps(known))
    except OSError:  # a read-only home: hash again next time
        pass
    return digest


def locate(name: str, dirs: list[Path]) -> Path:
    entry = get(name)
    for d in dirs:
        p = Path(d).expanduser() / entry.file
        if p.is_file():
            return p
    where = ", ".join(str(d) for d in dirs) or "(no folder)"
    raise FFrayError(f"model {entry.name} ({entry.file}) not found in {where}: run "
                     f"`ffray models fetch {entry.name}` or pass --model-dir")


def fetch(name: str, cache: Path, url: str | None = None, timeout: float = 60,
          progress: Callable[[int, int | None], None] = lambda done, total: None) -> Path:
    """Download into ``cache`` (resuming a partial ``.part``), verify, rename into place."""
    entry = get(name)
    urls = [url] if url else list(entry.urls)
    if not urls:
        raise FFrayError(f"no download URL for {entry.name}; pass --url or place {entry.file} "
                         "in a folder given with --model-dir")
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / entry.file
    part = cache / f".{entry.file}.part"
    last = None
    for u in urls:
        try:
            _download(u, part, timeout, progress)
            break
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            last = f"{u}: {getattr(e, 'reason', e)}"
    else:
        raise FFrayError(f"cannot download {entry.name} ({last}); the partial file is kept for "
                         "a resumed fetch")
    want, source = expected_hash(entry, cache)
    got = sha256_file(part)
    if want and got != want:
        part.unlink(missing_ok=True)
        raise FFrayError(f"{entry.file}: SHA-256 {got[:16]}... does not match the {source} "
                         f"{want[:16]}...; the download was deleted")
    if entry.size and part.stat().st_size != entry.size and want is None:
        part.unlink(missing_ok=True)
        raise FFrayError(f"{entry.file}: {part.stat().st_size} bytes, expected {entry.size}")
    os.replace(part, final)
    if not want:
        rec = _recorded(cache)
        rec[entry.file] = got
        (cache / "hashes.json").write_text(json.dumps(rec, indent=2))
    return final


def _download(url: str, part: Path, timeout: float, progress) -> None:
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416:  # already complete
            return
        raise
    with resp:
        resumed = resp.status == 206
        total = resp.headers.get("Content-Length")
        total = int(total) + (have if resumed else 0) if total else None
        mode = "ab" if resumed else "wb"
        done = have if resumed else 0
        with open(part, mode) as f:
            while chunk := resp.read(1 << 20):
                f.write(chunk)
                done += len(chunk)
                progress(done, total)


def verify(name: str, dirs: list[Path], cache: Path) -> tuple[Path, bool, str]:
    """(path, ok, message) for a model's file against its expected SHA-256."""
    entry = get(name)
    path = locate(name, dirs)
    want, source = expected_hash(entry, cache)
    got = sha256_file(path)
    if want is None:
        return path, True, f"sha256 {got} (no published hash to compare)"
    return path, got == want, ("ok" if got == want else
                               f"sha256 {got[:16]}... differs from the {source} {want[:16]}...")


def load(name: str, dirs: list[Path], providers: list | None = None):
    """An ORT session for ``name`` found in ``dirs``, its I/O checked against the contract."""
    from ffray.models.sessions import make_session

    entry = get(name)
    path = locate(name, dirs)
    try:
        session = make_session(path, providers)
    except FFrayError:
        raise
    except Exception as e:  # onnxruntime raises its own types for unreadable graphs
        raise FFrayError(f"cannot load {path}: {str(e).splitlines()[0][:200]}") from None
    check_contract(session, entry, str(path))
    return session


def cached_array(path: Path, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """The array saved at ``path`` (``.npy``), else ``compute()``'s, saved there (temp name +
    rename) for the next worker on the node: e.g. inswapper's emap, whose reading means fetching
    the model's bytes and parsing its whole graph."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        pass
    arr = np.ascontiguousarray(compute())
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError:  # a read-only or full cache: the array still serves this worker
        pass
    return arr
