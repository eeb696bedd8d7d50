"""Video files behind a pyarrow filesystem URI (``s3://bucket/key?endpoint_override=…``, ``gs://…``,
``file:///…``): what the client checks before submitting, and the bounded-block copies the job's
wrapper makes. Never one in-memory object for a whole file: streams of ``BLOCK`` bytes.
Credentials come from the usual environment (AWS_ACCESS_KEY_ID, …), as for ``--data-dir``."""

from __future__ import annotations

import os
import posixpath
import shutil
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from ffray.cluster.staging import BLOCK
from ffray.errors import FFrayError
from ffray.telemetry.sink import is_uri, join

__all__ = ["is_uri", "join", "open_fs", "size_of", "video_problem", "exists", "download",
           "upload", "free_bytes"]


def open_fs(uri: str) -> tuple[pafs.FileSystem, str]:
    try:
        return pafs.FileSystem.from_uri(uri)
    except (OSError, ValueError, TypeError) as e:
        raise FFrayError(f"{_display(uri)}: {_first_line(e)}") from None


def size_of(uri: str) -> int:
    """The object's size; FFrayError when it is missing or not a file."""
    fs, path = open_fs(uri)
    try:
        info = fs.get_file_info(path)
    except OSError as e:
        raise FFrayError(f"cannot read it: {_first_line(e)}") from None
    if info.type == pafs.FileType.NotFound:
        raise FFrayError("no such file")
    if info.type != pafs.FileType.File:
        raise FFrayError("not a file")
    return int(info.size)


def exists(uri: str) -> bool:
    fs, path = open_fs(uri)
    try:
        return fs.get_file_info(path).type != pafs.FileType.NotFound
    except OSError as e:
        raise FFrayError(f"cannot check {_display(uri)}: {_first_line(e)}") from None


def video_problem(uri: str) -> str | None:
    """What the client can tell of a URI input (None: submit it): there, a file, and PyAV finds
    a video stream in its header (read through a random-access pyarrow file: a few reads, not
    the whole object)."""
    import av

    try:
        size_of(uri)
    except FFrayError as e:
        return str(e)
    fs, path = open_fs(uri)
    try:
        with fs.open_input_file(path) as f, av.open(f) as c:
            if not c.streams.video:
                return "no video stream"
    except av.FFmpegError as e:
        return f"not a video ({_first_line(e)})"
    except OSError as e:
        return f"cannot read it: {_first_line(e)}"
    return None


def download(uri: str, dest: Path, stop: Callable[[], bool] = lambda: False,
             block: int = BLOCK) -> int:
    """Copy the object to ``dest`` (via ``.NAME.part`` then rename) in ``block``-byte reads;
    returns the bytes copied. ``stop()`` true between blocks abandons it (KeyboardInterrupt)."""
    fs, path = open_fs(uri)
    tmp = dest.with_name(f".{dest.name}.part")
    n = 0
    try:
        with fs.open_input_stream(path) as src, open(tmp, "wb") as dst:
            while chunk := src.read(block):
                if stop():
                    raise KeyboardInterrupt
                dst.write(chunk)
                n += len(chunk)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n


S3_COPY_MAX = 5 << 30  # S3 CopyObject (pyarrow's move) refuses larger sources


def upload(src: Path, uri: str, tag: str, overwrite: bool, block: int = BLOCK) -> None:
    """Write ``src`` to ``uri``: to the hidden temp object ``.NAME.ffray-tmp-TAG`` beside it, then
    moved to its name, so the destination never holds a partial file. Without ``overwrite`` an
    object that appeared meanwhile is left as it is (FFrayError). On S3 a file over 5 GiB goes
    straight to its key instead (pyarrow's move is one CopyObject, which S3 limits to 5 GiB): a
    multipart upload, which S3 shows only once it completes."""
    fs, path = open_fs(uri)
    folder, name = posixpath.split(path)
    tmp = posixpath.join(folder, f".{name}.ffray-tmp-{tag}")
    if folder:
        fs.create_dir(folder, recursive=True)
    if fs.type_name == "s3" and src.stat().st_size > S3_COPY_MAX:
        if not overwrite and fs.get_file_info(path).type != pafs.FileType.NotFound:
            raise FFrayError(f"output exists: {_display(uri)} (use --overwrite to replace it)")
        tmp = path
    try:
        with open(src, "rb") as f, fs.open_output_stream(tmp) as out:
            while chunk := f.read(block):
                out.write(chunk)
        if tmp == path:
            return
        if not overwrite and fs.get_file_info(path).type != pafs.FileType.NotFound:
            raise FFrayError(f"output exists: {_display(uri)} (use --overwrite to replace it)")
        fs.move(tmp, path)
    except BaseException:
        if tmp != path:
            try:
                fs.delete_file(tmp)
            except OSError:
                pass
        raise


def free_bytes(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(folder).free


def _display(uri: str) -> str:
    """A URI without its query (endpoints, options) for messages."""
    u = urlsplit(uri)
    return f"{u.scheme}://{u.netloc}{u.path}"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
