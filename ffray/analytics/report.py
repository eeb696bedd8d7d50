"""A job's report, written into its job directory when it ends (``ffray swap`` prints where):

- ``report/trend.png``: utilization and memory of every GPU the job used (mean per time bucket,
  min..max shaded), chunk boundaries, one lane per GPU (or worker, without GPU telemetry) with
  every attempt, failed attempts and retries marked, and the job's key events annotated in words
  (``ffray.analytics.events``: "from 3:00 the video has two faces per frame (one before): GPU
  saturated", "chunk 37: attempt 1 failed on n0 · GPU 1a2b3c4d after 4.0 s, retried on n1 · ...");
- ``report/summary.json`` and ``report/summary.md``: the job's totals, exactly the
  ``ffray.analytics.costs.job_costs`` row of the job (plus its cost from the GPU class table),
  and the events.

``write_report(job_dir, target=None, classes=None) -> Path`` (the ``report`` folder). ``target``
is where the job's Parquet is (default: the data dir holding ``jobs/<id>``). Rendering uses
matplotlib's Agg canvas directly (no pyplot state, no browser).
"""

from __future__ import annotations

import io
import json
import threading
from datetime import datetime
from pathlib import Path

import numpy as np

from ffray.analytics.costs import short_node, worker_lanes
from ffray.errors import FFrayError

MAX_EVENTS = 8  # annotated on the chart (all of them are listed in summary.md)
FAILED_LANE = "failed attempts"  # a failed attempt's span does not say where it ran
GIB = float(1 << 30)


def report_dir(job_dir) -> Path:
    return Path(job_dir) / "report"


def warm_up() -> None:
    """Import what ``write_report`` uses (matplotlib, DuckDB) and load the chart's fonts: ~1 s
    of the 2-core VM's, paid while a job's chunks run (``start_warm_up``) instead of after
    them."""
    import duckdb  # noqa: F401
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1), dpi=20)
    FigureCanvasAgg(fig)
    fig.text(0.5, 0.5, "0", fontsize=7)
    fig.canvas.draw()


def start_warm_up() -> threading.Thread:
    """``warm_up`` on a daemon thread; a failure there only means the report pays it later."""

    def run() -> None:
        try:
            warm_up()
        except Exception:  # noqa: BLE001
            pass

    t = threading.Thread(target=run, name="report-warm-up", daemon=True)
    t.start()
    return t


def write_report(job_dir, target=None, classes=None) -> Path:
    """Query the job's costs, chunks and GPU curves; write trend.png, summary.json, summary.md."""
    from ffray.analytics.gpus import load_classes
    from ffray.analytics.source import Store
    from ffray.settings import atomic_write_bytes, atomic_write_text

    job_dir = Path(job_dir)
    job_id = job_dir.name
    store = Store(target if target is not None else job_dir.parent.parent)
    try:
        data = collect(store, job_id, classes if classes is not None else load_classes())
    finally:
        store.close()
    data["summary"]["prediction"] = _prediction(job_dir.parent.parent, data["summary"], classes)
    out = report_dir(job_dir)
    atomic_write_bytes(out / "trend.png", render_png(data))
    atomic_write_text(out / "summary.json", json.dumps(data["summary"], indent=1, default=_iso))
    atomic_write_text(out / "summary.md", markdown(data["summary"]))
    return out


def collect(store, job_id: str, classes: list[dict]) -> dict:
    """Everything the report shows, from the store: ``summary`` (JSON-friendly), ``chunks`` (the
    attempts, as dicts), ``trend`` (the GPU curves) and its bucket seconds."""
    from ffray.analytics.costs import chunk_costs, job_costs
    from ffray.analytics.gpus import with_prices
    from ffray.analytics.queries import job_trends

    jobs = job_costs(store, job_id=job_id)
    if jobs.num_rows == 0:
        raise FFrayError(f"no job record of {job_id} in {store.target}")
    totals = with_prices(jobs, classes).to_pylist()[0]
    chunks = chunk_costs(store, job_id=job_id).to_pylist()
    trend, bucket = job_trends(store, job_id)
    summary = {"job_id": job_id, "totals": totals,
               "events": events(chunks, trend, bucket, totals.get("fps")),
               "price_note": "cost = GPU-seconds / 3600 x the class's $/GPU-hour (ffray.analytics.gpus)"}
    return {"summary": summary, "chunks": chunks, "trend": trend, "bucket_s": bucket}


def events(chunks: list[dict], trend=None, bucket_s: float = 1.0, fps: float | None = None) -> list[dict]:
    """The job's key events (``ffray.analytics.events.job_events``) as JSON-friendly dicts."""
    from ffray.analytics.events import job_events

    return [e.to_json() for e in job_events(chunks, trend, bucket_s, fps, place=place)]


def place(c: dict) -> str:
    """Where an attempt ran, in the report's words: ``node · GPU <uuid tail>`` or ``node · CPU``."""
    if c.get("gpu_uuid"):
        return f"{short_node(c.get('node'))} · GPU {c['gpu_uuid'][-8:]}"
    return f"{short_node(c.get('node'))} · CPU" if c.get("node") else ""


def _prediction(data_dir: Path, summary: dict, classes) -> dict | None:
    """What the cached capacity model predicted for this job's class, if it has one."""
    try:
        from ffray.analytics.capacity import load_model, model_path, predict
        from ffray.analytics.gpus import load_classes

        t = summary["totals"]
        model = load_model(model_path(data_dir))
        if model is None or not model.fit_for(t.get("gpu_class")) or not t.get("frames") \
                or not t.get("width"):
            return None
        row = predict(model, classes or load_classes(), t["frames"], t["width"], t["height"],
                      t.get("faces_per_frame") or 0.0, gpu=t["gpu_class"],
                      gpus=max(1, t.get("gpus_used") or 1))[0]
        return {k: row[k] for k in ("gpu_class", "gpu_seconds", "gpu_seconds_low", "gpu_seconds_high",
                                    "n_jobs", "cost")} | {"fitted_at": model.meta.get("fitted_at")}
    except (FFrayError, KeyError, IndexError, ValueError):
        return None


def _iso(v):
    return v.isoformat() if isinstance(v, datetime) else str(v)


def _fmt(v, unit: str = "", nd: int = 1) -> str:
    return "–" if v is None else f"{v:,.{nd}f}{unit}"


def markdown(s: dict) -> str:
    t = s["totals"]
    mem = lambda b: "–" if b is None else f"{b / GIB:.2f} GiB"  # noqa: E731
    rows = [("status", t["status"]), ("input", t.get("input")),
            ("resolution", f"{t['width']}x{t['height']}" if t.get("width") else "–"),
            ("frames", t.get("frames")), ("chunks", f"{t.get('chunks_done')}/{t.get('chunks')}"),
            ("retries", t.get("retries")), ("wall time", _fmt(t.get("wall_s"), " s")),
            ("GPU-seconds", _fmt(t.get("gpu_seconds"), "", 2)), ("energy", _fmt(t.get("energy_j"), " J")),
            ("peak GPU memory (process)", mem(t.get("peak_mem_process"))),
            ("peak GPU memory (device)", mem(t.get("peak_mem_device"))),
            ("mean GPU utilization", _fmt(t.get("mean_util"), " %")),
            ("frames per GPU-second", _fmt(t.get("frames_per_gpu_second"), "", 2)),
            ("faces per frame", _fmt(t.get("faces_per_frame"), "", 2)),
            ("GPU", f"{t.get('gpu_model') or '–'} ({t.get('gpus_used') or 0} used)"),
            ("cost", "unknown (no price for this GPU)" if t.get("cost") is None and t.get("gpu_class")
             else _fmt(t.get("cost"), "", 4) if t.get("cost") is not None else "–"),
            ("cost per 1000 frames", _fmt(t.get("cost_per_1000_frames"), "", 4))]
    lines = [f"# Job {s['job_id']}", "", "| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    p = s.get("prediction")
    if p:
        lines += ["", f"Capacity model ({p['gpu_class']}, {p['n_jobs']} jobs, fitted {p['fitted_at']}) "
                  f"predicted {p['gpu_seconds']:.1f} GPU-s (95 % interval {p['gpu_seconds_low']:.1f}.."
                  f"{p['gpu_seconds_high']:.1f})."]
    lines += ["", "## Events", ""] + ([f"- {e['text']}" for e in s["events"]] or ["- none"])
    lines += ["", "![utilization, memory and chunks over time](trend.png)", ""]
    return "\n".join(lines)


def render_png(data: dict) -> bytes:
    """The trend chart as PNG bytes (matplotlib Agg canvas, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    s, chunks, trend = data["summary"], data["chunks"], data["trend"]
    t = s["totals"]
    starts = [c["start"] for c in chunks if c["start"] is not None]
    t0 = min(starts) if starts else None
    rel = (lambda ts: (ts - t0).total_seconds()) if t0 else (lambda ts: 0.0)
    fig = Figure(figsize=(13, 8.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax_u, ax_m, ax_c = fig.subplots(3, 1, sharex=True, height_ratios=[3, 3, 2])
    names = {c["gpu_uuid"]: f"{c['gpu_name'] or 'GPU'} {c['gpu_uuid'][-8:]} ({short_node(c['node'])})"
             for c in chunks if c["gpu_uuid"]}
    lane_of = {(c["chunk"], c["attempt"]): ln for c, ln in zip(chunks, worker_lanes(chunks))}

    def _lane(c: dict) -> tuple:
        return lane_of[(c["chunk"], c["attempt"])][:2]

    lane_names = {ln[:2]: ln[3] for ln in lane_of.values()}

    def _lane_name(k: tuple) -> str:
        dev, w = k
        if dev == "failed":
            return FAILED_LANE
        base = names.get(dev, f"{short_node(dev[4:])} CPU" if dev.startswith("cpu:") else dev[-8:])
        extra = lane_names.get(k, "").replace("worker ", "w").replace("slot ", "s")
        return f"{base} {extra}" if extra else base
    b = data["bucket_s"]
    if trend.num_rows:
        for uuid in sorted(set(trend["series"].to_pylist())):
            rows = [r for r in trend.to_pylist() if r["series"] == uuid]
            x = np.array([rel(r["bucket"]) + b / 2 for r in rows])
            for ax, key, k in ((ax_u, "util", 1.0), (ax_m, "mem", GIB)):
                lo, mid, hi = (np.array([(r[f"{key}_{q}"] or 0) / k for r in rows])
                               for q in ("min", "mean", "max"))
                line, = ax.plot(x, mid, lw=1.2, label=names.get(uuid, uuid))
                ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.18, lw=0)
        ax_u.legend(loc="lower right", fontsize=7, ncol=2)
    else:
        for ax in (ax_u, ax_m):
            ax.text(0.5, 0.5, "no GPU samples for this job (no NVML on its nodes, or telemetry off)",
                    transform=ax.transAxes, ha="center", va="center", color="0.4")
    done = [c for c in chunks if c["status"] == "done" and c["start"] is not None]
    if len(done) <= 80:
        for c in done:
            for ax in (ax_u, ax_m):
                ax.axvline(rel(c["start"]), color="0.6", lw=0.5, ls=":")
    lanes = sorted({_lane(c) for c in chunks}, key=lambda k: (k[0] == "failed", k))
    y_of = {k: i for i, k in enumerate(lanes)}
    for c in chunks:
        if c["start"] is None or c["end"] is None:
            continue
        y = y_of[_lane(c)]
        x0, w = rel(c["start"]), max(1e-3, (c["end"] - c["start"]).total_seconds())
        failed = c["status"] == "failed"
        ax_c.broken_barh([(x0, w)], (y - 0.38, 0.76), facecolors="#d62728" if failed else
                         ("#4c72b0" if c["chunk"] % 2 == 0 else "#8fa8d6"), hatch="//" if failed else None,
                         edgecolor="white", lw=0.5)
        if failed:
            ax_c.plot([x0 + w], [y], marker="x", color="black", ms=7)
        if len(chunks) <= 40:
            ax_c.text(x0 + w / 2, y, str(c["chunk"]), ha="center", va="center", fontsize=7,
                      color="white" if not failed else "black")
    for e in s["events"]:  # saturated periods shaded on the utilization chart
        if e["kind"] == "saturated" and e.get("start") is not None:
            ax_u.axvspan(rel(e["start"]), rel(e["end"]), color="#ff7f0e", alpha=0.12, lw=0)
    shown = [e for e in s["events"] if e.get("start") is not None][:MAX_EVENTS]
    top = len(lanes) - 0.6
    for i, e in enumerate(shown):  # texts stacked above the lanes, a line down to the attempt
        lane = next((c for c in chunks if c["chunk"] == e["chunk"] and c["start"] == e["start"]), None)
        y = y_of.get(_lane(lane), 0) if lane else top - 0.2
        x = rel(e["start"]) + ((e["end"] or e["start"]) - e["start"]).total_seconds() / 2
        ax_c.annotate(e["text"], (x, y + 0.38), xytext=(x, top + 0.45 * (i + 1)), textcoords="data",
                      ha="center", va="bottom", fontsize=7,
                      color={"retry": "#b22222", "saturated": "#c25e00"}.get(e["kind"], "black"),
                      arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.6})
    ax_u.set_ylabel("GPU utilization %")
    ax_u.set_ylim(0, 105)
    ax_m.set_ylabel("GPU memory GiB")
    ax_c.set_yticks(range(len(lanes)), [_lane_name(k) for k in lanes], fontsize=7)
    ax_c.set_ylim(-0.6, top + 0.45 * (len(shown) + 1) + 0.2)
    ax_c.set_xlabel("seconds since the job's first chunk started"
                    + (f" ({t0:%Y-%m-%d %H:%M:%S} UTC)" if t0 else ""))
    ax_c.set_ylabel("chunks")
    res = f"{t['width']}x{t['height']}" if t.get("width") else "?"
    fig.suptitle(f"job {s['job_id']}: {t.get('input') or ''} {res}, {t.get('frames')} frames, "
                 f"{t.get('chunks')} chunks, {t.get('gpu_model') or 'no GPU telemetry'}", fontsize=11)
    peak = t.get("peak_mem_process")
    ax_u.set_title(f"wall {_fmt(t.get('wall_s'), ' s')} | {_fmt(t.get('gpu_seconds'), ' GPU-s', 2)} | "
                   f"energy {_fmt(t.get('energy_j'), ' J', 0)} | peak process memory "
                   f"{'–' if peak is None else format(peak / GIB, '.2f') + ' GiB'}"
                   f" | mean util {_fmt(t.get('mean_util'), ' %')} | retries {t.get('retries') or 0}",
                   fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
