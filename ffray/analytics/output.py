"""How ``ffray analyze`` prints its results: a rich table, CSV or JSON on stdout, or a Parquet
file (``--output``, written under a temp name and renamed)."""

from __future__ import annotations

import io
import json
import math
import sys
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from ffray.errors import FFrayError

GIB = float(1 << 30)


def since_arg(text: str | None, now: datetime | None = None) -> datetime | None:
    """``7d``, ``24h``, ``30m`` (before now) or an ISO date/datetime (UTC unless it says)."""
    import re
    from datetime import timedelta, timezone

    if text is None:
        return None
    now = now or datetime.now(timezone.utc)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        return now - timedelta(seconds=float(m.group(1)) * unit)
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise FFrayError(f"--since wants 7d, 24h, 30m or an ISO date like 2026-11-20, got {text!r}") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def resolution_arg(text: str) -> tuple[int, int]:
    import re

    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text or "")
    if not m or int(m.group(1)) == 0 or int(m.group(2)) == 0:
        raise FFrayError(f"--resolution wants WIDTHxHEIGHT like 1920x1080, got {text!r}")
    return int(m.group(1)), int(m.group(2))


LABELS = {"job_id": "job", "gpu_seconds": "GPU-s", "faces_per_frame": "faces/frame",
          "frames_per_gpu_second": "frames/GPU-s", "peak_mem_process": "proc peak GiB",
          "peak_mem_device": "dev peak GiB", "peak_mem_bytes": "peak mem GiB", "mean_util": "util %",
          "peak_util": "peak util %", "energy_j": "energy J", "device_energy_j": "device energy J",
          "cost_per_1000_frames": "$/1k frames", "price_per_hour": "$/GPU-h", "wall_s": "wall s",
          "gpu_class": "GPU class", "gpu_model": "GPU model", "gpu_models": "GPU models", "n_jobs": "jobs",
          "residual_std": "resid std s", "mem_m0": "mem m0 GiB", "mem_m1": "mem m1 GiB/MP",
          "memory_gib": "GPU mem GiB", "peak_mem_high_bytes": "peak mem high GiB", "gpus_used": "GPUs",
          "throttled_share": "throttled", "faces_detected": "faces", "best_gpu_seconds": "best GPU-s",
          "best_wall_s": "best wall s", "gpu_seconds_low": "GPU-s low", "gpu_seconds_high": "GPU-s high",
          "over_provisioned": "over-prov.", "extrapolated_from": "extrapolated from", "r2": "R²",
          "mem_r2": "mem R²", "spread": "spread", "poor_fit": "poor fit",
          "fitted_gpu_seconds": "fitted GPU-s"}
BYTES = {"peak_mem_process", "peak_mem_device", "peak_mem_bytes", "peak_mem_high_bytes", "mem_m0", "mem_m1",
         "mem_used_bytes"}


def fmt_value(col: str, v) -> str:
    """A cell for the rich table: bytes as GiB, money as $, times to the second."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v))
    if isinstance(v, (int, float)) and col in BYTES:
        return f"{v / GIB:.2f}"
    if isinstance(v, float):
        if "cost" in col or "saving" in col or "price" in col:
            return f"${v:.4f}" if abs(v) < 10 else f"${v:,.2f}"
        if col == "spread":
            return f"{v:.1%}"
        if col.endswith("_share") or col.endswith("r2"):
            return f"{v:.3f}"
        return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.3g}" if abs(v) < 0.1 else f"{v:.2f}"
    return str(v)


def header(col: str) -> str:
    return LABELS.get(col, col.replace("_", " "))


def print_table(rows: list[dict], columns: list[str], title: str | None = None,
                caption: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, caption=caption, caption_justify="left", show_lines=False)
    for c in columns:
        t.add_column(header(c), justify="left" if c in ("job_id", "gpu_class", "gpu_model", "input", "note",
                                                        "status", "gpu_models", "reason", "from", "to")
                     else "right", overflow="fold")
    for r in rows:
        t.add_row(*[fmt_value(c, r.get(c)) for c in columns])
    Console(width=max(100, _width())).print(t)


def _width() -> int:
    import shutil

    return shutil.get_terminal_size((160, 40)).columns


def emit(data: pa.Table | list[dict], fmt: str, output: str | None, columns: list[str] | None = None,
         title: str | None = None, caption: str | None = None, limit: int | None = None) -> None:
    """Print ``data`` as ``fmt``; Parquet goes to ``output``. ``columns`` picks and orders what is
    shown in the table (all formats when given); ``limit`` caps the table's rows."""
    if isinstance(data, list):
        data = pa.Table.from_pylist(data) if data else pa.table({c: pa.array([], pa.null())
                                                                  for c in (columns or [])})
    if columns:
        data = data.select([c for c in columns if c in data.column_names])
    if fmt == "parquet":
        write_parquet(data, output)
        return
    if output:
        raise FFrayError("--output is for --format parquet (table, csv and json go to stdout)")
    if fmt == "json":
        json.dump(data.to_pylist(), sys.stdout, default=_json_default, indent=1)
        sys.stdout.write("\n")
    elif fmt == "csv":
        import pyarrow.csv as pcsv

        buf = io.BytesIO()
        pcsv.write_csv(_flat(data), buf)
        sys.stdout.write(buf.getvalue().decode())
    else:
        rows = data.to_pylist()
        shown = rows if not limit or limit <= 0 else rows[:limit]
        note = f"showing {len(shown)} of {len(rows)} rows (--limit 0 for all)" \
            if len(shown) < len(rows) else None
        print_table(shown, data.column_names, title, "\n".join(x for x in (caption, note) if x) or None)


def _flat(t: pa.Table) -> pa.Table:
    """CSV has no lists: join them with spaces."""
    import pyarrow.compute as pc

    for i, f in enumerate(t.schema):
        if pa.types.is_list(f.type) or pa.types.is_large_list(f.type):
            t = t.set_column(i, f.name, pc.binary_join(pc.cast(t[f.name], pa.list_(pa.string())), " "))
        elif pa.types.is_null(f.type):
            t = t.set_column(i, f.name, pc.cast(t[f.name], pa.string()))
    return t


def _json_default(v):
    if isinstance(v, datetime):
        return v.isoformat()
    return str(v)


def json_dump(obj) -> str:
    return json.dumps(obj, default=_json_default, indent=1)


def write_parquet(data: pa.Table, output: str | None) -> None:
    import pyarrow.parquet as pq

    from ffray.settings import atomic_write_bytes

    if not output:
        raise FFrayError("--format parquet needs --output FILE")
    out = Path(output).expanduser()
    if out.is_dir():
        raise FFrayError(f"--output is a directory: {out}")
    if not out.parent.is_dir():
        raise FFrayError(f"--output folder does not exist: {out.parent}")
    buf = io.BytesIO()
    pq.write_table(data, buf, compression="zstd")
    try:
        atomic_write_bytes(out, buf.getvalue())
    except OSError as e:
        raise FFrayError(f"cannot write {out}: {e.strerror}") from None
    print(out)
