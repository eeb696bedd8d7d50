"""Jobs end to end: validate, plan, record in the ledger, run on Ray, assemble, report.

``prepare_swap`` does every check that needs no cluster (so bad input fails in a second with one
line); ``run_job`` runs the unfinished chunks of a ledgered job and assembles the output, for a new
job and for ``ffray resume`` alike.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import ray

from ffray.cluster.driver import PoolOptions, Progress, run_pool
from ffray.cluster.ledger import JobLedger
from ffray.cluster.runtime import ClusterInfo, connect, disconnect
from ffray.cluster.worker import MAX_CONCURRENCY, ChunkWorker, WorkerSpec
from ffray.engine.build import StreamFormat, WorkerOptions
from ffray.errors import FFrayError, MediaError
from ffray.processors import ProcessorSpec, check_params, resolve
from ffray.telemetry.actor import ensure_actors, stop_and_collect
from ffray.telemetry.spans import publish
from ffray.video.assemble import assemble, output_format
from ffray.video.decode import iter_payloads
from ffray.video.encode import EncodeSettings
from ffray.video.plan import auto_chunk_seconds, plan_chunks, select_frames
from ffray.video.probe import fingerprint, probe

log = logging.getLogger("ffray")


@dataclass
class SwapRequest:
    input: str
    output: str
    sources: list[str] = field(default_factory=list)
    overwrite: bool = False
    chunk_seconds: float | None = None  # None: auto (ffray.video.plan.auto_chunk_seconds)
    trim_start: float | None = None
    trim_end: float | None = None
    encode: EncodeSettings = field(default_factory=EncodeSettings)
    processor: ProcessorSpec = field(default_factory=ProcessorSpec)
    actors: int | None = None
    gpu_per_actor: float | None = None
    cpu_per_actor: float = 0.0
    max_attempts: int = 3
    address: str | None = None
    telemetry: bool = True
    telemetry_interval: float = 1.0
    telemetry_local_dir: str | None = None  # node-local sink for nodes off the driver's host
    prometheus_port: int | None = None
    telemetry_target: str | None = None  # a pyarrow filesystem URI for telemetry and spans
    model_dirs: list[str] = field(default_factory=list)
    named: dict[str, str] = field(default_factory=dict)  # role -> image path (reference, map pairs)
    reference_frame: int | None = None


@dataclass
class JobResult:
    job_id: str
    output: str
    frames: int
    chunks: int
    chunks_run: int
    retries: int
    wall_s: float
    worker_s: float
    assemble_s: float
    plan_s: float
    ledger: str
    summary: dict = field(default_factory=dict)
    report: str | None = None  # the job's report folder (trend.png, summary.json/.md)


def check_output(output: Path, input_path: Path, overwrite: bool, codec: str) -> None:
    fmt = output_format(output)
    if output.exists() and input_path.exists() and os.path.samefile(output, input_path) \
            or output.resolve() == input_path.resolve():
        raise FFrayError(f"output is the input file: {output}")
    if output.is_dir():
        raise FFrayError(f"output is a directory: {output}")
    if output.exists() and not overwrite:
        raise FFrayError(f"output exists: {output} (use --overwrite to replace it)")
    parent = output.parent
    if not parent.is_dir():
        raise FFrayError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise FFrayError(f"cannot write to output folder: {parent}")
    import av

    with av.open(os.devnull, "w", format=fmt) as c:
        if codec not in c.supported_codecs:
            raise FFrayError(f"{output.suffix} files cannot hold {codec} video")


def read_sources(paths: list[str]) -> list[tuple[str, bytes]]:
    out = []
    for s in paths:
        p = Path(s)
        if not p.is_file():
            raise FFrayError(f"source face image not found: {p}")
        try:
            data = p.read_bytes()
        except OSError as e:
            raise FFrayError(f"cannot read source face image {p}: {e.strerror}") from None
        if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is None:
            raise FFrayError(f"source face image is not a readable image: {p}")
        out.append((p.name, data))
    return out


def prepare_swap(req: SwapRequest, data_dir: Path) -> JobLedger:
    """All checks that need no cluster, then a new ledgered job with its plan. The probe result
    rides along on the ledger object (``ledger.probed``) so ``run_job`` need not read the input
    twice."""
    t = time.perf_counter()
    inp, out = Path(req.input).expanduser().resolve(), Path(req.output).expanduser().absolute()
    proc_cls = resolve(req.processor.kind)
    if getattr(proc_cls, "needs_sources", False) and not req.sources:
        raise FFrayError(f"the {req.processor.kind} processor needs a source face: -s FACE")
    sources = read_sources(req.sources)
    if req.max_attempts < 1:
        raise FFrayError("--max-attempts must be >= 1")
    if req.actors is not None and req.actors < 1:
        raise FFrayError("--actors must be >= 1")
    if req.gpu_per_actor is not None and req.gpu_per_actor < 0:
        raise FFrayError("--gpu-per-actor must be >= 0")
    info, index = probe(inp)
    check_output(out, inp, req.overwrite, req.encode.stream_codec)
    named = {role: data for role, (_, data) in zip(req.named, read_sources(list(req.named.values())))}
    if req.reference_frame is not None:
        named["reference"] = frame_png(inp, req.reference_frame, info.video.frame_count)
    proc_spec, pipeline = req.processor, None
    if proc_spec.kind == "faceswap":
        from ffray.faces.setup import resolve as resolve_faces

        dirs = [Path(d).expanduser() for d in req.model_dirs] + [data_dir / "models"]
        from ffray.models.store import file_digest

        params, paths, pipeline = resolve_faces(proc_spec.params, dirs)
        proc_spec = ProcessorSpec(kind=proc_spec.kind, batch_size=proc_spec.batch_size,
                                  params={**params, "model_paths": {k: str(v) for k, v in paths.items()},
                                          "model_sha256": {k: file_digest(v) for k, v in paths.items()}})
    check_params(proc_spec)  # a misspelt processor option fails here, before any work
    check = getattr(proc_cls, "check_sources", None)
    if check is not None:  # e.g. every source image must show a face: say so now, in one line
        images = [*sources, *((Path(req.named[r]).name if r in req.named else r, d)
                              for r, d in named.items())]
        check([d for _, d in images], proc_spec.params, [n for n, _ in images])
    frames = select_frames(index.frame_pts, info.video.time_base, req.trim_start, req.trim_end)
    secs = (index.frame_pts[frames[1] - 1] - index.frame_pts[frames[0]]) * float(info.video.time_base)
    chunk_seconds = req.chunk_seconds if req.chunk_seconds is not None else auto_chunk_seconds(secs)
    chunks = plan_chunks(index, info.video.time_base, chunk_seconds, frames)
    spec = {"input": str(inp), "input_sha256": fingerprint(inp, index), "output": str(out),
            "overwrite": req.overwrite, "chunk_seconds": chunk_seconds,
            "trim": [req.trim_start, req.trim_end], "frame_range": list(frames),
            "trimmed": frames != (0, info.video.frame_count),
            "encode": asdict(req.encode), "processor": asdict(proc_spec), "pipeline": pipeline,
            "actors": req.actors, "gpu_per_actor": req.gpu_per_actor,
            "cpu_per_actor": req.cpu_per_actor, "max_attempts": req.max_attempts,
            "address": req.address, "frames": frames[1] - frames[0], "chunks": len(chunks),
            "telemetry": req.telemetry, "telemetry_interval": req.telemetry_interval,
            "telemetry_local_dir": req.telemetry_local_dir, "prometheus_port": req.prometheus_port,
            "telemetry_target": req.telemetry_target,
            "sources": [s for s in req.sources], "video": info.to_json()["video"],
            "plan_s": time.perf_counter() - t}
    ledger = JobLedger.create(data_dir, spec)
    ledger.save_plan(chunks)
    ledger.save_sources(sources)
    ledger.save_named(named)
    ledger.probed = (info, index)
    return ledger


def _pool_options(spec: dict, cluster: ClusterInfo) -> tuple[PoolOptions, list[str], float | None]:
    """The worker layout: by default one worker per GPU (each runs several chunks at once), or
    one per node on a CPU-only cluster. Also the CPUs each CPU worker may use (None: a GPU
    worker takes its GPU share of its node's CPUs)."""
    notes = []
    gpa = spec.get("gpu_per_actor")
    if gpa is None:
        gpa = 1.0 if cluster.gpus > 0 else 0.0
    if gpa > 0 and cluster.gpus == 0:
        raise FFrayError(f"--gpu-per-actor {gpa} asks for GPUs but the cluster has none")
    if gpa == 0 and cluster.gpus == 0:
        notes.append("warning: the cluster has no GPU; workers run on the CPU")
    actors = spec.get("actors")
    if actors is None:
        actors = max(1, int(cluster.gpus // gpa)) if gpa > 0 else max(1, cluster.cpu_nodes)
    if gpa > 0 and actors * gpa > cluster.gpus + 1e-9:
        raise FFrayError(f"{actors} actors x {gpa} GPU need {actors * gpa:g} GPUs; the cluster has "
                         f"{cluster.gpus:g}")
    cpus = None if gpa > 0 else max(1.0, cluster.cpus / actors)
    return PoolOptions(actors=actors, gpu_per_actor=gpa, cpu_per_actor=spec.get("cpu_per_actor", 0.0),
                       max_attempts=spec.get("max_attempts", 3)), notes, cpus


def run_job(ledger: JobLedger, on_progress=lambda p: None, on_note=lambda s: None,
            address: str | None = None, verbose: bool = False) -> JobResult:
    """Run the unfinished chunks of ``ledger``'s job on Ray, then assemble the output."""
    t_start = time.perf_counter()
    spec = ledger.spec
    inp, out = Path(spec["input"]), Path(spec["output"])
    if ledger.probed is not None:  # planned by this process a moment ago
        info, index = ledger.probed
    else:
        info, index = probe(inp)
        if fingerprint(inp, index) != spec["input_sha256"]:
            raise MediaError(f"{inp} changed since job {ledger.job_id} was planned; start a new job")
    chunks = ledger.load_plan()
    done = ledger.done_chunks()
    todo = [c for c in chunks if c.index not in done]
    enc = EncodeSettings(**spec["encode"])
    proc = ProcessorSpec(**spec["processor"])
    plan_s = time.perf_counter() - t_start + spec.get("plan_s", 0.0)
    progress = Progress(total_frames=spec["frames"], total_chunks=len(chunks))
    progress.frames_done = sum(c.frames for c in chunks if c.index in done)
    progress.chunks_done = len(done)
    ledger.update(status="running", started=time.time(), ended=None, error=None)
    ledger.event(kind="run", todo=len(todo), done=len(done))
    publish(ledger)
    published = [time.time()]

    def republish() -> None:  # the dashboard sees a running job's spans grow
        if time.time() - published[0] > 15:
            published[0] = time.time()
            publish(ledger)
    t_pool = time.perf_counter()
    t_run0 = time.time()
    if todo:
        cluster = connect(address if address is not None else spec.get("address"), verbose)
        failed = False
        try:
            opts, notes, worker_cpus = _pool_options(spec, cluster)
            ledger.update(actors_used=opts.actors, gpu_per_actor_used=opts.gpu_per_actor)
            for n in notes:
                on_note(n)
            if spec.get("pipeline"):
                on_note(f"face pipeline: {spec['pipeline']}")
            else:
                on_note(f"processor: {proc.kind}")
            sources = ledger.load_sources()
            named = ledger.load_named()
            # model bytes go through the object store once (no node needs the model files), and a
            # worker fetches them only when its node has no prepared copy yet
            models = {k: ray.put(Path(v).read_bytes())
                      for k, v in proc.params.get("model_paths", {}).items()}
            v = info.video
            wspec = WorkerSpec(
                processor=proc, encode=enc, stream=StreamFormat(v.width, v.height, v.pix_fmt, v.color),
                rate=v.avg_rate, sources=sources, named=named, models=models,
                options=WorkerOptions(encoder_threads=enc.threads, slots=spec.get("slots"),
                                      frame_ops=spec.get("frame_ops", "auto"), cpus=worker_cpus))
            cls = ray.remote(ChunkWorker)

            def make_actor():
                return cls.options(num_gpus=opts.gpu_per_actor, num_cpus=opts.cpu_per_actor,
                                   scheduling_strategy="SPREAD",
                                   max_concurrency=MAX_CONCURRENCY).remote(wspec)

            def on_done(result: dict) -> None:
                st = result["stats"]
                ledger.record_chunk(st["chunk"], result["data"], st)

            def on_event(**kw) -> None:
                ledger.event(**kw)

            tele = Telemetry(spec, ledger.root.parent.parent) if spec.get("telemetry", True) else None
            t_workers = time.time()
            announced = []

            def progress_hook(p: Progress) -> None:
                if p.workers_ready and not announced:
                    announced.append(True)
                    first = p.worker_info[0] if p.worker_info else {}
                    on_note(f"{opts.actors} worker(s), {opts.gpu_per_actor:g} GPU each, {p.slots} chunk(s) "
                            f"at once, frames on the {first.get('backend', '?').upper()}, on "
                            f"{cluster.nodes} node(s); ready {p.workers_ready - t_workers:.1f} s after "
                            f"creation; {len(todo)} of {len(chunks)} chunks to run")
                    ledger.update(startup={"ray_s": t_workers - t_run0,
                                           "workers_ready_s": p.workers_ready - t_workers,
                                           "workers": p.worker_info})
                if tele:
                    tele.tick()
                republish()
                on_progress(p)

            try:
                run_pool(make_actor, iter_payloads(str(inp), index, todo), on_done, opts, progress,
                         progress_hook, on_event)
            finally:
                if tele is not None:
                    tele.stop()
        except BaseException as e:
            ledger.update(status="failed", ended=time.time(),
                          error=str(e).splitlines()[0] if str(e) else type(e).__name__)
            failed = isinstance(e, Exception)  # not for Ctrl-C
            raise
        finally:
            disconnect(cluster)
            publish(ledger)  # every attempt so far becomes a span (rewritten whole on resume)
            if failed:
                job_report(ledger)
    t_asm = time.perf_counter()
    pool_s = t_asm - t_pool
    if out.exists() and not spec.get("overwrite"):
        raise FFrayError(f"output exists: {out} (use --overwrite to replace it)")
    try:
        summary = assemble([ledger.chunk_path(c.index) for c in chunks], chunks, str(inp), info, out,
                           bool(spec.get("trimmed")),
                           index.frame_pts[spec["frame_range"][0]:spec["frame_range"][1]])
    except BaseException as e:
        ledger.update(status="failed", ended=time.time(),
                      error=str(e).splitlines()[0] if str(e) else type(e).__name__)
        publish(ledger)
        raise
    assemble_s = time.perf_counter() - t_asm
    wall = time.perf_counter() - t_start
    stats = ledger.chunk_stats()
    worker_s = sum(s.get("wall_s", 0.0) for s in stats)
    ledger.update(status="done", ended=time.time(), wall_s=wall, assemble_s=assemble_s, pool_s=pool_s,
                  retries=progress.retries, assembled=summary)
    publish(ledger)
    return JobResult(job_id=ledger.job_id, output=str(out), frames=spec["frames"],
                     chunks=len(chunks), chunks_run=len(todo), retries=progress.retries,
                     wall_s=wall, worker_s=worker_s, assemble_s=assemble_s, plan_s=plan_s,
                     ledger=str(ledger.root), summary=summary, report=job_report(ledger))


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


def frame_png(path: Path, number: int, frame_count: int) -> bytes:
    """Frame ``number`` (presentation order) of a video as PNG bytes (--reference-frame)."""
    import av

    if not 0 <= number < frame_count:
        raise FFrayError(f"--reference-frame {number} is outside the video (0..{frame_count - 1})")
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i == number:
                ok, png = cv2.imencode(".png", f.to_ndarray(format="bgr24"))
                return png.tobytes()
    raise FFrayError(f"--reference-frame {number}: the video ended first")


class Telemetry:
    """The job's telemetry actors: one per alive node, re-synced as nodes join, stopped (and
    node-local files pulled) when the job ends."""

    def __init__(self, spec: dict, data_dir: Path):
        self.data_dir = data_dir
        self.target = spec.get("telemetry_target")
        self.local = spec.get("telemetry_local_dir")
        here = ray.util.get_node_ip_address()
        self.shared = {n["NodeID"] for n in ray.nodes() if n.get("NodeManagerAddress") == here} \
            if not self.local else {ray.get_runtime_context().get_node_id()}
        self.sinks: dict[str, Path] = {}
        self.interval = float(spec.get("telemetry_interval", 1.0))
        self.port = spec.get("prometheus_port")
        self.actors = ensure_actors(self.sink_for, self.interval, prometheus_port=self.port)
        self._last = time.time()

    def sink_for(self, node_id: str) -> Path | str:
        if self.target:  # every node writes to the filesystem URI directly
            self.sinks[node_id] = self.target
        if node_id not in self.sinks:
            self.sinks[node_id] = self.data_dir if node_id in self.shared else \
                Path(self.local or Path.home() / ".ffray" / "node-telemetry") / node_id
        return self.sinks[node_id]

    def tick(self) -> None:
        if time.time() - self._last > 10:  # nodes may have joined
            self._last = time.time()
            self.actors.update(ensure_actors(self.sink_for, self.interval, prometheus_port=self.port,
                                             have=self.actors))

    def stop(self) -> dict:
        try:
            return stop_and_collect(self.actors, self.data_dir, self.sinks)
        except Exception as e:  # telemetry must never fail a finished job
            log.warning("telemetry: could not stop/collect cleanly: %s", e)
            return {}
