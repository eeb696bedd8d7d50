"""``ffray analyze``: per-job costs, a job's per-chunk attribution, capacity fits with right-sizing,
and predictions for a new job. Everything is DuckDB over the Parquet layout (``--data-dir``, a
folder or a filesystem URI); see docs/analytics.md."""

from __future__ import annotations

import argparse

from ffray.errors import FFrayError

FORMATS = ["table", "csv", "json", "parquet"]
JOB_COLUMNS = ["job_id", "status", "created", "input", "width", "height", "frames", "faces_per_frame",
               "wall_s", "gpu_seconds", "energy_j", "peak_mem_process", "peak_mem_device", "mean_util",
               "frames_per_gpu_second", "gpu_model", "gpu_class", "gpus_used", "price_per_hour", "cost",
               "cost_per_1000_frames", "retries"]
JOB_TABLE = ["job_id", "created", "resolution", "frames", "faces_per_frame", "wall_s", "gpu_seconds",
             "energy_j", "peak_mem_process", "peak_mem_device", "mean_util", "frames_per_gpu_second",
             "gpu_class", "cost_per_1000_frames", "retries"]
CHUNK_COLUMNS = ["chunk", "attempt", "status", "node", "gpu_name", "gpu_uuid", "start", "end", "seconds",
                 "gpus", "gpu_seconds", "frames", "faces_detected", "faces_per_frame", "mean_util",
                 "peak_util", "peak_mem_process", "peak_mem_device", "energy_j", "device_energy_j",
                 "throttled_share", "samples"]
CHUNK_TABLE = ["chunk", "attempt", "status", "gpu_name", "start", "seconds", "gpu_seconds", "frames",
               "faces_per_frame", "mean_util", "peak_mem_process", "peak_mem_device", "energy_j",
               "throttled_share"]
FIT_TABLE = ["gpu_class", "gpu_models", "n_jobs", "outliers", "a", "b", "c", "d", "r2", "spread", "mem_m0",
             "mem_m1", "mem_r2", "note"]
RIGHT_COLUMNS = ["job_id", "gpu_class", "gpus_used", "frames", "width", "height", "faces_per_frame",
                 "peak_mem_bytes", "gpu_seconds", "cost", "best_class", "best_gpu_seconds", "best_wall_s",
                 "best_cost", "best_cost_low", "best_cost_high", "saving", "saving_low", "saving_high",
                 "over_provisioned", "outlier", "extrapolated", "note"]
PREDICT_TABLE = ["gpu_class", "gpu_seconds", "gpu_seconds_low", "gpu_seconds_high", "wall_s",
                 "peak_mem_bytes", "memory_gib", "fits_memory", "price_per_hour", "cost", "cost_low",
                 "cost_high", "n_jobs", "r2", "extrapolated_from", "floored", "poor_fit"]


def add_parser(sub) -> None:
    a = sub.add_parser("analyze", help="per-job costs, per-chunk attribution and capacity planning")
    what = a.add_subparsers(dest="what", required=True, metavar="{jobs,chunks,capacity,predict}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="data dir or filesystem URI (default $FFRAY_HOME or ~/.ffray)")
    common.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    common.add_argument("--output", metavar="FILE", help="file for --format parquet")
    common.add_argument("--limit", type=int, default=50, help="rows in a table (0: all; default 50)")
    priced = argparse.ArgumentParser(add_help=False)
    priced.add_argument("--prices", metavar="FILE", help="JSON {GPU class or NVML name: $ per GPU-hour}")
    priced.add_argument("--gpu-specs", metavar="FILE", help="JSON list of GPU classes to add or override")
    since = argparse.ArgumentParser(add_help=False)
    since.add_argument("--since", help="only jobs since: 7d, 24h, or an ISO date/datetime (UTC)")
    fit = argparse.ArgumentParser(add_help=False)
    fit.add_argument("--processor", default="faceswap",
                     help="fit jobs of this processor only (default faceswap; 'all' for every job)")
    fit.add_argument("--min-jobs", type=int, default=8, help="finished jobs a GPU class needs for a fit")
    fit.add_argument("--extrapolate", action="store_true",
                     help="scale classes without data from a measured class by relative throughput")

    what.add_parser("jobs", parents=[common, priced, since], help="per-job totals and cost")
    c = what.add_parser("chunks", parents=[common], help="per-chunk attribution of one job")
    c.add_argument("job_id")
    cap = what.add_parser("capacity", parents=[common, priced, since, fit],
                          help="fit GPU-seconds and memory per GPU class; right-size past jobs")
    cap.add_argument("--deadline", type=float, metavar="SECONDS",
                     help="a job's wall time (GPU-seconds / GPUs it used) must not exceed this")
    cap.add_argument("--jobs", action="store_true", help="list every job's right-sizing (table format)")
    cap.add_argument("--save", action="store_true",
                     help="with --since: replace the cached model (swap, predict and the dashboard read it) "
                          "with this fit anyway")
    p = what.add_parser("predict", parents=[common, priced, fit], help="cost and time of a new job")
    p.add_argument("--frames", type=int, required=True)
    p.add_argument("--resolution", required=True, metavar="WxH")
    p.add_argument("--faces", type=float, required=True, metavar="K", help="faces per frame")
    p.add_argument("--gpu", metavar="MODEL", help="one GPU class or NVML name (default: all fitted)")
    p.add_argument("--gpus", type=int, default=1, help="GPUs the job will use (default 1)")
    p.add_argument("--refit", action="store_true", help="fit now instead of using the cached model")
    k = what.add_parser("compact", help="merge the per-job span and job-record files of closed days "
                        "(local data dirs; also done when a job ends)")
    k.add_argument("--data-dir", help="data dir (default $FFRAY_HOME or ~/.ffray)")


def run(args) -> int:
    from ffray.analytics.source import Store
    from ffray.settings import telemetry_target

    if args.what == "compact":
        return cmd_compact(args)
    if args.limit < 0:
        raise FFrayError("--limit must be >= 0")
    if args.format == "parquet" and not args.output:
        raise FFrayError("--format parquet needs --output FILE")
    classes = None
    if hasattr(args, "prices"):
        from ffray.analytics.gpus import load_classes

        classes = load_classes(args.gpu_specs, args.prices)
    target = telemetry_target(args.data_dir)
    if args.what == "predict":  # validate before opening anything
        from ffray.analytics.output import resolution_arg

        args.size = resolution_arg(args.resolution)
        if args.frames <= 0 or args.faces < 0 or args.gpus < 1:
            raise FFrayError("--frames must be > 0, --faces >= 0 and --gpus >= 1")
    since = None
    if getattr(args, "since", None):
        from ffray.analytics.output import since_arg

        since = since_arg(args.since)
    store = Store(target)
    try:
        if store.empty:
            raise FFrayError(f"no analytics data in {target}: run a job (`ffray swap`) or record telemetry "
                             "(`ffray telemetry record`) first")
        return {"jobs": cmd_jobs, "chunks": cmd_chunks, "capacity": cmd_capacity,
                "predict": cmd_predict}[args.what](args, store, classes, since)
    finally:
        store.close()


def cmd_compact(args) -> int:
    import time

    from ffray.settings import telemetry_target
    from ffray.telemetry.jobfiles import compact_closed_days

    target = telemetry_target(args.data_dir)
    if "://" in target:
        raise FFrayError("compact works on local data dirs only")
    t = time.perf_counter()
    merged = compact_closed_days(target)
    print(f"{len(merged)} day file(s) written in {time.perf_counter() - t:.1f} s under {target}")
    return 0


def cmd_jobs(args, store, classes, since) -> int:
    import pyarrow as pa
    import pyarrow.compute as pc

    from ffray.analytics.costs import job_costs
    from ffray.analytics.gpus import with_prices
    from ffray.analytics.output import emit

    if not store.present["jobs"]:
        raise FFrayError(f"no job records in {store.target}: run a job (`ffray swap`) first")
    t = with_prices(job_costs(store, since=since), classes)
    if t.num_rows == 0:
        raise FFrayError(f"no jobs since {since.isoformat()} in {store.target}")
    unpriced = sorted({c for c, p, s in zip(t["gpu_class"].to_pylist(), t["price_per_hour"].to_pylist(),
                                             t["gpu_seconds"].to_pylist()) if c and p is None and s})
    caption = f"cost unknown on GPU models without a price: {', '.join(unpriced)} (add them with --prices)" \
        if unpriced else None
    if args.format != "table":
        emit(t, args.format, args.output, JOB_COLUMNS)
        return 0
    res = pc.binary_join_element_wise(pc.cast(t["width"], pa.string()), pc.cast(t["height"], pa.string()),
                                      "x")
    emit(t.append_column("resolution", res), "table", None, JOB_TABLE, title="jobs (newest first)",
         caption=caption, limit=args.limit)
    return 0


def cmd_chunks(args, store, classes, since) -> int:
    import pyarrow.compute as pc

    from ffray.analytics.costs import chunk_costs
    from ffray.analytics.output import emit

    t = chunk_costs(store, job_id=args.job_id)
    if t.num_rows == 0:
        raise FFrayError(f"no job {args.job_id!r} in {store.target} (see `ffray analyze jobs`)")
    fpf = pc.divide(pc.cast(t["faces_detected"], "float64"), pc.cast(t["frames"], "float64"))
    t = t.append_column("faces_per_frame", fpf)
    emit(t, args.format, args.output, CHUNK_TABLE if args.format == "table" else CHUNK_COLUMNS,
         title=f"job {args.job_id}: chunk attempts",
         limit=args.limit)
    return 0


def _model(args, store, classes, since):
    """Fit (from one pass over the store), save; the model and the job table behind it."""
    from ffray.analytics.capacity import fit_jobs, job_table, model_path, save_model
    from ffray.settings import data_dir

    jobs = job_table(store, classes, since=since, processor=args.processor)
    model = fit_jobs(jobs, classes, min_jobs=args.min_jobs, meta={
        "since": since.isoformat() if since else None, "processor": args.processor})
    if model.meta["jobs"] == 0:
        which = "" if args.processor in ("", "all") else f" of processor {args.processor!r}"
        raise FFrayError(f"no finished jobs{which} with GPU telemetry in {store.target}: run jobs on GPUs "
                         "with telemetry on (`ffray swap`), or use --processor all")
    path = model_path(data_dir(args.data_dir))
    if since is not None and not getattr(args, "save", False):
        return model, None, jobs  # a fit of a window never silently replaces the all-history model
    return model, save_model(model, path), jobs


def fit_rows(model) -> list[dict]:
    rows = []
    for f in model.fits:
        k, mem = f["coefficients"], f.get("memory") or {}
        mk = mem.get("coefficients", {})
        rows.append({"gpu_class": f["gpu_class"], "gpu_models": f["gpu_models"], "n_jobs": f["n_jobs"],
                     "outliers": len(f.get("outliers", [])), "spread": f.get("spread"),
                     "a": k["frames_mp"], "b": k["faces"], "c": k["frames"], "d": k["intercept"],
                     "r2": f["r2"], "residual_std": f["residual_std"],
                     "mem_m0": mk.get("intercept"), "mem_m1": mk.get("megapixels"), "mem_r2": mem.get("r2"),
                     "note": "; ".join(
                         (["poor fit: " + "; ".join(f["poor"]) + ": not used for right-sizing"]
                          if f.get("poor") else [])
                         + ([] if f["identified"] else ["features collinear (e.g. one resolution): "
                                                        "coefficients not separately identified"])) or None})
    return rows


def cmd_capacity(args, store, classes, since) -> int:
    from ffray.analytics.output import emit, json_dump, print_table
    from ffray.analytics.rightsize import right_size

    if args.deadline is not None and args.deadline <= 0:
        raise FFrayError("--deadline must be > 0 seconds")
    model, path, jobs = _model(args, store, classes, since)
    rows, summary = right_size(jobs, model, classes, deadline_s=args.deadline, extrapolate=args.extrapolate)
    if args.format == "json":
        print(json_dump({"model": model.to_dict(), "model_path": path and str(path), "summary": summary,
                         "jobs": rows}))
        return 0
    if args.format in ("csv", "parquet"):
        emit(rows, args.format, args.output, RIGHT_COLUMNS)
        return 0
    m = model.meta
    print_table(fit_rows(model), FIT_TABLE, title=f"GPU-seconds per job, per GPU class: {m['law']}",
                caption=f"memory: {m['memory_law']} (GiB); {m['jobs']} finished jobs"
                f"{'' if m['processor'] in (None, '', 'all') else ' of processor ' + m['processor']}; "
                + (f"model saved to {path}" if path else
                   f"fitted on jobs since {m['since']}: not saved (the cached model stays; "
                   "--save replaces it)"))
    outliers = [{"gpu_class": f["gpu_class"], **o} for f in model.fits for o in f.get("outliers", [])]
    if outliers:
        print_table(outliers, ["gpu_class", "job_id", "gpu_seconds", "fitted_gpu_seconds", "why"],
                    title="outlier jobs (off their class's law)")
    if model.no_fit:
        print_table(model.no_fit, ["gpu_class", "n_jobs", "reason"],
                    title="GPU classes in the data without a fit")
    s = summary
    print_table(s["classes_without_data"], ["gpu_class", "reason"], title="GPU classes not considered")
    if args.jobs:
        emit(rows, "table", None, RIGHT_COLUMNS, title="right-sizing per job", limit=args.limit)
    if s["moves"]:
        print_table(s["moves"], ["from", "to", "jobs"],
                    title="over-provisioned jobs: cheapest class that fits")
    dl = f"deadline {s['deadline_s']:g} s" if s["deadline_s"] else "no deadline"
    share = "–" if s["over_provisioned_share"] is None else f"{s['over_provisioned_share']:.1%}"
    saving = "–" if s["saving_share"] is None else f"{s['saving_share']:.1%}" + (
        "" if s["saving_share_low"] != s["saving_share_low"] else  # NaN: no interval
        f" (95 %: {s['saving_share_low']:.1%} to {s['saving_share_high']:.1%})")
    print(f"right-sizing ({dl}, peak memory x{s['headroom']} must fit"
          f"{', extrapolated classes included' if s['extrapolate'] else ''}): "
          f"{s['over_provisioned']} of {s['jobs_priced']} priced jobs over-provisioned ({share}); "
          f"cost ${s['actual_cost']:,.2f} -> ${s['right_sized_cost']:,.2f}, saving {saving}"
          + (f"; {s['jobs_unpriced']} jobs on GPUs without a price left out" if s["jobs_unpriced"] else "")
          + (f"; {s['no_feasible_class']} jobs with no class meeting the deadline" if s["no_feasible_class"]
             else ""))
    return 0


def cmd_predict(args, store, classes, since) -> int:
    from ffray.analytics.capacity import load_model, model_path, predict
    from ffray.analytics.output import emit
    from ffray.settings import data_dir

    model = None if args.refit else load_model(model_path(data_dir(args.data_dir)))
    if model is None:
        model, _, _ = _model(args, store, classes, None)
    w, h = args.size
    rows = predict(model, classes, args.frames, w, h, args.faces, gpu=args.gpu, gpus=args.gpus,
                   extrapolate=args.extrapolate)
    if not rows:
        raise FFrayError("no GPU class has a capacity fit yet (see `ffray analyze capacity`)")
    emit(rows, args.format, args.output, None if args.format != "table" else PREDICT_TABLE,
         title=f"{args.frames} frames at {w}x{h}, {args.faces:g} faces per frame, on {args.gpus} GPU(s)",
         caption=f"model fitted {model.meta.get('fitted_at')} from {model.meta.get('jobs')} jobs; "
         "low/high: 95 % prediction interval", limit=args.limit)
    return 0
