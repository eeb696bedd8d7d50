"""A job's expected GPU time and ETA from the cached capacity model, for ``ffray swap``'s progress
line: used only when ``<data-dir>/capacity/model.json`` (written by ``ffray analyze capacity``)
has a fit for the one GPU class the cluster has. Ray reports the class as an
``accelerator_type:<name>`` resource on GPU nodes (e.g. ``accelerator_type:H100``)."""

from __future__ import annotations

from ffray.analytics.gpus import classify


def cluster_class(resources: dict, classes: list[dict]) -> str | None:
    """The GPU class of a cluster from Ray's resources; None when it has none or several."""
    found = {classify(k.split(":", 1)[1], classes) for k in resources if k.startswith("accelerator_type:")}
    return found.pop() if len(found) == 1 else None


def estimate(model, classes: list[dict], gpu_class: str | None, frames: int, width: int, height: int,
             gpu_share: float, faces_per_frame: float | None = None) -> dict | None:
    """Predicted GPU-seconds (± the 95 % half-interval) and wall seconds on ``gpu_share`` GPUs
    (actors x GPUs per actor) for a job; faces per frame default to the median of the jobs
    behind the fit. None when the model has no fit for the class or the job has no size."""
    from ffray.analytics.capacity import predict

    fit = model.fit_for(gpu_class) if model is not None and gpu_class else None
    if fit is None or not frames or not width or not height or not gpu_share or gpu_share <= 0:
        return None
    fpf = fit["faces_per_frame_median"] if faces_per_frame is None else faces_per_frame
    row = predict(model, classes, frames, width, height, fpf, gpu=gpu_class)[0]
    half = (row["gpu_seconds_high"] - row["gpu_seconds_low"]) / 2
    wall = row["gpu_seconds"] / gpu_share
    return {"gpu_class": gpu_class, "n_jobs": fit["n_jobs"], "gpu_seconds": row["gpu_seconds"],
            "half_interval": half, "wall_s": wall, "faces_per_frame": fpf,
            "note": f"capacity model ({gpu_class}, {fit['n_jobs']} jobs): ~{row['gpu_seconds']:.0f} GPU-s "
                    f"± {half:.0f}, ~{wall:.0f} s on {gpu_share:g} GPU(s) (assuming {fpf:.1f} faces "
                    "per frame)"}


def remaining_s(est: dict | None, frames_done: int, total_frames: int) -> float | None:
    """The model's estimate of the seconds left: its wall time x the share of frames not done."""
    if est is None or not total_frames:
        return None
    return est["wall_s"] * max(0.0, 1.0 - frames_done / total_frames)


def for_job(data_dir, spec: dict) -> dict | None:
    """``estimate`` for a ledgered job on the connected Ray cluster; None when not possible.
    Never raises: progress must not fail a job."""
    try:
        import ray

        from ffray.analytics.capacity import load_model, model_path
        from ffray.analytics.gpus import load_classes

        model = load_model(model_path(data_dir))
        if model is None or not ray.is_initialized():
            return None
        classes = load_classes()
        video = spec.get("video") or {}
        share = (spec.get("actors_used") or 0) * (spec.get("gpu_per_actor_used") or 0)
        return estimate(model, classes, cluster_class(ray.cluster_resources(), classes), spec.get("frames"),
                        video.get("width"), video.get("height"), share)
    except Exception:  # noqa: BLE001
        return None
