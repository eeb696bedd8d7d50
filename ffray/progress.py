"""Running a job in a terminal: notes and a live progress line (frames, frames/s, the job's GPU
utilization now, ETA, chunks in flight, retries) on stderr, the output's path on stdout. Used by
``ffray swap``, ``ffray resume`` and ``ffray demo``."""

from __future__ import annotations

import time


def gpu_text(p) -> str:
    """The progress line's utilization field: ``GPU 73 %`` (the job's GPUs now, from its
    telemetry sampler), ``cpu`` on nodes without GPUs, nothing before the first sample or
    without telemetry."""
    if p.gpus is False:
        return "cpu"
    return "" if p.gpu_util is None else f"GPU {p.gpu_util:.0f} %"


def summary_line(res) -> str:
    """The closing line; frames/s counts only the frames this run processed (after a resume, the
    chunks finished before are not counted again)."""
    fps = res.frames_run / res.wall_s if res.wall_s else 0.0
    redo = "" if res.chunks_run == res.chunks else f", {res.frames_run} of them now"
    return (f"wrote [bold]{res.output}[/]: {res.frames} frames in {res.chunks} chunks "
            f"({res.chunks_run} run now{redo}, {res.retries} retries), {res.wall_s:.1f} s, "
            f"{fps:.1f} frames/s")


def progress_bar(console):
    """The live line: frames, frames/s, the GPUs' utilization (``gpu_text``), ETA, chunks."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                    TextColumn("{task.completed:.0f}/{task.total:.0f} frames"),
                    TextColumn("{task.fields[fps]:.1f} fps"), TextColumn("{task.fields[gpu]}"),
                    TimeRemainingColumn(), TextColumn("{task.fields[model_eta]}"),
                    TextColumn("chunks {task.fields[chunks]} | in flight {task.fields[inflight]} | "
                               "retries {task.fields[retries]}"),
                    console=console, transient=False, disable=not console.is_terminal)


def run_with_progress(ledger, address: str | None = None, verbose: bool = False) -> int:
    """Run a ledgered job with a live progress line on stderr; prints the output path on stdout."""
    from rich.console import Console

    from ffray.cluster.jobs import run_job

    lines = _progress_lines()
    console = Console(stderr=True)
    console.print(f"job [bold]{ledger.job_id}[/] (ledger {ledger.root})")
    bar = progress_bar(console)
    state = {"t0": None, "f0": 0, "est": None}

    def on_progress(p):
        from ffray.analytics.eta import for_job, remaining_s

        if state["t0"] is None:  # Ray is connected now: a capacity model may know this GPU class
            state["t0"], state["f0"] = time.time(), p.frames_done
            state["est"] = for_job(ledger.root.parent.parent, ledger.spec)
            if state["est"]:
                console.print(state["est"]["note"])
        dt = max(1e-6, time.time() - state["t0"])
        left = remaining_s(state["est"], p.frames_done, p.total_frames)
        bar.update(task, completed=p.frames_done, total=p.total_frames, inflight=p.inflight,
                   retries=p.retries, chunks=f"{p.chunks_done}/{p.total_chunks}",
                   fps=(p.frames_done - state["f0"]) / dt, gpu=gpu_text(p),
                   model_eta="" if left is None else f"model ETA {left:.0f} s")
        lines(p, (p.frames_done - state["f0"]) / dt)

    with bar:
        task = bar.add_task("swap", total=ledger.spec["frames"], fps=0.0, inflight=0, retries=0,
                            chunks="0", model_eta="", gpu="")
        res = run_job(ledger, on_progress=on_progress, on_note=lambda s: console.print(s),
                      address=address, verbose=verbose)
    console.print(summary_line(res))
    if res.report:
        console.print(f"report: {res.report} (trend.png, summary.md, summary.json)")
    print(res.output)
    return 0


def _progress_lines():
    """Plain ``progress`` lines on stderr every $FFRAY_PROGRESS_EVERY seconds (a Ray Job's log,
    read back by ``ffray jobs``); a no-op without it."""
    import os
    import sys

    from ffray.cluster.jobprogress import JobProgress, every_seconds

    every, last = every_seconds(os.environ), [0.0, -1]  # time, frames of the last line

    def emit(p, fps: float) -> None:
        now = time.time()
        finished = p.frames_done >= p.total_frames and last[1] != p.frames_done
        if every is None or (now - last[0] < every and not finished):
            return
        last[:] = [now, p.frames_done]
        left = (p.total_frames - p.frames_done) / fps if fps > 0 else None
        print(JobProgress(p.frames_done, p.total_frames, p.chunks_done, p.total_chunks, fps,
                          None if left is None else round(left)).line(), file=sys.stderr, flush=True)

    return emit
