"""Telemetry storage: an Arrow IPC journal for the open window, rolled to zstd Parquet.

Layout (hive): ``<root>/<table>/date=YYYY-MM-DD/node=<node>/part-<first>-<last>.parquet``.
The open window is ``<root>/<table>/.journal/<node>/<writer>.arrow`` (``<node>.arrow`` for a writer
without an id; an IPC stream, flushed per batch, so it is readable after a crash up to the last
whole batch). Several writers can share a node name (one machine's telemetry actors of two
private Ray instances, ``writer`` = their Ray node ids): each has its own journal, flocked
(``.lock`` beside it) while open, and ``recover`` rolls only journals nobody holds. A roll writes
``.part-....parquet.tmp`` beside its final name and renames it: DuckDB globs (``*.parquet``) and
pyarrow.dataset (which skips names starting with ``.``) never see a partial file.
"""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from ffray.telemetry.schema import TABLES
from ffray.telemetry.sink import Sink

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no journal locks
    fcntl = None


def _safe(node: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in node)


class TableWriter:
    """``root`` holds the journal (always local); closed windows go to ``sink`` (default: the
    same folder; or a pyarrow filesystem URI, see ``ffray.telemetry.sink``)."""

    def __init__(self, root: Path, table: str, node: str, sink: Sink | None = None, writer: str = ""):
        self.root, self.table, self.node = Path(root), table, _safe(node)
        self.sink = sink or Sink(self.root)
        self.schema = TABLES[table]
        name = f"{self.node}/{_safe(writer)}" if writer else self.node
        self.journal = self.root / table / ".journal" / f"{name}.arrow"
        self._sink = None
        self._writer = None
        self._lock: int | None = None
        self.rows = 0

    def append(self, rows: list[dict]) -> None:
        if not rows:
            return
        batch = pa.RecordBatch.from_pylist(rows, schema=self.schema)
        if self._writer is None:
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            self._lock = _try_lock(self.journal)  # held while the journal is open
            self._sink = pa.OSFile(str(self.journal), "wb")
            self._writer = ipc.new_stream(self._sink, self.schema)
        self._writer.write_batch(batch)
        self._sink.flush()
        self.rows += len(rows)

    def roll(self) -> list[Path]:
        """Close the window: its rows go to Parquet (one file per UTC date), the journal goes."""
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = self._sink = None
        self.rows = 0
        try:
            return roll_journal(self.journal, self.sink, self.table, self.node)
        finally:
            _unlock(self.journal, self._lock)
            self._lock = None

    def close(self) -> list[Path]:
        return self.roll()


def read_journal(path: Path) -> pa.Table | None:
    """Every whole batch of a journal, also one cut short by a crash."""
    batches = []
    try:
        with pa.OSFile(str(path), "rb") as f:
            reader = ipc.open_stream(f)
            while True:
                try:
                    batches.append(reader.read_next_batch())
                except StopIteration:
                    break
    except (pa.ArrowInvalid, OSError, EOFError):
        pass  # a torn last batch: keep what came before it
    return pa.Table.from_batches(batches) if batches else None


def roll_journal(journal: Path, sink: Sink | Path, table: str, node: str) -> list[str]:
    if not journal.exists():
        return []
    sink = sink if isinstance(sink, Sink) else Sink(sink)
    data = read_journal(journal)
    written = []
    if data is not None and data.num_rows:
        by_date: dict[str, list[int]] = defaultdict(list)
        for i, ts in enumerate(data.column("ts").to_pylist()):
            by_date[ts.astimezone(timezone.utc).strftime("%Y-%m-%d")].append(i)
        for date, idx in sorted(by_date.items()):
            part = data.take(pa.array(idx))
            ts = part.column("ts").to_pylist()
            stamp = f"{_stamp(min(ts))}-{_stamp(max(ts))}"
            folder = f"{table}/date={date}/node={node}"
            rel, n = f"{folder}/part-{stamp}.parquet", 1
            while sink.exists(rel):
                rel, n = f"{folder}/part-{stamp}-{n}.parquet", n + 1
            written.append(sink.write_parquet(part, rel))
    journal.unlink(missing_ok=True)
    return written


def _stamp(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S%f")


def _try_lock(journal: Path) -> int | None:
    """An exclusive flock on ``journal``'s ``.lock`` file: its fd, or None when another process
    holds it (a live writer) or there are no locks here."""
    if fcntl is None:
        return None
    path = journal.with_suffix(".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_ino != os.stat(path).st_ino:  # its holder removed it meanwhile
            raise OSError("lock file replaced")
    except OSError:
        os.close(fd)
        return None
    return fd


def _unlock(journal: Path, fd: int | None) -> None:
    if fd is None:
        return
    journal.with_suffix(".lock").unlink(missing_ok=True)
    os.close(fd)


def recover(root: Path, sink: Sink | None = None) -> list[str]:
    """Roll every journal left by a writer that died (call before starting a new writer); a
    journal whose lock is held belongs to a live writer and is left alone."""
    written = []
    for table in TABLES:
        jdir = Path(root) / table / ".journal"
        if not jdir.is_dir():
            continue
        found = [(j, j.stem) for j in jdir.glob("*.arrow")] + \
            [(j, j.parent.name) for j in jdir.glob("*/*.arrow")]
        for j, node in sorted(found):
            fd = _try_lock(j)
            if fd is None and fcntl is not None:
                continue  # a live writer's
            try:
                written += roll_journal(j, sink or Sink(root), table, node)
            finally:
                _unlock(j, fd)
    return written


class TelemetryStore:
    """All tables of one node; ``roll_seconds`` apart, the open windows roll to Parquet."""

    def __init__(self, root: Path, node: str, roll_seconds: float = 60.0, sink: Sink | None = None,
                 writer: str = ""):
        self.root = Path(root)
        self.sink = sink or Sink(self.root)
        recover(self.root, self.sink)
        self.writers = {t: TableWriter(self.root, t, node, self.sink, writer) for t in TABLES}
        self.roll_seconds = roll_seconds
        self._window_start: float | None = None

    def append(self, rows: dict[str, list[dict]], now: float) -> list[Path]:
        for table, r in rows.items():
            self.writers[table].append(r)
        if self._window_start is None:
            self._window_start = now
        if now - self._window_start >= self.roll_seconds:
            return self.roll()
        return []

    def roll(self) -> list[Path]:
        self._window_start = None
        return [p for w in self.writers.values() for p in w.roll()]

    def close(self) -> list[Path]:
        return self.roll()


def apply_retention(root: Path, days: float = 7.0, now: float | None = None) -> list[Path]:
    """Delete ``date=`` partitions older than ``days`` (whole UTC days) in every table."""
    import shutil
    import time as _time

    now = _time.time() if now is None else now
    cutoff = datetime.fromtimestamp(now - days * 86400, tz=timezone.utc).strftime("%Y-%m-%d")
    removed = []
    for table in TABLES:
        for d in sorted((Path(root) / table).glob("date=*")):
            if d.name[5:] < cutoff:
                shutil.rmtree(d)
                removed.append(d)
    return removed


def compact(root: Path, table: str, date: str, node: str) -> Path | None:
    """Merge one node's part files of one day into a single file (readers see either the parts or
    the merged file, never both)."""
    folder = Path(root) / table / f"date={date}" / f"node={_safe(node)}"
    parts = sorted(folder.glob("part-*.parquet"))
    if len(parts) < 2:
        return None
    data = pa.concat_tables([pq.read_table(p) for p in parts]).sort_by("ts")
    ts = data.column("ts").to_pylist()
    final = folder / f"part-{_stamp(min(ts))}-{_stamp(max(ts))}-compacted.parquet"
    return replace_parts(data, parts, final)


def replace_parts(data: pa.Table, parts: list[Path], final: Path, **write_options) -> Path:
    """Write ``data`` to ``final`` in place of ``parts``: the merged file is written under a hidden
    temp name, the parts are hidden (``.name.old``), then the merged file appears and the parts go.
    A reader (DuckDB glob, pyarrow.dataset) sees the parts or the merged file, never both."""
    tmp = final.with_name(f".{final.name}.tmp")
    pq.write_table(data, tmp, compression="zstd", **write_options)
    hidden = []
    for p in parts:
        h = p.with_name(f".{p.name}.old")
        os.replace(p, h)
        hidden.append(h)
    os.replace(tmp, final)
    for h in hidden:
        h.unlink()
    return final


def compact_closed_days(root: Path, node: str, now: float | None = None) -> list[Path]:
    """Compact this node's partitions of every day before today (UTC) in every table."""
    import time as _time

    today = datetime.fromtimestamp(_time.time() if now is None else now, tz=timezone.utc)
    today_s = today.strftime("%Y-%m-%d")
    out = []
    for table in TABLES:
        for d in sorted((Path(root) / table).glob("date=*")):
            if d.name[5:] < today_s:
                merged = compact(root, table, d.name[5:], node)
                if merged:
                    out.append(merged)
    return out
