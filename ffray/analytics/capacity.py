"""Capacity planning: per GPU class, how GPU-seconds and peak memory grow with the work, which
class each past job should have run on, and what a new job will cost.

Public API (JSON-friendly: plain dicts and lists)::

    fit_model(store, classes, since=None, processor="faceswap", min_jobs=8) -> CapacityModel
    (right-sizing of past jobs: ``ffray.analytics.rightsize.right_size``)
    predict(model, classes, frames, width, height, faces, gpu=None, gpus=1, extrapolate=False)
        -> list[dict]
    save_model(model, path) / load_model(path) / model_path(data_dir)

The time law, fitted per GPU class on finished jobs::

    gpu_seconds = a * frames * megapixels + b * faces + c * frames + d

fitted per frame (``gpu_seconds / frames = a*MP + b*faces per frame + c + d/frames``: the noise is
proportional to the work, and a long job gets no more say than a short one) by a robust regressor
(``ffray.analytics.robust``: Huber, jobs off the fit by more than 4 scales listed with why and left
out). Predictions are never below ``frames x`` the smallest per-frame time seen on the class.
A fit is *poor* (reported, ranked last by ``predict``, never a right-sizing candidate) when R² of
GPU-seconds < ``POOR_R2``, the residual scale exceeds ``POOR_SPREAD`` of the median per-frame time,
or more than ``MAX_OUTLIER_SHARE`` of its jobs are outliers.

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
from ffray.analytics.robust import interval, r2, robust_fit
from ffray.errors import FFrayError

FEATURES = ["frames_mp", "faces", "frames", "intercept"]
LAW = "gpu_seconds = a*frames*megapixels + b*faces + c*frames + d"
MEM_FEATURES = ["megapixels", "intercept"]
MIN_JOBS = 8
POOR_R2 = 0.9  # R² of GPU-seconds (kept jobs) below this: poor fit
POOR_SPREAD = 0.25  # robust residual scale / median per-frame time above this: poor fit
MAX_OUTLIER_SHARE = 0.2  # more of a class's jobs than this off the law: poor fit
FRAMES = FEATURES.index("frames")  # the per-frame design's constant column
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
    ids = t["job_id"].to_pylist()
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
        f = time_fit(X[sel], y[sel], [i for i, s in zip(ids, sel) if s])
        kept = np.array(f.pop("kept"))
        f.update({"gpu_class": name, "known_class": known, "n_jobs": n,
                  "gpu_models": sorted({m for m, s in zip(models, sel) if s}),
                  "identified": f["rank"] == len(FEATURES),
                  "faces_per_frame_median": float(np.median(fpf[sel][kept])),
                  "memory": memory_fit(mp[sel][kept], peak[sel][kept])})
        fits.append(f)
    meta = {**(meta or {}), "law": LAW, "features": FEATURES, "memory_law": "peak_mem = m0 + m1*megapixels",
            "min_jobs": min_jobs, "jobs": int(t.num_rows), "headroom": HEADROOM,
            "limits": {"poor_r2": POOR_R2, "poor_spread": POOR_SPREAD,
                       "max_outlier_share": MAX_OUTLIER_SHARE},
            "fitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return CapacityModel(fits=fits, no_fit=no_fit, memory_all=memory_fit(mp, peak), meta=meta)


def time_fit(X: np.ndarray, y: np.ndarray, job_ids: list[str]) -> dict:
    """The time law on one class's jobs (``design`` rows, GPU-seconds), fitted per frame; adds
    ``r2`` (GPU-seconds, kept jobs), ``spread``, ``min_s_per_frame``, ``outliers`` (job ids with
    why) and ``poor`` (the reasons the fit is poor; empty when it is not)."""
    frames = X[:, FRAMES]
    f = robust_fit(X / frames[:, None], y / frames, FEATURES, FRAMES)
    kept = np.array(f["kept"])
    per_frame = y / frames
    fitted = interval(f, X / frames[:, None])[0] * frames
    f["r2"] = r2(y[kept], fitted[kept])
    f["residual_std"] = f["scale"]  # seconds per frame
    f["spread"] = None if f["scale"] is None else f["scale"] / float(np.median(per_frame[kept]))
    f["min_s_per_frame"] = float(per_frame[kept].min())
    f["outliers"] = [{"job_id": job_ids[o["index"]], "gpu_seconds": float(y[o["index"]]),
                      "fitted_gpu_seconds": float(fitted[o["index"]]), "ratio": o["ratio"],
                      "sigmas": o["sigmas"],
                      "why": (f"{o['ratio']:.2f}x the fit's GPU-seconds for its size" if o["ratio"] else
                              "far off the fit") + _sigmas(o["sigmas"])
                      + ": left out of the fit and of right-sizing"}
                     for o in f["outliers"]]
    poor = []
    if f["r2"] is not None and f["r2"] < POOR_R2:
        poor.append(f"R² {f['r2']:.2f} < {POOR_R2}")
    if f["spread"] is not None and f["spread"] > POOR_SPREAD:
        poor.append(f"residual spread {f['spread']:.0%} of the per-frame time > {POOR_SPREAD:.0%}")
    if len(f["outliers"]) > MAX_OUTLIER_SHARE * len(y):
        poor.append(f"{len(f['outliers'])} of {len(y)} jobs off the law (> {MAX_OUTLIER_SHARE:.0%})")
    f["poor"] = poor
    return f


def _sigmas(x: float | None) -> str:
    return "" if not x else f" ({x:+.0f} σ per frame)" if abs(x) < 1e3 else " (> 1000 σ per frame)"


def memory_fit(mp: np.ndarray, peak: np.ndarray) -> dict | None:
    """``peak = m0 + m1 * megapixels`` over jobs with a peak; None without 3 jobs at 2 sizes."""
    ok = ~np.isnan(peak)
    if ok.sum() < 3 or len(np.unique(mp[ok])) < 2:
        return None
    Z = np.column_stack([mp[ok], np.ones(int(ok.sum()))])
    f = robust_fit(Z, peak[ok], MEM_FEATURES, 1)
    f["r2"] = r2(peak[ok], interval(f, Z)[0])
    f.pop("kept")
    return f


def time_interval(f: dict, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GPU-seconds for ``design`` rows: (fitted, half-width of the 95 % interval, physical floor
    = frames x the smallest per-frame time seen on the class)."""
    frames = np.asarray(X, dtype=np.float64)[:, FRAMES]
    yhat, half = interval(f, X / frames[:, None])
    return yhat * frames, half * frames, frames * f.get("min_s_per_frame", 0.0)


def _reference(model: CapacityModel, table: dict) -> dict | None:
    """The fitted class extrapolations scale from: the one with most jobs and a known throughput."""
    cands = [f for f in model.fits if (table.get(f["gpu_class"]) or {}).get("relative_throughput")
             and not f.get("poor")]
    return max(cands, key=lambda f: f["n_jobs"]) if cands else None


def class_predictor(model: CapacityModel, classes: list[dict], name: str, extrapolate: bool = False):
    """``X -> (gpu_seconds, half-width of the 95 % interval, floor)`` (``time_interval``) for
    class ``name`` and whether it is extrapolated (scaled by relative throughput from the
    reference class); None when the class has no fit and may not (or cannot) be extrapolated."""
    f = model.fit_for(name)
    if f is not None:
        return (lambda X: time_interval(f, X)), None
    table = by_name(classes)
    rel = (table.get(name) or {}).get("relative_throughput")
    ref = _reference(model, table) if extrapolate and rel else None
    if ref is None:
        return None
    k = table[ref["gpu_class"]]["relative_throughput"] / rel

    def scaled(X):
        yhat, half, floor = time_interval(ref, X)
        return yhat * k, half * k, floor * k
    return scaled, ref["gpu_class"]


def _memory_predict(model: CapacityModel, name: str, mp: float) -> tuple:
    f = model.fit_for(name)
    for mem, source in (((f or {}).get("memory"), name), (model.memory_all, "all classes")):
        if mem:
            y, half = interval(mem, np.array([[mp, 1.0]]))
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
        raw, half, floor = (float(v[0]) for v in fn(X))
        y, low, high = max(raw, floor), max(raw - half, floor), max(raw + half, floor)
        c = table.get(name) or {}
        price, mem_gib = c.get("price_per_hour"), c.get("memory_gib")
        peak, peak_half, mem_src = _memory_predict(model, src or name, mp)
        f = model.fit_for(src or name)
        rows.append({
            "gpu_class": name, "extrapolated": src is not None, "extrapolated_from": src,
            "n_jobs": f["n_jobs"], "r2": f["r2"], "gpus": int(gpus), "floored": raw < floor,
            "poor_fit": "; ".join(f.get("poor") or []) or None,
            "gpu_seconds": y, "gpu_seconds_low": low, "gpu_seconds_high": high,
            "wall_s": y / gpus, "wall_s_low": low / gpus, "wall_s_high": high / gpus,
            "peak_mem_bytes": peak, "peak_mem_high_bytes": None if peak is None else peak + peak_half,
            "peak_mem_from": mem_src, "memory_gib": mem_gib,
            "fits_memory": None if peak is None or not mem_gib else peak * HEADROOM <= mem_gib * GIB,
            "price_per_hour": price,
            "cost": None if price is None else y / 3600 * price,
            "cost_low": None if price is None else low / 3600 * price,
            "cost_high": None if price is None else high / 3600 * price})
    return sorted(rows, key=lambda r: (r["poor_fit"] is not None, r["cost"] is None, r["cost"] or 0.0,
                                       r["gpu_seconds"]))


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
