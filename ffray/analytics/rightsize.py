"""Right-sizing of past jobs: per finished job, the cheapest GPU class whose memory fits its peak
x1.2 and whose predicted wall time meets the deadline, with the saving and its 95 % interval;
and the same in aggregate. The capacity model is ``ffray.analytics.capacity``.

Honesty rules: a job the fit lists as an outlier is not right-sized (it keeps its measured cost:
the law does not describe it); a class with a poor fit is never a candidate; predictions are
never below the class's physical floor. The aggregate interval adds, per destination class, the
coefficient uncertainty of the jobs moved there (correlated: one fit predicts them all) and
their independent residual noise; classes are independent fits.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ffray.analytics.capacity import (
    FRAMES,
    HEADROOM,
    CapacityModel,
    _np,
    _reference,
    add_job_columns,
    class_predictor,
    design,
    job_table,
)
from ffray.analytics.gpus import by_name


def _candidates(model, classes, table, ran, X, actual_s, gpus, peak, deadline, extrapolate):
    cands, without = [], []
    for c in sorted({*table, *(f["gpu_class"] for f in model.fits)}):
        info = table.get(c) or {}
        fit = model.fit_for(c)
        if fit is not None and fit.get("poor"):
            without.append({"gpu_class": c, "reason": f"poor fit ({'; '.join(fit['poor'])}): not considered"})
            continue
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
        raw, half, floor = pr[0](X)
        pred = np.maximum(raw, floor)
        secs = np.where(mine, actual_s, pred)
        lo = np.where(mine, actual_s, np.maximum(raw - half, floor))
        hi = np.where(mine, actual_s, np.maximum(raw + half, pred))
        price = info["price_per_hour"] / 3600
        fits_mem = mine | (np.nan_to_num(peak, nan=0.0) * HEADROOM <= info["memory_gib"] * (1 << 30))
        cands.append({"name": c, "from": pr[1], "secs": secs, "cost": secs * price, "low": lo * price,
                      "high": hi * price, "price": price, "mine": mine,
                      "ok": fits_mem & (secs / gpus <= deadline)})
    return cands, without


def _aggregate_half(model, classes, cands, best, X) -> float:
    """Half-width of the 95 % interval of the summed predicted cost of the moved jobs."""
    table = by_name(classes)
    var, t = 0.0, 0.0
    for i, c in enumerate(cands, start=1):
        moved = (best == i) & ~c["mine"]
        if not moved.any():
            continue
        f, k = model.fit_for(c["name"]), 1.0
        if f is None:  # extrapolated from the reference class
            f = _reference(model, table)
            k = table[f["gpu_class"]]["relative_throughput"] / table[c["name"]]["relative_throughput"]
        if f.get("scale") is None:
            return float("nan")
        frames = X[moved, FRAMES]
        g = X[moved].sum(axis=0)  # sum over the jobs of frames x their per-frame design row
        inv = np.asarray(f["ztz_inv"])
        var += (c["price"] * k * f["scale"]) ** 2 * (float(g @ inv @ g) + float((frames ** 2).sum()))
        t = max(t, f["t95"])
    return float(t * np.sqrt(var))


def right_size(store_or_jobs, model: CapacityModel, classes: list[dict], deadline_s: float | None = None,
               extrapolate: bool = False) -> tuple[list[dict], dict]:
    """Per-job rows and a summary (jobs, over_provisioned_share, actual_cost, right_sized_cost,
    saving, saving_low/high, saving_share[_low|_high], outliers, classes_without_data, moves,
    ...). Candidates: classes with a fit that is not poor, a price and a memory size (with
    ``extrapolate``, also classes scaled from a measured one by relative throughput); the class
    a job ran on counts with its measured cost. ``store_or_jobs``: a Store, or a ``job_table``."""
    t = store_or_jobs if isinstance(store_or_jobs, pa.Table) else job_table(
        store_or_jobs, classes, since=model.meta.get("since"), processor=model.meta.get("processor"))
    if "gpu_class" not in t.column_names:
        t = add_job_columns(t, classes)
    table = by_name(classes)
    n = t.num_rows
    ran = t["gpu_class"].to_pylist()
    ids = t["job_id"].to_pylist()
    X = design(_np(t, "frames"), _np(t, "megapixels"), _np(t, "faces"))
    actual_s = _np(t, "gpu_seconds")
    gpus = np.maximum(_np(t, "gpus_used", 1.0), 1.0)
    peak = _np(t, "peak_mem")
    ran_price = np.array([(table.get(g) or {}).get("price_per_hour") for g in ran], dtype=np.float64)
    actual_cost = actual_s / 3600 * ran_price  # NaN where the price is unknown
    priced = ~np.isnan(actual_cost)
    why = {o["job_id"]: o["why"] for f in model.fits for o in f.get("outliers", [])}
    outlier = np.array([i in why for i in ids], dtype=bool)
    deadline = np.inf if deadline_s is None else float(deadline_s)
    cands, without = _candidates(model, classes, table, ran, X, actual_s, gpus, peak, deadline, extrapolate)
    best_cost, best = np.where(priced & (actual_s / gpus <= deadline), actual_cost, np.inf), np.zeros(n, int)
    best[~np.isfinite(best_cost)] = -1
    for i, c in enumerate(cands, start=1):
        better = c["ok"] & (c["cost"] < best_cost) & ~outlier
        best_cost, best = np.where(better, c["cost"], best_cost), np.where(better, i, best)
    rows, moves = [], {}
    info_cols = ["job_id", "frames", "width", "height", "faces_per_frame", "gpu_model"]
    for j, r in enumerate(t.select(info_cols).to_pylist()):
        b = int(best[j])
        c = cands[b - 1] if b > 0 else None
        name = c["name"] if c else ran[j] if b == 0 else None
        secs = c["secs"][j] if c else actual_s[j] if b == 0 else None
        cost, low, high = ((c["cost"][j], c["low"][j], c["high"][j]) if c else
                           (actual_cost[j],) * 3 if b == 0 else (None,) * 3)
        over = bool(priced[j] and c is not None and name != ran[j] and cost < actual_cost[j] - 1e-12)
        if over:
            moves[(ran[j], name)] = moves.get((ran[j], name), 0) + 1
        saving = priced[j] and cost is not None
        rows.append({**r, "gpu_class": ran[j], "gpus_used": int(gpus[j]),
                     "peak_mem_bytes": None if np.isnan(peak[j]) else float(peak[j]),
                     "gpu_seconds": float(actual_s[j]), "cost": float(actual_cost[j]) if priced[j] else None,
                     "best_class": name, "best_gpu_seconds": None if secs is None else float(secs),
                     "best_wall_s": None if secs is None else float(secs / gpus[j]),
                     "best_cost": None if cost is None else float(cost),
                     "best_cost_low": None if low is None else float(low),
                     "best_cost_high": None if high is None else float(high),
                     "extrapolated": bool(c is not None and c["from"] is not None and name != ran[j]),
                     "over_provisioned": over if priced[j] else None, "outlier": bool(outlier[j]),
                     "saving": float(actual_cost[j] - cost) if saving else None,
                     "saving_low": float(actual_cost[j] - high) if saving else None,
                     "saving_high": float(actual_cost[j] - low) if saving else None,
                     "note": (f"no price for {ran[j]}" if not priced[j] else
                              f"outlier: {why[ids[j]]}" if outlier[j] else
                              "no class meets the deadline and memory" if b < 0 else None)})
    right = np.where(best >= 0, best_cost, actual_cost)
    act_sum, right_sum = float(actual_cost[priced].sum()), float(right[priced].sum())
    half = _aggregate_half(model, classes, cands, np.where(priced, best, -1), X)
    n_priced, n_over = int(priced.sum()), sum(1 for r in rows if r["over_provisioned"])
    saving = act_sum - right_sum

    def share(x):
        return x / act_sum if act_sum > 0 else None

    summary = {
        "jobs": n, "jobs_priced": n_priced, "jobs_unpriced": n - n_priced,
        "over_provisioned": n_over, "over_provisioned_share": n_over / n_priced if n_priced else None,
        "actual_cost": act_sum, "right_sized_cost": right_sum, "saving": saving,
        "saving_low": saving - half, "saving_high": saving + half, "saving_share": share(saving),
        "saving_share_low": share(saving - half), "saving_share_high": share(saving + half),
        "outliers": [{"job_id": i, "why": w} for i, w in why.items()],
        "no_feasible_class": int((best < 0).sum()), "deadline_s": deadline_s, "headroom": HEADROOM,
        "extrapolate": extrapolate,
        "classes_considered": [{"gpu_class": c["name"], "extrapolated_from": c["from"]} for c in cands],
        "classes_without_data": without,
        "moves": [{"from": a, "to": b, "jobs": k}
                  for (a, b), k in sorted(moves.items(), key=lambda x: -x[1])]}
    return rows, summary
