"""The analytics' view of the Parquet layout: one DuckDB connection with a view per table.

``<target>`` is the data dir or a pyarrow filesystem URI (see ``ffray.telemetry.sink``). Local
folders are scanned by DuckDB's own Parquet reader (parallel, row-group pruning on ``ts``); a URI
is read through pyarrow datasets registered with DuckDB (no DuckDB extension to download). A
table with no files yet is an empty view with the right columns, so every query runs on an empty
store and returns no rows.
"""

from __future__ import annotations

import pyarrow as pa

from ffray.errors import FFrayError
from ffray.telemetry.schema import ALERT, GPU, GPU_PROC, GPU_UTIL, HOST, JOB, SPAN, WORKER_CPU
from ffray.telemetry.sink import Sink, is_uri

VIEWS = {"gpu": ("telemetry/gpu", GPU), "gpu_util": ("telemetry/gpu_util", GPU_UTIL),
         "gpu_proc": ("telemetry/gpu_proc", GPU_PROC), "host": ("telemetry/host", HOST),
         "alerts": ("telemetry/alerts", ALERT), "worker_cpu": ("telemetry/worker_cpu", WORKER_CPU),
         "spans": ("spans", SPAN),
         "jobs": ("job_records", JOB)}


def target_missing(target) -> bool:
    """True when ``target`` is a local folder that does not exist (a URI is taken as present)."""
    from pathlib import Path

    return not is_uri(target) and not Path(target).is_dir()


class Store:
    """``Store(target).sql(query, **params)`` → Arrow table; views as in ``VIEWS``."""

    def __init__(self, target, threads: int | None = None):
        import duckdb

        self.target = str(target)
        try:
            self.sink = Sink(target)
        except (OSError, pa.ArrowException, ValueError) as e:
            raise FFrayError(f"cannot open the data at {target}: {str(e).splitlines()[0]}") from None
        self.con = duckdb.connect()
        if threads:
            self.con.execute(f"SET threads TO {int(threads)}")
        self.present: dict[str, bool] = {}
        for name, (rel, schema) in VIEWS.items():
            self._view(name, rel, schema)

    def _view(self, name: str, rel: str, schema: pa.Schema) -> None:
        import duckdb

        cols = ", ".join(f'"{f.name}"' for f in schema)
        files = None if self.sink.local else self.sink.list(rel)
        has = _any_parquet(self.sink.path(rel)) if self.sink.local else bool(files)
        self.present[name] = has
        if not has:
            self.con.register(f"_{name}_empty", schema.empty_table())
            self.con.execute(f"CREATE VIEW {name} AS SELECT {cols} FROM _{name}_empty")
        elif self.sink.local:
            glob = self.sink.path(rel).replace("'", "''") + "/**/*.parquet"
            src = f"read_parquet('{glob}', union_by_name=true, hive_partitioning=false)"
            # files of an older schema lack its newer columns (alerts.state before schema 3):
            # those are NULLs of the current schema's type (a plain read where none is missing)
            try:
                self.con.execute(f"CREATE VIEW {name} AS SELECT {cols} FROM {src}")
            except duckdb.BinderException:  # a column no file has yet: look at what they have
                have = {r[0] for r in self.con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()}
                self.con.register(f"_{name}_empty", schema.empty_table())
                types = dict(self.con.execute(f"SELECT column_name, column_type FROM "
                                              f"(DESCRIBE SELECT * FROM _{name}_empty)").fetchall())
                cols = ", ".join(f'"{f.name}"' if f.name in have else
                                 f'CAST(NULL AS {types[f.name]}) AS "{f.name}"' for f in schema)
                self.con.execute(f"CREATE VIEW {name} AS SELECT {cols} FROM {src}")
        else:
            import pyarrow.dataset as ds

            dataset = ds.dataset(files, schema=schema, format="parquet",
                                 filesystem=self.sink.fs)
            self.con.register(f"_{name}_ds", dataset)
            self.con.execute(f"CREATE VIEW {name} AS SELECT {cols} FROM _{name}_ds")

    def ts_extent(self, name: str):
        """(first, last) ``ts`` of a table, or None when it has no rows. For a local folder from
        the Parquet files' column statistics (a footer read, ~10x faster than a scan of ``ts``);
        by a query where a file lacks them, or for a URI."""
        rel = VIEWS[name][0]
        if self.present.get(name) and self.sink.local:
            glob = self.sink.path(rel).replace("'", "''") + "/**/*.parquet"
            row = self.con.execute(f"""
                SELECT min(stats_min_value::TIMESTAMPTZ), max(stats_max_value::TIMESTAMPTZ),
                       bool_and(stats_min_value IS NOT NULL AND stats_max_value IS NOT NULL)
                FROM parquet_metadata('{glob}') WHERE path_in_schema = 'ts'""").fetchall()[0]
            if row[2]:
                return row[0], row[1]
        row = self.rows(f"SELECT min(ts) AS lo, max(ts) AS hi FROM {name}")[0]
        return None if row["lo"] is None else (row["lo"], row["hi"])

    def signature(self, *names: str) -> str:
        """A digest of the files behind the views ``names`` (paths, sizes, mtimes): equal
        digests, equal query results over those views."""
        import hashlib

        h = hashlib.blake2b(digest_size=16)
        for name in names:
            h.update(repr((name, self.sink.signature(VIEWS[name][0]))).encode())
        return h.hexdigest()

    @property
    def empty(self) -> bool:
        return not any(self.present.values())

    def sql(self, query: str, **params) -> pa.Table:
        return self.con.sql(query, params=params or None).to_arrow_table()

    def rows(self, query: str, **params) -> list[dict]:
        return self.sql(query, **params).to_pylist()

    def close(self) -> None:
        self.con.close()


def _any_parquet(folder: str) -> bool:
    import os

    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if any(f.endswith(".parquet") and not f.startswith(".") for f in files):
            return True
    return False
