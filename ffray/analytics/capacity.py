"""Capacity planning: per GPU class, how GPU-seconds and peak memory grow with the work, which
class each past job should have run on, and what a new job will cost.

Public API (JSON-friendly: plain dicts and lists)::

    fit_model(store, classes, since=None, processor="faceswap", min_jobs=8) -> CapacityModel
    right_size(store_or_jobs, model, classes, deadline_s=None, extrapolate=False)
        -> (rows: list[dict], summary: dict)
    predict(model, classes, frames, width, height, faces, gpu=None, gpus=1, extrapolate=False)
        -> list[dict]
    save_model(model, path) / load_model(path) / model_path(data_dir)

The time law, fitted per GPU class on finished jobs (least squares, ``ffray.analytics.linfit``)::

    gpu_seconds = a * frames * megapixels + b * faces + c * frames + d

(``faces`` = faces detected over the job = frames x faces per frame; ``c`` is per-frame work that
does not grow with resolution: decode, encode, per-chunk set-up spread over its frames; ``d`` is
per-job set-up.) A class needs ``min_jobs`` finished jobs for a fit; with fewer it is listed in
``model.no_fit`` with the reason, and never extrapolated to silently. The memory law, per class
and pooled over all classes: ``peak_mem_process = m0 + m1 * megapixels`` (the job records carry no
batch size, so batch is not a feature; the device peak stands in when no per-process sample was
taken).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ffray.analytics.costs import job_costs
from ffray.analytics.gpus import by_name, classify
from ffray.analytics.linfit import least_squares, predict_with_interval
from ffray.errors import FFrayError

FEATURES = ["frames_mp", "faces", "frames", "intercept"]
LAW = "gpu_seconds = a*frames*megapixels + b*faces + c*frames + d"
MEM_FEATURES = ["megapixels", "intercept"]
MIN_JOBS = 8
HEADROOM = 1.2  # peak memory x this must fit in the class's memory
GIB = float(1 << 30)


@dataclass
class CapacityModel:
    fits: list[dict] = field(default_factory=list)  # one per GPU class with a fit
    no_fit: list[dict] = field(default_factory=list)  # classes seen without a fit, and why
    memory_all: dict | None = None  # memory law pooled over every class
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"meta": self.meta, "fits": self.fits, "no_fit": self.no_fit,
                "memory_all": self.memory_all}

    @classmethod
    def from_dict(cls, d: dict) -> CapacityModel:
        return cls(fits=list(d.get("fits", [])), no_fit=list(d.get("no_fit", [])),
                   memory_all=d.get("memory_all"), meta=dict(d.get("meta", {})))

    def fit_for(self, gpu_class: str | None) -> dict | None:
        return next((f for f in self.fits if f["gpu_class"] == gpu_class), None)


def design(frames, megapixels, faces) -> np.ndarray:
    """Feature matrix (``FEATURES`` order) for arrays of frames, megapixels and total faces."""
    frames = np.asarray(frames, dtype=np.float64)
    return np.column_stack([frames * np.asarray(megapixels, dtype=np.float64),
                            np.asarray(faces, dtype=np.float64), frames, np.ones_like(frames)])


def job_table(store, classes: list[dict], since=None, processor: str | None = "faceswap") -> pa.Table:
    """Finished jobs with GPU-seconds and a known GPU model (``job_costs`` rows), plus
    ``gpu_class``, ``megapixels``, ``faces`` and ``peak_mem`` (process peak, else device peak)."""
    t = job_costs(store, since=since)
    keep = pc.and_(pc.equal(t["status"], "done"), pc.greater(pc.fill_null(t["gpu_seconds"], 0.0), 0.0))
    keep = pc.and_(keep, pc.and_(pc.is_valid(t["gpu_model"]), pc.greater(pc.fill_null(t["frames"], 0), 0)))
    keep = pc.and_(keep, pc.and_(pc.is_valid(t["width"]), pc.is_valid(t["height"])))
    if processor not in (None, "", "all"):
        keep = pc.and_(keep, pc.equal(pc.fill_null(t["processor"], ""), processor))
    return add_job_columns(t.filter(keep), classes)


def add_job_columns(t: pa.Table, classes: list[dict]) -> pa.Table:
    uniq = pc.unique(t["gpu_model"]).to_pylist()
    idx = pc.index_in(t["gpu_model"], value_set=pa.array(uniq, pa.string()))
    mp = pc.divide(pc.multiply(pc.cast(t["width"], pa.float64()), pc.cast(t["height"], pa.float64())), 1e6)
    peak = pc.coalesce(t["peak_mem_process"], t["peak_mem_device"])
    gpu_class = pc.take(pa.array([classify(n, classes) for n in uniq], pa.string()), idx)
    return t.append_column("gpu_class", gpu_class).append_column("megapixels", mp) \
        .append_column("faces", pc.cast(pc.fill_null(t["faces_detected"], 0), pa.float64())) \
        .append_column("peak_mem", peak)


def _np(t: pa.Table, col: str, fill=np.nan) -> np.ndarray:
    return t[col].to_numpy(zero_copy_only=False).astype(np.float64) if fill is np.nan else \
        pc.fill_null(t[col], fill).to_numpy(zero_copy_only=False).astype(np.float64)


def fit_model(store, classes: list[dict], since=None, processor: str | None = "faceswap",
              min_jobs: int = MIN_JOBS) -> CapacityModel:
    """Fit the time law per GPU class (classes with at least ``min_jobs`` finished jobs) and the
    memory law per class and pooled. ``store`` is an ``ffray.analytics.source.Store``."""
    t = job_table(store, classes, since=since, processor=processor)
    return fit_jobs(t, classes, min_jobs=min_jobs, meta={
        "since": since.isoformat() if hasattr(since, "isoformat") else since, "processor": processor})


def fit_jobs(t: pa.Table, classes: list[dict], min_jobs: int = MIN_JOBS,
             meta: dict | None = None) -> CapacityModel:
    """``fit_model`` on a ``job_table``."""
    min_jobs = max(int(min_jobs), len(FEATURES) + 1)
    gclass = t["gpu_class"].to_pylist()
    models = t["gpu_model"].to_pylist()
    X = design(_np(t, "frames"), _np(t, "megapixels"), _np(t, "faces"))
    y = _np(t, "gpu_seconds")
    mp, peak = _np(t, "megapixels"), _np(t, "peak_mem")
    fpf = _np(t, "faces_per_frame", 0.0)
    table = by_name(classes)
    fits, no_fit = [], []
    for name in sorted(set(gclass)):
        sel = np.array([g == name for g in gclass])
        n = int(sel.sum())
        known = name in table
        if n < min_jobs:
            no_fit.append({"gpu_class": name, "n_jobs": n, "known_class": known,
                           "reason": f"{n} finished job(s) on it, {min_jobs} needed for a fit"})
            continue
        f = least_squares(X[sel], y[sel], FEATURES)
        f.update({"gpu_class": name, "known_class": known, "n_jobs": n,
                  "gpu_models": sorted({m for m, s in zip(models, sel) if s}),
                  "identified": f["rank"] == len(FEATURES),
                  "faces_per_frame_median": float(np.median(fpf[sel])),
                  "memory": memory_fit(mp[sel], peak[sel])})
        fits.append(f)
    meta = {**(meta or {}), "law": LAW, "features": FEATURES, "memory_law": "peak_mem = m0 + m1*megapixels",
            "min_jobs": min_jobs, "jobs": int(t.num_rows), "headroom": HEADROOM,
            "fitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return CapacityModel(fits=fits, no_fit=no_fit, memory_all=memory_fit(mp, peak), meta=meta)


def memory_fit(mp: np.ndarray, peak: np.ndarray) -> dict | None:
    """``peak = m0 + m1 * megapixels`` over jobs with a peak; None without 3 jobs at 2 sizes."""
    ok = ~np.isnan(peak)
    if ok.sum() < 3 or len(np.unique(mp[ok])) < 2:
        return None
    return least_squares(np.column_stack([mp[ok], np.ones(int(ok.sum()))]), peak[ok], MEM_FEATURES)


def _reference(model: CapacityModel, table: dict) -> dict | None:
    """The fitted class extrapolations scale from: the one with most jobs and a known throughput."""
    cands = [f for f in model.fits if (table.get(f["gpu_class"]) or {}).get("relative_throughput")]
    return max(cands, key=lambda f: f["n_jobs"]) if cands else None


def class_predictor(model: CapacityModel, classes: list[dict], name: str, extrapolate: bool = False):
    """``X -> (gpu_seconds, half-width of the 95 % interval)`` for class ``name`` and whether it
    is extrapolated (scaled by relative throughput from the reference class); None when the
    class has no fit and may not (or cannot) be extrapolated."""
    f = model.fit_for(name)
    if f is not None:
        return (lambda X: predict_with_interval(f, X)), None
    table = by_name(classes)
    rel = (table.get(name) or {}).get("relative_throughput")
    ref = _reference(model, table) if extrapolate and rel else None
    if ref is None:
        return None
    k = table[ref["gpu_class"]]["relative_throughput"] / rel

    def scaled(X):
        yhat, half = predict_with_interval(ref, X)
        return yhat * k, half * k
    return scaled, ref["gpu_class"]


def _memory_predict(model: CapacityModel, name: str, mp: float) -> tuple:
    f = model.fit_for(name)
    for mem, source in (((f or {}).get("memory"), name), (model.memory_all, "all classes")):
        if mem:
            y, half = predict_with_interval(mem, np.array([[mp, 1.0]]))
            return float(y[0]), float(half[0]), source
    return None, None, None


def predict(model: CapacityModel, classes: list[dict], frames: int, width: int, height: int,
            faces: float, gpu: str | None = None, gpus: int = 1, extrapolate: bool = False) -> list[dict]:
    """Per GPU class with a fit (and, with ``extrapolate``, classes scaled from one): predicted
    GPU-seconds with its 95 % prediction interval, wall seconds on ``gpus`` GPUs, peak memory
    (and whether x1.2 fits the class), and cost; cheapest first. ``faces`` is faces per frame;
    ``gpu`` (class or NVML name) keeps one class."""
    if frames <= 0 or width <= 0 or height <= 0 or faces < 0 or gpus < 1:
        raise FFrayError("predict needs frames > 0, a positive resolution, faces >= 0 and gpus >= 1")
    table = by_name(classes)
    names = [f["gpu_class"] for f in model.fits]
    if extrapolate:
        names += [c["name"] for c in classes if c["name"] not in names]
    if gpu is not None:
        want = gpu if gpu in table or model.fit_for(gpu) else classify(gpu, classes)
        if want not in names or class_predictor(model, classes, want, extrapolate) is None:
            have = ", ".join(names) or "none"
            raise FFrayError(f"no capacity fit for GPU class {want!r} (classes with a fit: {have}"
                             f"{'' if extrapolate else '; --extrapolate scales from a measured class'})")
        names = [want]
    mp = width * height / 1e6
    X = design([frames], [mp], [frames * faces])
    rows = []
    for name in names:
        pr = class_predictor(model, classes, name, extrapolate)
        if pr is None:
            continue
        fn, src = pr
        y, half = fn(X)
        y, half = max(0.0, float(y[0])), float(half[0])
        c = table.get(name) or {}
        price, mem_gib = c.get("price_per_hour"), c.get("memory_gib")
        peak, peak_half, mem_src = _memory_predict(model, src or name, mp)
        f = model.fit_for(src or name)
        rows.append({
            "gpu_class": name, "extrapolated": src is not None, "extrapolated_from": src,
            "n_jobs": f["n_jobs"], "r2": f["r2"], "gpus": int(gpus),
            "gpu_seconds": y, "gpu_seconds_low": max(0.0, y - half), "gpu_seconds_high": y + half,
            "wall_s": y / gpus, "wall_s_low": max(0.0, y - half) / gpus, "wall_s_high": (y + half) / gpus,
            "peak_mem_bytes": peak, "peak_mem_high_bytes": None if peak is None else peak + peak_half,
            "peak_mem_from": mem_src, "memory_gib": mem_gib,
            "fits_memory": None if peak is None or not mem_gib else peak * HEADROOM <= mem_gib * GIB,
            "price_per_hour": price,
            "cost": None if price is None else y / 3600 * price,
            "cost_low": None if price is None else max(0.0, y - half) / 3600 * price,
            "cost_high": None if price is None else (y + half) / 3600 * price})
    return sorted(rows, key=lambda r: (r["cost"] is None, r["cost"] or 0.0, r["gpu_seconds"]))


def right_size(store_or_jobs, model: CapacityModel, classes: list[dict], deadline_s: float | None = None,
               extrapolate: bool = False) -> tuple[list[dict], dict]:
    """For every finished job: the cheapest GPU class where its peak memory x1.2 fits and its
    predicted wall time (GPU-seconds / GPUs it used) meets ``deadline_s``. The class it ran on
    counts with its measured GPU-seconds and cost. Other candidates are classes with a fit, a
    price and a memory size (with ``extrapolate``, also classes scaled from a measured one by
    relative throughput; rows say so). Returns per-job rows and a summary (jobs,
    over_provisioned_share, actual_cost, right_sized_cost, saving_share, classes_without_data,
    moves, ...). ``store_or_jobs``: a Store, or a ``job_table``."""
    t = store_or_jobs if isinstance(store_or_jobs, pa.Table) else job_table(
        store_or_jobs, classes, since=model.meta.get("since"), processor=model.meta.get("processor"))
    if "gpu_class" not in t.column_names:
        t = add_job_columns(t, classes)
    table = by_name(classes)
    n = t.num_rows
    ran = t["gpu_class"].to_pylist()
    X = design(_np(t, "frames"), _np(t, "megapixels"), _np(t, "faces"))
    actual_s = _np(t, "gpu_seconds")
    gpus = np.maximum(_np(t, "gpus_used", 1.0), 1.0)
    peak = _np(t, "peak_mem")
    ran_price = np.array([(table.get(g) or {}).get("price_per_hour") for g in ran], dtype=np.float64)
    actual_cost = actual_s / 3600 * ran_price  # NaN where the price is unknown
    priced = ~np.isnan(actual_cost)
    deadline = np.inf if deadline_s is None else float(deadline_s)
    cands, without = [], []
    for c in sorted({*table, *(f["gpu_class"] for f in model.fits)}):
        info = table.get(c) or {}
        pr = class_predictor(model, classes, c, extrapolate)
        if pr is None:
            nf = next((x for x in model.no_fit if x["gpu_class"] == c), None)
            without.append({"gpu_class": c, "reason": f"{nf['reason']}: not considered" if nf
                            else "no data: not considered"})
            continue
        if info.get("price_per_hour") is None or not info.get("memory_gib"):
            what = "price" if info.get("price_per_hour") is None else "memory size"
            without.append({"gpu_class": c, "reason": f"no {what}: not considered"})
            continue
        mine = np.array([g == c for g in ran], dtype=bool)
        secs = np.where(mine, actual_s, np.maximum(pr[0](X)[0], 0.0))
        fits_mem = mine | (np.nan_to_num(peak, nan=0.0) * HEADROOM <= info["memory_gib"] * GIB)
        cands.append((c, pr[1], secs, secs / gpus, secs / 3600 * info["price_per_hour"],
                      fits_mem & (secs / gpus <= deadline)))
    # the class a job ran on, as measured, is always a candidate when it has a price
    own = (ran, [None] * n, actual_s, actual_s / gpus, actual_cost, priced & (actual_s / gpus <= deadline))
    best_cost, best = np.full(n, np.inf), np.full(n, -1)
    for i, (_, _, _, _, cost, ok) in enumerate([own, *cands]):
        better = ok & (cost < best_cost)
        best_cost, best = np.where(better, cost, best_cost), np.where(better, i, best)
    rows, moves = [], {}
    info_cols = ["job_id", "frames", "width", "height", "faces_per_frame", "gpu_model"]
    for j, r in enumerate(t.select(info_cols).to_pylist()):
        b = int(best[j])
        cb = None if b < 0 else own if b == 0 else cands[b - 1]
        name = None if cb is None else cb[0][j] if b == 0 else cb[0]
        over = bool(priced[j] and cb is not None and name != ran[j] and cb[4][j] < actual_cost[j] - 1e-12)
        if over:
            moves[(ran[j], name)] = moves.get((ran[j], name), 0) + 1
        rows.append({**r, "gpu_class": ran[j], "gpus_used": int(gpus[j]),
                     "peak_mem_bytes": None if np.isnan(peak[j]) else float(peak[j]),
                     "gpu_seconds": float(actual_s[j]), "cost": float(actual_cost[j]) if priced[j] else None,
                     "best_class": name, "best_gpu_seconds": float(cb[2][j]) if cb else None,
                     "best_wall_s": float(cb[3][j]) if cb else None,
                     "best_cost": float(cb[4][j]) if cb else None,
                     "extrapolated": bool(b > 0 and cb[1] is not None and name != ran[j]),
                     "over_provisioned": over if priced[j] else None,
                     "saving": float(actual_cost[j] - cb[4][j]) if priced[j] and cb else None,
                     "note": (f"no price for {ran[j]}" if not priced[j] else
                              "no class meets the deadline and memory" if cb is None else None)})
    right = np.where(best >= 0, best_cost, actual_cost)
    act_sum, right_sum = float(actual_cost[priced].sum()), float(right[priced].sum())
    n_priced, n_over = int(priced.sum()), sum(1 for r in rows if r["over_provisioned"])
    summary = {
        "jobs": n, "jobs_priced": n_priced, "jobs_unpriced": n - n_priced,
        "over_provisioned": n_over, "over_provisioned_share": n_over / n_priced if n_priced else None,
        "actual_cost": act_sum, "right_sized_cost": right_sum, "saving": act_sum - right_sum,
        "saving_share": 1 - right_sum / act_sum if act_sum > 0 else None,
        "no_feasible_class": int((best < 0).sum()), "deadline_s": deadline_s, "headroom": HEADROOM,
        "extrapolate": extrapolate,
        "classes_considered": [{"gpu_class": c[0], "extrapolated_from": c[1]} for c in cands],
        "classes_without_data": without,
        "moves": [{"from": a, "to": b, "jobs": k}
                  for (a, b), k in sorted(moves.items(), key=lambda x: -x[1])]}
    return rows, summary


def model_path(data_dir) -> Path:
    return Path(data_dir) / "capacity" / "model.json"


def save_model(model: CapacityModel, path) -> Path:
    from ffray.settings import atomic_write_text

    atomic_write_text(Path(path), json.dumps(model.to_dict(), indent=1, default=str))
    return Path(path)


def load_model(path) -> CapacityModel | None:
    """The cached model at ``path``; None when there is none."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        return CapacityModel.from_dict(json.loads(p.read_text()))
    except (OSError, ValueError, AttributeError) as e:
        raise FFrayError(f"cannot read the capacity model {p}: {e} "
                         "(rerun `ffray analyze capacity`)") from None
