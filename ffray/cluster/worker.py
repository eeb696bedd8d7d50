"""ChunkWorker: the Ray actor that turns chunk payloads into encoded chunks, one per GPU by default.

It builds its engine once (models loaded and sessions built once for the GPU it holds) and then
runs several chunks at once (``Budget.slots``, from its CPUs): each chunk's decoder and encoder
in threads of their own, its frames through the engine's shared stages. Ray calls ``process``
concurrently (a threaded actor); a semaphore keeps at most ``slots`` chunks inside.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from fractions import Fraction

import ray

from ffray.engine.api import WorkerContext
from ffray.engine.budget import Budget, node_cpus, plan_budget
from ffray.engine.build import StreamFormat, WorkerOptions, build_engine
from ffray.engine.chunk import ChunkTimes, run_chunk
from ffray.engine.codec_child import ChunkJob, pin_to
from ffray.engine.codec_pool import CodecPool, ring_slots
from ffray.engine.frames import Frame
from ffray.engine.pipeline import ChunkRun
from ffray.engine.share import ShareClock
from ffray.engine.sources import cpu_frames, nvdec_frames, usable
from ffray.models.devices import cuda_ordinal
from ffray.processors import ProcessorSpec
from ffray.telemetry.nodes import node_name
from ffray.video.decode import ChunkPayload, DecodeReport, DeviceFramesUnfit, decode_payload
from ffray.video.encode import ChunkEncoder, EncodeSettings

MAX_CONCURRENCY = 64  # Ray threads per actor; ``slots`` of them process, the rest wait or answer info()
# A worker has dozens of threads that each hold the GIL briefly between calls that release it
# (decode, encode, CUDA, ONNX Runtime). CPython's default GIL switch interval (5 ms) measured best
# on the H200 node (identity, 16 chunks at once: 360 frames/s at 5 ms, 289 at 0.5 ms);
# FFRAY_SWITCH_INTERVAL overrides it for experiments.
SWITCH_INTERVAL_S = 0.005


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker is built from (the same for every worker of a job)."""

    processor: ProcessorSpec
    encode: EncodeSettings
    stream: StreamFormat
    rate: Fraction | None
    options: WorkerOptions = field(default_factory=WorkerOptions)
    sources: tuple[bytes, ...] = ()
    named: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)  # manifest name -> ObjectRef of the model bytes


def _env_ints(env, name: str) -> dict[str, int]:
    """``{key: int}`` from an environment variable of ``key=N`` pairs (experiment switches)."""
    text = env.get(name, "")
    return {k: int(v) for k, v in (kv.split("=") for kv in text.split(",") if kv)}


def experiment_options(o: WorkerOptions, env) -> WorkerOptions:
    """``o`` with the experiment switches set in ``env`` (the worker's environment) applied:
    FFRAY_GPU_BATCHES="det=8,swap=16", FFRAY_STAGE_THREADS="swap=3", FFRAY_MODEL_SESSIONS="swap=1"
    (sessions per model stage; default one per stage thread), FFRAY_STAGE_BATCH="swap=16" (items a
    stage takes per batch), FFRAY_CUDA_GRAPH=1|0, FFRAY_WINDOW=N (frames per chunk between
    decoder and encoder), FFRAY_SHARED_STREAM=1 (ORT on its stage thread's stream)."""
    graphs = env.get("FFRAY_CUDA_GRAPH")
    return replace(
        o, gpu_batches={**o.gpu_batches, **_env_ints(env, "FFRAY_GPU_BATCHES")},
        stage_threads={**o.stage_threads, **_env_ints(env, "FFRAY_STAGE_THREADS")},
        gpu_sessions={**o.gpu_sessions, **_env_ints(env, "FFRAY_MODEL_SESSIONS")},
        stage_batches={**o.stage_batches, **_env_ints(env, "FFRAY_STAGE_BATCH")},
        cuda_graphs=o.cuda_graphs if graphs is None else graphs == "1",
        window=int(env.get("FFRAY_WINDOW") or o.window),
        shared_streams=env.get("FFRAY_SHARED_STREAM") == "1" or o.shared_streams)


# Experiment switches the worker reads from its environment (docs/design.md, "Codec processes"):
# set on the driver, they reach every worker through the actors' runtime environment.
EXPERIMENT_SWITCHES = ("FFRAY_GPU_BATCHES", "FFRAY_STAGE_THREADS", "FFRAY_MODEL_SESSIONS",
                       "FFRAY_STAGE_BATCH", "FFRAY_NVDEC", "FFRAY_WORKER_DECODE", "FFRAY_CODEC_NICE",
                       "FFRAY_SWITCH_INTERVAL", "FFRAY_CUDA_GRAPH", "FFRAY_WINDOW",
                       "FFRAY_SHARED_STREAM", "FFRAY_CODEC_AFFINITY", "FFRAY_WORKER_CPUS",
                       "FFRAY_PARTIAL_DOWNLOAD")


def experiment_env(environ=None) -> dict[str, str]:
    """The experiment switches set here (none in normal use), for the workers' runtime_env."""
    env = os.environ if environ is None else environ
    return {k: env[k] for k in EXPERIMENT_SWITCHES if env.get(k)}


class ChunkWorker:
    def __init__(self, spec: WorkerSpec):
        t = time.perf_counter()
        sys.setswitchinterval(float(os.environ.get("FFRAY_SWITCH_INTERVAL", SWITCH_INTERVAL_S)))
        self._created = time.time()
        ctx = ray.get_runtime_context()
        self._gpu_ids = tuple(str(g) for g in ray.get_gpu_ids())
        self._node_id = ctx.get_node_id()
        self._node = node_name(ray.nodes(), self._node_id)  # telemetry's name: the host
        self._actor_id = ctx.get_actor_id()
        self._gpus = float(ctx.get_assigned_resources().get("GPU", 0.0))
        # CUDA numbers devices fastest-first unless told otherwise; Ray's ids are NVML (PCI) order
        os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
        self._gpu_uuids = gpu_uuids(self._gpu_ids)
        self._seen: list[str] | None = None
        self._spec = spec
        real_gpu = bool(self._gpu_ids) and self._gpu_uuids and self._gpu_uuids[0] is not None
        self._ordinal = cuda_ordinal(self._gpu_ids, os.environ.get("CUDA_VISIBLE_DEVICES")) \
            if real_gpu else None
        spec = self._spec = replace(spec, options=experiment_options(spec.options, os.environ))
        cpus = spec.options.cpus or self._cpu_share()
        kind = spec.processor.kind
        light = kind == "identity"  # no frame work at all: every CPU can encode
        self._budget: Budget = plan_budget(cpus, gpu=light or self._ordinal is not None,
                                           encoder_threads=spec.options.encoder_threads,
                                           slots=spec.options.slots, window=spec.options.window)
        self._codecs: CodecPool | None = None
        phases: dict[str, float] = {}

        def lap(name: str) -> None:  # the time since the previous lap (the constructor's start)
            phases[name] = time.perf_counter() - t - sum(phases.values())

        lap("context_s")
        if spec.options.codec_processes and kind in ("identity", "faceswap"):
            # started first: the codec processes come up while the models load
            lay = spec.stream.layout()
            self._codecs = CodecPool(lay, self._budget.slots,
                                     0 if light else ring_slots(lay, self._budget.window))
            if self._codecs.worker_cpus:  # FFRAY_WORKER_CPUS: threads started later inherit it
                pin_to(",".join(map(str, self._codecs.worker_cpus)))
        wctx = WorkerContext(gpu_ids=self._gpu_ids, node_id=self._node_id, sources=tuple(spec.sources),
                             named=dict(spec.named), models=dict(spec.models))
        if spec.encode.nvenc:
            from ffray.video.encode import check_encoder

            check_encoder(spec.encode, spec.stream.width, spec.stream.height)
        lap("codecs_start_s")
        built = build_engine(spec.processor, wctx, spec.stream, self._budget, self._ordinal,
                             spec.options, fetch=ray.get)
        lap("engine_s")
        # on the GPU (or with no frame work) the CPU only decodes and encodes: more encoders fit
        self._budget = plan_budget(cpus, gpu=light or built.backend == "gpu",
                                   encoder_threads=spec.options.encoder_threads,
                                   slots=spec.options.slots, window=spec.options.window)
        if self._codecs is not None:
            self._codecs.resize(self._budget.slots)
            # GPU: frames go up and down by DMA from the rings, locked while the first chunks run
            self._codecs.pin_rings(built.pin)
        self._built = built
        self._engine = built.engine
        self._slots = threading.BoundedSemaphore(self._budget.slots)
        self._slot_ids = list(range(self._budget.slots))
        self._slot_lock = threading.Lock()
        self._share = ShareClock(self._gpus)
        lap("rings_s")  # slots resized, locking started
        self._setup_s = sum(phases.values())
        self._setup_phases = {k: round(v, 3) for k, v in phases.items()}

    def _cpu_share(self) -> float:
        """This worker's share of its node's CPUs: its fraction of the node's GPUs, or the whole
        node for a CPU worker (the driver passes ``cpus`` when CPU workers share a node)."""
        try:
            node = next(n for n in ray.nodes() if n.get("NodeID") == self._node_id)
            res = node.get("Resources", {})
            cpus, gpus = float(res.get("CPU", 0) or node_cpus()), float(res.get("GPU", 0))
        except (StopIteration, Exception):  # noqa: BLE001 - fall back to what this process sees
            cpus, gpus = float(node_cpus()), 0.0
        if self._gpus > 0 and gpus > 0:
            return max(1.0, cpus * self._gpus / gpus)
        return max(1.0, cpus)

    def info(self) -> dict:
        return {"node_id": self._node_id, "node": self._node, "actor_id": self._actor_id, "pid": os.getpid(),
                "host": socket.gethostname(), "gpu_ids": list(self._gpu_ids),
                "gpu_uuids": self._gpu_uuids, "gpu_uuids_seen": self._seen_uuids(), "gpus": self._gpus,
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "cuda_ordinal": self._ordinal, "processor": self._spec.processor.kind,
                "backend": self._built.backend, "pipeline": self._built.description,
                "rotation": self._spec.stream.rotation,
                "slots": self._budget.slots, "codec_pids": self.codec_pids(),
                "budget": self._budget.to_json(), "setup_s": self._setup_s,
                "setup_phases": self._setup_phases,
                "created": self._created, "notes": self._built.notes}

    def process(self, payload: ChunkPayload, attempt: int) -> dict:
        """Decode, process and encode one chunk. Returns the NUT bytes and the chunk's stats."""
        with self._slots:
            with self._slot_lock:
                slot = self._slot_ids.pop(0)
            try:
                return self._process(payload, attempt, slot)
            finally:
                with self._slot_lock:
                    self._slot_ids.append(slot)
                    self._slot_ids.sort()

    def _process(self, payload: ChunkPayload, attempt: int, slot: int) -> dict:
        start = time.time()
        t0 = time.perf_counter()
        key = self._share.start()
        spec = payload.spec
        per_frame = {"faces_detected": [], "faces_swapped": [], "faces_by_identity": []}

        def note(item) -> None:
            per_frame["faces_detected"].append(len(item.faces))
            per_frame["faces_swapped"].append(len(item.targets))
            ids = [0] * (1 + max((t.identity for t in item.targets), default=0))
            for t in item.targets:
                ids[t.identity] += 1
            per_frame["faces_by_identity"].append(ids)
            item.frame = None  # the frame's memory goes back as soon as it is encoded

        times = ChunkTimes()
        try:
            if self._codecs is not None:
                data, run, frames, mended = self._run_codecs(payload, slot, note, times)
            else:
                data, run, frames, mended = self._run_threads(payload, note, times)
        finally:
            gpu_s = self._share.stop(key)
        if frames and not per_frame["faces_detected"]:  # passthrough: no frame came by
            per_frame = {"faces_detected": [0] * frames, "faces_swapped": [0] * frames,
                         "faces_by_identity": [[0]] * frames}
        wall = time.perf_counter() - t0
        stages = {f"{k}_s": v for k, v in run.stage_s.items()}
        stages.update({k: v for k, v in run.counters.items() if k != "per_frame"})
        stages["per_frame"] = per_frame if self._spec.processor.kind in ("faceswap", "identity") \
            else run.counters.get("per_frame", {})
        stages["frames"] = frames
        if self._spec.processor.kind == "faceswap":
            stages["faces_detected"] = sum(per_frame["faces_detected"])
            stages["faces_swapped"] = sum(per_frame["faces_swapped"])
        stats = {"chunk": spec.index, "attempt": attempt, "frames": frames, "slot": slot,
                 "start": start, "end": time.time(), "wall_s": wall, "decode_s": times.source_s,
                 "convert_s": run.stage_s.get("upload", 0.0) + run.stage_s.get("download", 0.0),
                 "process_s": sum(run.stage_s.values()), "encode_s": times.sink_s,
                 "input_bytes": payload.nbytes, "output_bytes": len(data), "stages": stages,
                 "decode_report": mended,
                 "gpu_seconds": gpu_s, "engine": self._engine.stats(), **self.info()}
        stats["gpus"] = gpu_s / wall if wall > 0 and self._gpus else self._gpus
        return {"data": data, "stats": stats}

    def _run_threads(self, payload: ChunkPayload, note, times: ChunkTimes):
        """Decode and encode in this process: the Ray call's thread decodes, a sink thread encodes."""
        spec, fmt = payload.spec, self._spec.stream
        enc = ChunkEncoder(self._spec.encode, payload.width, payload.height, payload.time_base,
                           self._spec.rate, payload.color, fmt.pix_fmt, layout=fmt.layout(),
                           threads=self._budget.encoder_threads)

        def sink(item) -> None:
            if item.context:  # decoded for the face tracks only
                item.frame = None
                return
            enc.write_frame(item.frame, item.pts)
            note(item)

        first = spec.first_frame - spec.context
        report = DecodeReport()
        frames = ((first + i, f.pts, Frame(decoded=f)) for i, f in
                  enumerate(decode_payload(payload, self._budget.decoder_threads, report)))
        run = run_chunk(self._engine, spec.index, spec.decoded_frames, self._budget.window, frames,
                        sink, times, context=spec.context)
        t = time.perf_counter()
        data = enc.finish()
        times.sink_s += time.perf_counter() - t
        return data, run, enc.frames, report.to_json()

    def _run_codecs(self, payload: ChunkPayload, slot: int, note, times: ChunkTimes):
        """Decode and encode in the slot's codec process; frames come and go through its ring.
        With worker-side decoding (``engine.sources``) the worker decodes and the process only
        encodes; a chunk NVDEC cannot deliver as decoded (``DeviceFramesUnfit``) runs again
        with the codec process decoding."""
        mode = "" if not self._engine.stages else os.environ.get("FFRAY_WORKER_DECODE", "")
        source = usable(mode, payload, self._spec.stream.layout(), self._built.gpu_ops) \
            if mode else None
        if source is not None:
            mine = ChunkTimes()  # this attempt's, kept only if it succeeds
            try:
                out = self._run_in_codec_process(payload, slot, note, mine, source)
                times.source_s += mine.source_s
                times.sink_s += mine.sink_s
                return out
            except DeviceFramesUnfit:
                pass  # the process was replaced; nothing of this attempt is kept
        return self._run_in_codec_process(payload, slot, note, times, None)

    def _run_in_codec_process(self, payload: ChunkPayload, slot: int, note, times: ChunkTimes,
                              source: str | None):
        """One chunk on the slot's codec process; ``source``: the worker decodes (``nvdec`` or
        ``cpu``) and the process only encodes, or None: the process decodes too."""
        spec, fmt, b = payload.spec, self._spec.stream, self._budget
        passthrough = not self._engine.stages
        nvdec = source is None and os.environ.get("FFRAY_NVDEC") == "1"
        job = ChunkJob(payload=payload, encode=self._spec.encode, rate=self._spec.rate,
                       pix_fmt=fmt.pix_fmt, encoder_threads=b.encoder_threads,
                       decoder_threads=b.decoder_threads, passthrough=passthrough,
                       hw_device=self._ordinal if nvdec else None, encode_only=source is not None)
        report, runs, done = DecodeReport(), [], []

        def body(proc) -> None:
            if source == "nvdec":
                decoded = nvdec_frames(payload, proc, self._built.gpu_ops, report, self._ordinal)
            elif source == "cpu":
                decoded = cpu_frames(payload, proc, fmt.layout(), report, b.decoder_threads)
            else:
                decoded = ((pts, Frame(host=proc.views[ring], slot=ring, pinned=proc.pinned))
                           for _, ring, pts in proc.frames())
            first = spec.first_frame - spec.context
            frames = ((first + i, pts, frame) for i, (pts, frame) in enumerate(decoded))

            def sink(item) -> None:
                if item.context:  # decoded for the face tracks only: its slot goes back
                    proc.skip(item.seq, item.frame.slot)
                else:
                    proc.encode(item.seq, item.frame.slot, item.frame.dirty, item.pts)
                    done.append(item)  # counted once the chunk is through (it may run again)
                item.frame = None

            runs.append(run_chunk(self._engine, spec.index, spec.decoded_frames, b.window, frames,
                                  sink, times, context=spec.context, on_fail=proc.abort))

        data, st = self._codecs.run(slot, job, None if passthrough else body)
        for item in done:
            note(item)
        times.source_s += st["decode_s"]
        times.sink_s += st["encode_s"]
        mended = st.get("decode_report", {}) if source is None \
            else {**report.to_json(), "worker_decoded": source}
        return (data, (runs[0] if runs else ChunkRun(spec.index, spec.frames, 1)), int(st["frames"]),
                mended)

    def codec_pids(self) -> list[int]:
        """The worker's codec processes (in ``info()``: benchmarks count their memory)."""
        return self._codecs.pids() if self._codecs is not None else []

    def _seen_uuids(self) -> list[str] | None:
        """UUIDs of the GPUs on which NVML lists this process (a CUDA context exists once models
        ran): the independent check that ``gpu_uuids`` names the device really used. None before
        any GPU use or without NVML; [] where NVML shows other PIDs (a container's PID namespace)."""
        if self._seen or not self._gpu_ids:
            return self._seen
        try:
            import pynvml

            pynvml.nvmlInit()
            try:
                seen = []
                for i in range(pynvml.nvmlDeviceGetCount()):
                    h = pynvml.nvmlDeviceGetHandleByIndex(i)
                    pids = {p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h)}
                    if os.getpid() in pids:
                        u = pynvml.nvmlDeviceGetUUID(h)
                        seen.append(u.decode() if isinstance(u, bytes) else str(u))
                self._seen = seen
            finally:
                pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - no NVML (CPU machines, fake GPUs)
            self._seen = None
        return self._seen


def gpu_uuids(gpu_ids: tuple[str, ...]) -> list[str | None]:
    """NVML UUIDs of the physical GPUs Ray assigned (Ray's GPU ids are NVML indices, or UUIDs when
    the node's CUDA_VISIBLE_DEVICES lists UUIDs); None where NVML cannot tell (no driver, or fake
    GPUs in tests)."""
    if not gpu_ids:
        return []
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            out = []
            for g in gpu_ids:
                if g.startswith(("GPU-", "MIG-")):
                    out.append(g)
                    continue
                h = pynvml.nvmlDeviceGetHandleByIndex(int(g))
                u = pynvml.nvmlDeviceGetUUID(h)
                out.append(u.decode() if isinstance(u, bytes) else str(u))
            return out
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVML here, or an index NVML does not know
        return [None for _ in gpu_ids]
