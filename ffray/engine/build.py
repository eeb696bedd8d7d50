"""Building a worker's engine: its frame backend (GPU or host), model loader and stages, from the
job's processor spec and the stream's format. Runs once per worker, in its constructor."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ffray.engine.api import WorkerContext
from ffray.engine.budget import ENCODER_THREADS, WINDOW, Budget
from ffray.engine.colour import Matrix
from ffray.engine.frames import Layout, layout_for
from ffray.engine.ops_cpu import CpuOps
from ffray.engine.pipeline import Engine
from ffray.engine.stages.adapter import ProcessorStage
from ffray.errors import FFrayError
from ffray.processors import ProcessorSpec, build
from ffray.video.decode import BgrConverter, sws_range, sws_space
from ffray.video.probe import Color

# measured on the H200: det 8 240 vs 196 frames/s at 4 (1 face); swap 16 +5-7 % over 8 (6 faces)
GPU_BATCHES = {"det": 8, "swap": 16, "embed": 8, "enhance": 4}


@dataclass(frozen=True)
class WorkerOptions:
    encoder_threads: int = ENCODER_THREADS
    slots: int | None = None  # chunks in flight per worker (default: from its CPUs)
    cpus: float | None = None  # CPUs this worker may use (default: its share of its node's)
    gpu_batches: dict = field(default_factory=dict)
    stage_threads: dict = field(default_factory=dict)  # experiments: threads per stage name
    gpu_sessions: dict = field(default_factory=dict)  # experiments: sessions per model stage
    stage_batches: dict = field(default_factory=dict)  # experiments: items per batch by stage name
    codec_processes: bool = True  # identity and faceswap chunks decode/encode in codec processes
    cuda_graphs: bool | None = None  # experiments: overrides the job's --cuda-graphs
    shared_streams: bool = False  # experiments: ORT on its stage thread's CUDA stream
    window: int = WINDOW  # frames per chunk between its decoder and its encoder


@dataclass(frozen=True)
class StreamFormat:
    """What the worker needs to know of the video stream (the same for every chunk)."""

    width: int
    height: int
    pix_fmt: str
    color: Color
    rotation: int = 0  # display rotation, counterclockwise degrees: detectors see upright frames
    fps: float = 30.0  # nominal frame rate (face tracking's time base)

    def layout(self) -> Layout:
        return layout_for(self.pix_fmt, self.width, self.height)

    def matrix(self) -> Matrix:
        return Matrix.of(self.color, self.height, self.layout().pix_fmt)


@dataclass
class Built:
    engine: Engine
    backend: str  # "gpu" or "cpu": where frames are worked on
    description: str
    notes: dict = field(default_factory=dict)
    pin: Callable | None = None  # page-locks a host frame buffer for DMA (GPU backend), or None
    gpu_ops: object = None  # the GPU frame backend (worker-side NVDEC decoding), or None


def build_engine(spec: ProcessorSpec, ctx: WorkerContext, fmt: StreamFormat, budget: Budget,
                 ordinal: int | None, options: WorkerOptions, fetch=None) -> Built:
    """``ordinal``: the CUDA device of the worker's GPU (None without one). ``fetch`` turns an
    object ref of model bytes into bytes (only called on a cache miss)."""
    t_in = time.perf_counter()
    lay, mat = fmt.layout(), fmt.matrix()
    space, rng = sws_space(fmt.color, fmt.height), sws_range(fmt.color)
    if spec.kind == "identity":  # frames go from the decoder to the encoder untouched
        return Built(Engine([]), "cpu", "identity")
    if spec.kind != "faceswap":
        proc = build(spec, ctx)
        conv = BgrConverter(fmt.color, fmt.height)
        stage = ProcessorStage(proc, lambda f: conv(f.decoded), batch=max(1, spec.batch_size))
        return Built(Engine([stage]), "cpu", spec.kind)
    from ffray.faces.loader import HostLoader
    from ffray.faces.params import FaceSwapParams
    from ffray.faces.pipeline import FacePipeline

    params = FaceSwapParams.from_dict(spec.params)
    want_gpu = params.frame_ops
    t0 = time.perf_counter()
    ops, loader, why = None, None, ""
    laps: dict[str, float] = {}  # parts of backend_s, for the set-up figures
    if ordinal is not None and want_gpu in ("auto", "gpu") and params.blend != "poisson":
        from ffray.engine.ops_gpu import available

        why = available(ordinal) or ""
        laps["cuda_s"] = time.perf_counter() - t0  # CuPy imported, CUDA context, two kernels
        if not why:
            from ffray.engine.ops_gpu import GpuOps
            from ffray.models.gpu_loader import DeviceLoader
            from ffray.models.sessions import choose_providers, uses_gpu

            providers = choose_providers(list(params.providers) if params.providers else None,
                                         device_id=ordinal)
            if uses_gpu(providers):
                t_ops = time.perf_counter()
                ops = GpuOps(lay, mat, ordinal, space, rng, rotation=fmt.rotation)
                laps["kernels_s"] = time.perf_counter() - t_ops  # the frame kernels' module
                loader = DeviceLoader(ctx.models, params.model_sha256, ordinal, providers,
                                      params.precision, fetch=fetch,
                                      graphs=params.cuda_graphs if options.cuda_graphs is None
                                      else options.cuda_graphs, shared_streams=options.shared_streams)
            else:
                why = "the ONNX Runtime providers are CPU only"
        if want_gpu == "gpu" and ops is None:
            raise FFrayError(f"frame_ops=gpu but the GPU backend cannot start: {why}")
    if ops is None:
        models = {k: (v if isinstance(v, bytes) else fetch(v)) for k, v in ctx.models.items()}
        ops = CpuOps(lay, mat, space, rng, rotation=fmt.rotation)
        loader = HostLoader(models, params.providers, threads=budget.ort_threads,
                            device_id=ordinal or 0)
    t1 = time.perf_counter()  # frame backend and loader made (CUDA context, kernels)
    batches = {**GPU_BATCHES, **options.gpu_batches} if ops.name == "gpu" else None
    model_stages = ("det", "swap", "enhance")
    pipe = FacePipeline(ctx, params, ops, loader, gpu_batches=batches,
                        threads={k: v for k, v in options.stage_threads.items() if k in model_stages},
                        sessions={k: v for k, v in options.gpu_sessions.items() if k in model_stages})
    stages = pipe.stages(upload_threads=2 if ops.name == "gpu" else 1, host_threads=budget.host_threads,
                         fps=fmt.fps)
    for st in stages:
        if st.name in options.stage_threads and not getattr(st, "ordered", False):
            st.threads = int(options.stage_threads[st.name])
        if st.name in options.stage_batches:
            st.batch = max(1, int(options.stage_batches[st.name]))
    t2 = time.perf_counter()  # sessions made and warmed, source faces found
    notes = {"models": getattr(loader, "notes", {}), "cpu_reason": why or None,
             "setup": {"imports_s": round(t0 - t_in, 3), "backend_s": round(t1 - t0, 3),
                       "stages_s": round(t2 - t1, 3), **{k: round(v, 3) for k, v in laps.items()}}}
    return Built(Engine(stages, queue_size=16), ops.name, pipe.description, notes,
                 pin=ops.pin if ops.name == "gpu" else None,
                 gpu_ops=ops if ops.name == "gpu" else None)
