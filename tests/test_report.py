"""Job reports: written when a real `ffray swap` ends (CPU workers on the fake-GPU test cluster),
and for a constructed GPU job with a heavy chunk and a retry."""

from __future__ import annotations

import json

import pytest

from ffray.analytics.costs import job_costs
from ffray.analytics.source import Store
from tests.analytics_data import Chunk, Gpu, Job, write_store

PNG = b"\x89PNG\r\n\x1a\n"
TOTALS = ["frames", "chunks", "chunks_done", "retries", "failed_attempts", "wall_s", "gpu_seconds",
          "energy_j", "peak_mem_process", "peak_mem_device", "mean_util", "frames_per_gpu_second",
          "faces_detected", "gpus_used", "width", "height", "status", "gpu_model"]


def image_size(png: bytes) -> tuple[int, int]:
    import io

    import matplotlib.image as mpimg

    img = mpimg.imread(io.BytesIO(png), format="png")
    return img.shape[1], img.shape[0]


def test_swap_writes_a_report_whose_totals_equal_the_analytics_query(cluster, media, data_dir, tmp_path,
                                                                      capsys):
    from ffray.cli import main

    out = tmp_path / "out.mp4"
    rc = main(["swap", str(media.cfr_audio), "-o", str(out), "--processor", "stamp", "--actors", "2",
               "--gpu-per-actor", "1", "--chunk-seconds", "0.5", "--data-dir", str(data_dir)])
    err = capsys.readouterr().err
    assert rc == 0, err
    job = next((data_dir / "jobs").iterdir())
    report = job / "report"
    assert f"report: {report}" in err.replace("\n", "")  # printed by ffray swap
    png = (report / "trend.png").read_bytes()
    assert png.startswith(PNG) and image_size(png)[0] >= 800
    summary = json.loads((report / "summary.json").read_text())
    row = json.loads(json.dumps(job_costs(Store(data_dir), job_id=job.name).to_pylist()[0], default=str))
    assert {k: summary["totals"][k] for k in TOTALS} == {k: row[k] for k in TOTALS}
    t = summary["totals"]
    assert t["frames"] == 96 and t["chunks_done"] == t["chunks"] >= 6 and t["status"] == "done"
    assert t["gpu_seconds"] > 0  # each actor held one (fake) GPU for its chunks' seconds
    assert t["energy_j"] is None and t["gpu_model"] is None  # no NVML here: no GPU samples
    md = (report / "summary.md").read_text()
    assert f"# Job {job.name}" in md and "| frames | 96 |" in md and "trend.png" in md


def test_report_of_a_gpu_job_marks_the_heavy_chunk_and_the_retry(tmp_path):
    from ffray.analytics.report import write_report

    gpu = Gpu("GPU-r0", "NVIDIA L4", "n0", 0, 24 << 30)
    chunks = [Chunk(10, frames=100, faces=100) for _ in range(4)]
    chunks.append(Chunk(30, frames=100, faces=300, mem_proc=4_000_000_000))
    chunks[1].failed_s = 2
    write_store(tmp_path, [Job("rep-1", [gpu], chunks, watts=70.0, mem_device=5_000_000_000)])
    folder = write_report(tmp_path / "jobs" / "rep-1", tmp_path)
    assert folder == tmp_path / "jobs" / "rep-1" / "report"
    summary = json.loads((folder / "summary.json").read_text())
    t = summary["totals"]
    assert (t["gpu_seconds"], t["energy_j"], t["peak_mem_process"], t["retries"]) == \
        (70.0, 70.0 * 70, 4_000_000_000, 1)
    assert t["cost"] == pytest.approx(70.0 / 3600 * 0.8)  # the L4's default price
    texts = {e["kind"]: e["text"] for e in summary["events"]}
    assert set(texts) == {"faces", "slow", "retry"}  # util 80 %: no saturation
    # chunk 4 starts after 4 x 100 frames at 30 frames/s: 0:13 of video
    assert texts["faces"] == "from 0:13 the video has three faces per frame (one before): GPU at 80 %"
    assert texts["slow"] == f"chunk 4: {100 / 30:.1f} frames/s, 3.0x the median time per frame, " \
        "3.0 faces per frame"
    assert texts["retry"] == "chunk 1: attempt 1 failed after 2.0 s, retried on n0 · GPU GPU-r0"
    texts = list(texts.values())
    md = (folder / "summary.md").read_text()
    assert all(f"- {x}" in md for x in texts) and "| GPU-seconds | 70.00 |" in md
    assert (folder / "trend.png").read_bytes().startswith(PNG)


def test_a_failed_job_gets_a_report_with_its_failed_attempts(cluster, media, data_dir, tmp_path):
    from ffray.errors import JobFailed
    from tests.media import swap

    with pytest.raises(JobFailed):
        swap(media.cfr_silent, tmp_path / "o.mp4", data_dir, processor="tests.procs:FailOn",
             params={"chunk": 1}, actors=2, gpu_per_actor=1, chunk_seconds=0.5, max_attempts=2)
    job = next((data_dir / "jobs").iterdir())
    summary = json.loads((job / "report" / "summary.json").read_text())
    assert summary["totals"]["status"] == "failed" and summary["totals"]["failed_attempts"] == 2
    retries = [e["text"] for e in summary["events"] if e["kind"] == "retry"]
    assert len(retries) == 2 and ", retried on " in retries[0] and retries[1].endswith("not retried")
    assert all(" failed on " in t for t in retries)  # the driver recorded where each attempt ran
    # the failed attempts' spans name their worker, so the timeline draws them on its lane
    from ffray.analytics.costs import chunk_costs, worker_lanes

    store = Store(data_dir)
    try:
        chunks = chunk_costs(store, job.name).to_pylist()
    finally:
        store.close()
    failed = [(c, ln) for c, ln in zip(chunks, worker_lanes(chunks)) if c["status"] == "failed"]
    assert len(failed) == 2 and all(c["node"] and c["actor_id"] and c["pid"] for c, _ in failed)
    assert all(ln[0] != "failed" for _, ln in failed)
    assert (job / "report" / "trend.png").read_bytes().startswith(PNG)


def test_the_reports_libraries_load_on_a_daemon_thread_in_a_fresh_process():
    """``start_warm_up`` (a job starts it as its chunks begin) imports matplotlib and DuckDB and
    draws once, on a daemon thread, so the report after the last chunk does not pay for it."""
    import subprocess
    import sys

    code = ("import sys, threading\n"
            "from ffray.analytics.report import start_warm_up\n"
            "assert 'matplotlib' not in sys.modules and 'duckdb' not in sys.modules\n"
            "t = start_warm_up()\n"
            "assert t.daemon and t is not threading.current_thread()\n"
            "t.join(120)\n"
            "print(not t.is_alive(), 'matplotlib.backends.backend_agg' in sys.modules, "
            "'duckdb' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0 and r.stdout.split() == ["True", "True", "True"], r.stderr[-1500:]
