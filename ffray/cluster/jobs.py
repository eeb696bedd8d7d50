"""Running a ledgered job: connect to Ray, build the workers, run the unfinished chunks, assemble
the output, publish spans and the job record, write the report. The same for a new job and for
``ffray resume``. (``prepare_swap`` plans a new job: ``ffray.cluster.prepare``.)"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import ray

from ffray.analytics.report import start_warm_up
from ffray.cluster.driver import PoolOptions, Progress, run_pool
from ffray.cluster.jobtelemetry import Telemetry
from ffray.cluster.ledger import JobLedger
from ffray.cluster.liveness import driver_identity
from ffray.cluster.lock import OutputLock
from ffray.cluster.prepare import prepare_swap, space_needed  # noqa: F401 - callers plan here too
from ffray.cluster.runtime import ClusterInfo, Teardown, connect, disconnect
from ffray.cluster.space import check_space
from ffray.cluster.spec import JobResult, JobSpec, SwapRequest  # noqa: F401
from ffray.cluster.worker import MAX_CONCURRENCY, ChunkWorker, WorkerSpec, experiment_env
from ffray.engine.build import StreamFormat, WorkerOptions
from ffray.errors import FFrayError, MediaError, StorageError
from ffray.telemetry.spans import publish
from ffray.video.assemble import assemble
from ffray.video.decode import decode_warnings, iter_payloads
from ffray.video.probe import fingerprint, probe

log = logging.getLogger("ffray")


def _pool_options(job: JobSpec, cluster: ClusterInfo) -> tuple[PoolOptions, list[str], float | None]:
    """The worker layout: by default one worker per GPU (each runs several chunks at once), or
    one per node on a CPU-only cluster. Also the CPUs each CPU worker may use (None: a GPU
    worker takes its GPU share of its node's CPUs)."""
    notes = []
    gpa = job.gpu_per_actor
    if gpa is None:
        gpa = 1.0 if cluster.gpus > 0 else 0.0
    if gpa > 0 and cluster.gpus == 0:
        raise FFrayError(f"--gpu-per-actor {gpa} asks for GPUs but the cluster has none")
    if gpa == 0 and cluster.gpus == 0:
        notes.append("warning: the cluster has no GPU; workers run on the CPU")
    actors = job.actors
    if actors is None:
        actors = max(1, int(cluster.gpus // gpa)) if gpa > 0 else max(1, cluster.cpu_nodes)
    if gpa > 0 and actors * gpa > cluster.gpus + 1e-9:
        raise FFrayError(f"{actors} actors x {gpa} GPU need {actors * gpa:g} GPUs; the cluster has "
                         f"{cluster.gpus:g}")
    cpus = None if gpa > 0 else max(1.0, cluster.cpus / actors)
    return PoolOptions(actors=actors, gpu_per_actor=gpa, cpu_per_actor=job.cpu_per_actor,
                       max_attempts=job.max_attempts), notes, cpus


def _fail(ledger: JobLedger, e: BaseException) -> None:
    """The job's end state: ``interrupted`` (Ctrl-C, SIGTERM: resumable) or ``failed`` (with why).
    Where even that cannot be written (a full disk), the ledger keeps its last state and the
    error that stopped the job is the one reported."""
    try:
        _end_state(ledger, e)
    except StorageError:
        pass


def _end_state(ledger: JobLedger, e: BaseException) -> None:
    if isinstance(e, KeyboardInterrupt):
        ledger.update(status="interrupted", ended=time.time(),
                      error=f"interrupted; finish it with `ffray resume {ledger.job_id}`")
        return
    ledger.update(status="failed", ended=time.time(),
                  error=str(e).splitlines()[0] if str(e) else type(e).__name__)


def run_job(ledger: JobLedger, on_progress=lambda p: None, on_note=lambda s: None,
            address: str | None = None, verbose: bool = False) -> JobResult:
    """Run the unfinished chunks of ``ledger``'s job on Ray, then assemble the output. The output
    path is locked meanwhile: a second job for it is refused before any work, and fails with
    that reason in its ledger."""
    try:
        lock = OutputLock(Path(ledger.spec["output"]), ledger.job_id).__enter__()
    except FFrayError as e:
        _fail(ledger, e)
        publish(ledger)
        raise
    try:
        return _run(ledger, on_progress, on_note, address, verbose)
    finally:
        lock.__exit__(None, None, None)


def _run(ledger: JobLedger, on_progress, on_note, address: str | None, verbose: bool) -> JobResult:
    t_start = time.perf_counter()
    job = JobSpec.from_json(ledger.spec)
    inp, out = Path(job.input), Path(job.output)
    if ledger.probed is not None:  # planned by this process a moment ago
        info, index = ledger.probed
    else:
        info, index = probe(inp)
        if fingerprint(inp, index) != job.input_sha256:
            raise MediaError(f"{inp} changed since job {ledger.job_id} was planned; start a new job")
    chunks = ledger.load_plan()
    done = ledger.done_chunks()
    todo = [c for c in chunks if c.index not in done]
    if ledger.probed is None:  # a resume: the space its chunks and output still need
        check_space(space_needed(info, index, job.frames, sum(c.frames for c in todo)),
                    ledger.root, out.parent)
    for note in job.notes:
        on_note(note)
    plan_s = time.perf_counter() - t_start + job.plan_s
    progress = Progress(total_frames=job.frames, total_chunks=len(chunks))
    progress.frames_done = sum(c.frames for c in chunks if c.index in done)
    progress.chunks_done = len(done)
    ledger.update(status="running", started=time.time(), ended=None, error=None,
                  driver=driver_identity())
    ledger.event(kind="run", todo=len(todo), done=len(done))
    publish(ledger)
    t_pool = time.perf_counter()
    teardown = None  # a private Ray instance stopping while the output is assembled
    if todo:
        start_warm_up()  # the report's libraries load while the chunks run
        cluster = _run_chunks(ledger, job, info, index, todo, len(chunks), progress, on_progress,
                              on_note, address if address is not None else job.address, verbose)
        teardown = Teardown.start(cluster)  # the job's Ray objects died with _run_chunks' frame
    try:
        res = _finish(ledger, job, info, index, chunks, todo, progress, on_note, t_start, t_pool,
                      plan_s)
    finally:
        t_join = time.perf_counter()
        if teardown is not None:
            teardown.join()  # no Ray process outlives the job
    return replace(res, teardown_wait_s=time.perf_counter() - t_join)


def _finish(ledger: JobLedger, job: JobSpec, info, index, chunks: list, todo: list,
            progress: Progress, on_note, t_start: float, t_pool: float, plan_s: float) -> JobResult:
    """Assemble the output, mark the job done, publish it, remove the chunk files, write the
    report."""
    inp, out = Path(job.input), Path(job.output)
    t_asm = time.perf_counter()
    try:
        if out.exists() and not job.overwrite:
            raise FFrayError(f"output exists: {out} (use --overwrite to replace it)")
        a, b = job.frame_range
        summary = assemble([ledger.chunk_path(c.index) for c in chunks], chunks, str(inp), info, out,
                           job.trimmed, index.frame_pts[a:b])
    except StorageError as e:  # e.g. the destination is full: nothing was left there
        e = StorageError(f"{e}; free space and run `ffray resume {ledger.job_id}`")
        _fail(ledger, e)
        publish(ledger)
        raise e from None
    except BaseException as e:
        _fail(ledger, e)
        publish(ledger)
        raise
    warnings = decode_warnings([s.get("decode_report") or {} for s in ledger.chunk_stats()],
                               info.video.width, info.video.height)
    for w in warnings:
        on_note(w)
    assemble_s = time.perf_counter() - t_asm
    wall = time.perf_counter() - t_start
    worker_s = sum(s.get("wall_s", 0.0) for s in ledger.chunk_stats())
    frames_run = sum(c.frames for c in todo)  # this run's: a resume does not count finished chunks
    ledger.update(status="done", ended=time.time(), wall_s=wall, assemble_s=assemble_s,
                  pool_s=t_asm - t_pool, retries=progress.retries, assembled=summary,
                  warnings=warnings, frames_run=frames_run, chunks_run=len(todo))
    publish(ledger)
    if not job.keep_chunks:  # the output holds them now (assembly verified every chunk)
        ledger.update(chunks_removed_bytes=ledger.remove_chunk_files())
    t_report = time.perf_counter()
    report = job_report(ledger)
    return JobResult(job_id=ledger.job_id, output=str(out), frames=job.frames,
                     chunks=len(chunks), chunks_run=len(todo), frames_run=frames_run,
                     retries=progress.retries,
                     wall_s=wall, worker_s=worker_s, assemble_s=assemble_s, plan_s=plan_s,
                     ledger=str(ledger.root), summary=summary, report=report,
                     report_s=time.perf_counter() - t_report)


def _worker_spec(ledger: JobLedger, job: JobSpec, info, worker_cpus: float | None) -> WorkerSpec:
    proc, v = job.processor, info.video
    # model bytes go through the object store once (no node needs the model files), and a worker
    # fetches them only when its node has no prepared copy yet
    models = {k: ray.put(Path(p).read_bytes()) for k, p in proc.params.get("model_paths", {}).items()}
    return WorkerSpec(processor=proc, encode=job.encode,
                      stream=StreamFormat(v.width, v.height, v.pix_fmt, v.color, v.rotation,
                                          fps=float(v.avg_rate) if v.avg_rate else 30.0),
                      rate=v.avg_rate,
                      sources=ledger.load_sources(), named=ledger.load_named(), models=models,
                      options=WorkerOptions(encoder_threads=job.encode.threads, slots=job.slots,
                                            cpus=worker_cpus,
                                            codec_processes=job.codec_processes))


def _run_chunks(ledger: JobLedger, job: JobSpec, info, index, todo: list, total_chunks: int,
                progress: Progress, on_progress, on_note, address: str | None,
                verbose: bool) -> ClusterInfo:
    """Connect, start the workers and the telemetry, run ``todo`` through the pool; on failure
    the ledger says why (finished chunks stay for ``ffray resume``) and Ray is disconnected.
    Once every chunk is done it returns the connection, still open, for the caller to close in
    the background (``Teardown.start``) while it assembles the output: only once this frame
    is gone, with the object refs and actor handles it held."""
    t_run0 = time.time()
    published = [time.time()]
    cluster = connect(address, verbose)
    failed = False
    try:
        opts, notes, worker_cpus = _pool_options(job, cluster)
        ledger.update(actors_used=opts.actors, gpu_per_actor_used=opts.gpu_per_actor)
        for n in notes:
            on_note(n)
        on_note(f"face pipeline: {job.pipeline}" if job.pipeline else f"processor: {job.processor.kind}")
        wspec = _worker_spec(ledger, job, info, worker_cpus)
        cls = ray.remote(ChunkWorker)

        switches = experiment_env()
        extra = {"runtime_env": {"env_vars": switches}} if switches else {}

        def make_actor():
            return cls.options(num_gpus=opts.gpu_per_actor, num_cpus=opts.cpu_per_actor,
                               scheduling_strategy="SPREAD", max_concurrency=MAX_CONCURRENCY,
                               **extra).remote(wspec)

        def on_done(result: dict) -> None:
            ledger.record_chunk(result["stats"]["chunk"], result["data"], result["stats"])

        tele = Telemetry.for_job(job, ledger.root.parent.parent) if job.telemetry else None
        t_workers = time.time()

        def hook(p: Progress) -> None:
            if p.workers_ready and "startup" not in published:
                published.append("startup")
                first = p.worker_info[0] if p.worker_info else {}
                on_note(f"{opts.actors} worker(s), {opts.gpu_per_actor:g} GPU each, {p.slots} chunk(s) at "
                        f"once, frames on the {first.get('backend', '?').upper()}, on {cluster.nodes} "
                        f"node(s); ready {p.workers_ready - t_workers:.1f} s after creation; "
                        f"{len(todo)} of {total_chunks} chunks to run")
                ledger.update(startup={"ray_s": t_workers - t_run0,
                                       "workers_ready_s": p.workers_ready - t_workers,
                                       "workers": p.worker_info})
            if tele:
                tele.tick()
                p.gpu_util, p.gpus = tele.utilization(
                    u for w in p.worker_info for u in (w.get("gpu_uuids") or []))
            if time.time() - published[0] > 15:  # the dashboard sees a running job's spans grow
                published[0] = time.time()
                publish(ledger)
            on_progress(p)

        try:
            run_pool(make_actor, iter_payloads(job.input, index, todo), on_done, opts, progress, hook,
                     lambda **kw: ledger.event(**kw))
        finally:
            if tele is not None:
                tele.stop()
    except BaseException as e:
        _fail(ledger, e)
        failed = isinstance(e, Exception)  # not for Ctrl-C
        disconnect(cluster)
        raise
    finally:
        publish(ledger)  # every attempt so far becomes a span (rewritten whole on resume)
        if failed:
            job_report(ledger)
    return cluster


def job_report(ledger: JobLedger) -> str | None:
    """Compact the job files of closed days (``ffray.telemetry.jobfiles``), then write the job's
    report (``ffray.analytics.report``) into its job folder from the Parquet just published; the
    folder, or None when it could not be written (never fails the job)."""
    target = ledger.spec.get("telemetry_target") or ledger.root.parent.parent
    try:  # closed days' job files merged first: the report (and every later query) reads fewer files
        from ffray.telemetry.jobfiles import compact_closed_days

        compact_closed_days(target)
    except Exception as e:  # noqa: BLE001
        log.warning("could not compact the job files of closed days: %s", e)
    try:
        from ffray.analytics.report import write_report

        return str(write_report(ledger.root, target))
    except Exception as e:  # noqa: BLE001
        log.warning("could not write the report of job %s: %s", ledger.job_id, e)
        return None
