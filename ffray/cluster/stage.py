"""``python -m ffray.cluster.stage --spec JSON --job ID -- COMMAND…``: the entrypoint wrapper of a
detached job whose input or output is not on a shared path (``staging.py`` says what and why).

1. Stage in (skipped on resume): an uploaded input is taken piece by piece from the head's GCS
   (each piece deleted once on disk), a URI input is copied in blocks; both first compared with
   the free space of ``$FFRAY_HOME/staging/<id>/``.
2. Run COMMAND (``ffray swap`` on the staged copy, maybe behind the ``--max-running`` wrapper) as
   a child; Ray's supervisor SIGTERMs it and us together on ``ffray cancel``.
3. After a successful run: a URI output is written to a temp object and moved into place; a
   kept output gets a link under Ray's log folder and a ``ffray: result`` line (what ``ffray
   fetch`` reads). Then the staging folder is removed. A failed or cancelled run keeps it, so
   ``ffray resume JOB`` finds its input and chunks.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ffray.cluster.staging import (
    KEPT,
    RESULTS_LINK,
    SHARED,
    UPLOAD,
    URI,
    Result,
    Staging,
    digest_key,
    piece_key,
    with_paths,
)

PIECE_WAIT_S = 600.0  # an upload that sends nothing for this long is given up (client gone)
POLL_S = 0.2


class Stop:
    def __init__(self):
        self.asked = False

    def __call__(self) -> bool:
        return self.asked

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: setattr(self, "asked", True))


def folders(home: Path, spec: Staging) -> tuple[Path, Path]:
    """(staged input, local output) on this node."""
    stage = home / "staging" / spec.stage_id
    if spec.output_kind == KEPT:
        out = home / "results" / spec.stage_id / spec.out_name
    else:
        out = stage / "out" / spec.out_name
    return stage / spec.name, out


def _fail(text: str, rc: int = 2) -> int:
    print(f"ffray: error: {text}", file=sys.stderr, flush=True)
    return rc


def _check_space(folder: Path, need: int) -> str | None:
    from ffray.cluster.uriio import free_bytes

    free = free_bytes(folder)
    if need > free:
        return (f"not enough space on the cluster to stage the input: {need / 1e9:.2f} GB needed, "
                f"{free / 1e9:.2f} GB free in {folder}")
    return None


def take_upload(spec: Staging, dest: Path, stop: Stop) -> None:
    """Write the uploaded pieces to ``dest`` (via ``.NAME.part``), deleting each from the GCS once
    written; checks every piece's length and the whole file's SHA-256."""
    from ray.experimental import internal_kv as kv

    tmp = dest.with_name(f".{dest.name}.part")
    try:
        _take_pieces(kv, spec, tmp, stop)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dest)


def _take_pieces(kv, spec: Staging, tmp: Path, stop: Stop) -> None:
    h, n = hashlib.sha256(), 0
    with open(tmp, "wb") as f:
        for k in range(spec.pieces + 1):
            key = piece_key(spec.stage_id, k) if k < spec.pieces else digest_key(spec.stage_id)
            data = _wait_for(kv, key, stop)
            kv._internal_kv_del(key)
            if k == spec.pieces:
                if data.decode() != h.hexdigest() or n != spec.size:
                    raise RuntimeError(f"upload damaged: {n} bytes, SHA-256 {h.hexdigest()}, "
                                       f"the client sent {spec.size} bytes {data.decode()}")
                break
            want = min(spec.piece_bytes, spec.size - n)
            if len(data) != want:
                raise RuntimeError(f"upload piece {k}: {len(data)} bytes, expected {want}")
            f.write(data)
            h.update(data)
            n += len(data)


def _wait_for(kv, key: str, stop: Stop) -> bytes:
    end = time.monotonic() + PIECE_WAIT_S
    while True:
        data = kv._internal_kv_get(key)
        if data is not None:
            return data
        if stop():
            raise KeyboardInterrupt
        if time.monotonic() > end:
            raise RuntimeError(f"upload stopped: nothing arrived for {PIECE_WAIT_S:.0f} s")
        time.sleep(POLL_S)


def free_pieces(spec: Staging) -> None:
    """Delete whatever of this job's upload is still in the GCS (an upload cut short)."""
    from ray.experimental import internal_kv as kv

    for k in range(spec.pieces):
        kv._internal_kv_del(piece_key(spec.stage_id, k))
    kv._internal_kv_del(digest_key(spec.stage_id))


def stage_in(spec: Staging, dest: Path, stop: Stop) -> str | None:
    """Copy the input to ``dest``; returns why it cannot be done (None: done)."""
    from ffray.cluster import uriio

    dest.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if spec.input_kind == UPLOAD:
        size = spec.size
    else:
        try:
            size = uriio.size_of(spec.input_uri)
        except Exception as e:  # noqa: BLE001 - the filesystem's own error, one line
            return f"{spec.input_uri}: {e}"
    why = _check_space(dest.parent, size)
    if why:
        return why
    if spec.input_kind == UPLOAD:
        take_upload(spec, dest, stop)
    else:
        uriio.download(spec.input_uri, dest, stop)
    dt = time.time() - t0
    print(f"ffray: staged {spec.name} ({size} bytes) in {dt:.1f} s", flush=True)
    return None


def keep(out: Path, spec: Staging) -> Result:
    """Link a kept output under Ray's log folder (the dashboard's log-file endpoint serves that
    folder, following links) and describe it."""
    import ray

    from ffray.settings import sha256_file

    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    link = logs / RESULTS_LINK / spec.stage_id / spec.out_name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(out)
    return Result(out.stat().st_size, sha256_file(out), ray.get_runtime_context().get_node_id(),
                  str(link.relative_to(logs)))


def run_child(cmd: list[str]) -> int:
    child = subprocess.Popen(cmd)  # an argument list; gets the supervisor's SIGTERM itself
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:  # noqa: PERF203 - keep waiting: the child ends the job
            continue


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ffray.cluster.stage")
    p.add_argument("--spec", required=True)
    p.add_argument("--job", required=True)
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    spec = Staging.from_json(a.spec)
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    stop = Stop()
    stop.install()
    from ffray.settings import data_dir

    staged, out = folders(data_dir(), spec)
    if spec.input_kind == UPLOAD or spec.output_kind == KEPT:
        import ray

        from ffray.cluster.runtime import NAMESPACE
        from ffray.settings import token_auth_for_clients

        token_auth_for_clients()
        ray.init(address="auto", namespace=NAMESPACE, log_to_driver=False, logging_level="ERROR")
        stop.install()  # ray.init replaced the handlers
    started = False  # the child ran: from then on the staging folder is kept for resume
    try:
        if spec.resume:
            if spec.input_kind != SHARED and not staged.is_file():
                return _fail(f"the staged input {staged} is gone: submit the video again")
        else:
            if spec.input_kind != SHARED:
                why = stage_in(spec, staged, stop)
                if why:
                    return _fail(why)
            cmd = with_paths(cmd, str(staged) if spec.input_kind != SHARED else spec.input_uri,
                             str(out))
        out.parent.mkdir(parents=True, exist_ok=True)
        if stop():
            print("ffray: interrupted (while staging: nothing started)", flush=True)
            return 130
        started = True
        rc = run_child(cmd)
        if rc != 0:
            return rc
        if spec.output_kind == URI:
            from ffray.cluster.uriio import upload

            upload(out, spec.output_uri, a.job, spec.overwrite)
            print(f"ffray: wrote {spec.output_uri.split('?')[0]}", flush=True)
            shutil.rmtree(staged.parent, ignore_errors=True)
        elif spec.output_kind == KEPT:
            print(keep(out, spec).line(), flush=True)
            shutil.rmtree(staged.parent, ignore_errors=True)
        elif spec.input_kind != SHARED:
            shutil.rmtree(staged.parent, ignore_errors=True)
        return 0
    except KeyboardInterrupt:
        print("ffray: interrupted (while staging: nothing started)", flush=True)
        return 130
    except Exception as e:  # noqa: BLE001 - one line in the job's log, not a traceback
        text = str(e).strip()
        return _fail(text.splitlines()[0] if text else type(e).__name__)
    finally:
        if spec.input_kind == UPLOAD and not spec.resume:
            free_pieces(spec)
        if not started and not spec.resume:  # nothing to resume: no partial staging stays
            shutil.rmtree(staged.parent, ignore_errors=True)
            if spec.output_kind == KEPT:
                shutil.rmtree(out.parent, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
