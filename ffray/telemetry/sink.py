"""Where closed telemetry and span files go: a local folder or any pyarrow filesystem URI
(``s3://bucket/prefix``, ``gs://…``, ``file:///…``). A file is written under a hidden temp name
(``.name.tmp``: DuckDB globs and pyarrow.dataset skip it) and then moved to its final name."""

from __future__ import annotations

import posixpath
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def is_uri(target: str | Path) -> bool:
    return "://" in str(target)


def join(target: str | Path, sub: str) -> str | Path:
    """``target``/``sub`` for a folder or a URI (query parameters such as ``endpoint_override``
    stay at the end)."""
    if not is_uri(target):
        return Path(target) / sub
    from urllib.parse import urlsplit, urlunsplit

    u = urlsplit(str(target))
    return urlunsplit(u._replace(path=u.path.rstrip("/") + "/" + sub.strip("/")))


class Sink:
    def __init__(self, target: str | Path, filesystem: pafs.FileSystem | None = None):
        if filesystem is not None:
            self.fs, self.base = filesystem, str(target).rstrip("/")
        elif is_uri(target):
            self.fs, self.base = pafs.FileSystem.from_uri(_small_object_uri(str(target)))
            self.base = self.base.rstrip("/")
        else:
            self.fs, self.base = pafs.LocalFileSystem(), str(Path(target).resolve())
        self.target = str(target)

    @property
    def local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, rel: str) -> str:
        return posixpath.join(self.base, rel)

    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self.path(rel)).type != pafs.FileType.NotFound

    def write_parquet(self, table: pa.Table, rel: str) -> str:
        final = self.path(rel)
        folder, name = posixpath.split(final)
        self.fs.create_dir(folder, recursive=True)
        tmp = posixpath.join(folder, f".{name}.tmp")
        pq.write_table(table, tmp, filesystem=self.fs, compression="zstd")
        self.fs.move(tmp, final)
        return final

    def _files(self, rel: str, suffix: str):
        """The FileInfo of every ``suffix`` file under ``rel`` (hidden temp files left out)."""
        sel = pafs.FileSelector(self.path(rel), recursive=True, allow_not_found=True)
        return [i for i in self.fs.get_file_info(sel) if i.type == pafs.FileType.File
                and i.base_name.endswith(suffix) and not i.base_name.startswith(".")]

    def signature(self, rel: str) -> tuple:
        """(path, size, mtime) of every Parquet file under ``rel``: changes whenever a file is
        added, rewritten or removed (one listing; what a cache of results over these files is
        keyed by)."""
        return tuple(sorted((i.path, i.size, i.mtime_ns) for i in self._files(rel, ".parquet")))

    def list(self, rel: str, suffix: str = ".parquet") -> list[str]:
        return sorted(i.path for i in self._files(rel, suffix))


def _small_object_uri(uri: str) -> str:
    """S3: ``allow_delayed_open`` lets Arrow send small files as one PutObject instead of a
    multipart upload (telemetry parts are small)."""
    if not uri.startswith("s3://") or "allow_delayed_open" in uri:
        return uri
    return uri + ("&" if "?" in uri else "?") + "allow_delayed_open=true"
