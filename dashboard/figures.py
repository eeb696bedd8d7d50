"""Plotly figures from analytics tables (pure: table in, figure out)."""

from __future__ import annotations

import numpy as np
import plotly.io as pio
import pyarrow as pa

from ffray.analytics.costs import short_node

GIB = 1024 ** 3
TEMPLATE = pio.templates["plotly_white"].to_plotly_json()  # plotly.js needs the template itself
STATUS_COLOURS = {"done": "#1f77b4", "retried": "#ff7f0e", "failed": "#d62728"}


def times(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """UTC timestamps as naive numpy datetime64 (plotly serialises these fast)."""
    return arr.cast(pa.timestamp("us")).to_numpy(zero_copy_only=False)


def series_groups(table: pa.Table):
    """(series key, slice) per series of a ``trends`` table sorted by series, bucket."""
    keys = table["series"].to_numpy(zero_copy_only=False)
    if not len(keys):
        return []
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    return [(keys[a], slice(a, b)) for a, b in zip(starts, ends)]




def chunk_category(row: dict) -> str:
    if row["status"] != "done":
        return "failed"
    return "retried" if row["attempt"] > 1 else "done"


def gpu_label(uuid: str | None, node: str | None, index=None) -> str:
    """``node · GPU<index>`` (the UUID's tail when the index is unknown)."""
    if not uuid:
        return "failed attempts"
    n = short_node(node)
    return f"{n} · GPU{index}" if index is not None else f"{n} · {uuid[-12:]}"


def lane_label(r: dict, labels: dict, lane: tuple[str, int, int] | None = None) -> str:
    """The timeline row of a chunk attempt: its GPU, its node's CPU, or the failed-attempts row;
    with ``lane`` (``worker_lanes``) one row per worker, or per chunk slot of a worker, where spans
    on a device overlap."""
    if r["gpu_uuid"]:
        base = labels.get(r["gpu_uuid"], gpu_label(r["gpu_uuid"], r["node"]))
    elif r["status"] == "done" or r.get("node"):
        base = f"{short_node(r['node'])} · CPU"
    else:  # a failed attempt of an older ledger: it does not say where it ran
        return "failed attempts"
    return f"{base} · {lane[3]}" if lane and lane[2] > 1 and lane[3] else base


def chunk_hover(r: dict) -> str:
    mem = r.get("peak_mem_process") or r.get("peak_mem_device")
    parts = [f"<b>chunk {r['chunk']}</b> attempt {r['attempt']} ({r['status']})",
             f"{r.get('frames') or 0} frames, {r.get('faces_detected') or 0} faces "
             f"({(r.get('faces_detected') or 0) / max(1, r.get('frames') or 1):.2f}/frame)",
             f"{r['seconds']:.1f} s: decode {r.get('decode_s') or 0:.1f}, process {r.get('infer_s') or 0:.1f}"
             f", encode {r.get('encode_s') or 0:.1f}"]
    if r["status"] == "done":
        parts += [f"GPU-seconds {r['gpu_seconds']:.1f} (share {r['gpus']:g})",
                  f"energy {(r.get('energy_j') or 0) / 1000:.2f} kJ",
                  f"peak memory {(mem or 0) / GIB:.2f} GiB, mean util {r.get('mean_util') or 0:.0f} %"]
    return "<br>".join(parts)
