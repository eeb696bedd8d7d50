"""ONNX Runtime sessions: providers chosen once per worker, explicit thread budgets, and a check
that a GPU session really runs on the GPU.

Default providers: TensorRT (when its libraries load; engines cached on disk) and CUDA when this
onnxruntime build has them (onnxruntime-gpu), else CPU with one warning per process. ``--providers``
takes ORT names or the short forms ``cpu``, ``cuda``, ``tensorrt``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ffray.errors import FFrayError

log = logging.getLogger("ffray")
_GPU = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
           "tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider"}


def provider_names(requested) -> list[str] | None:
    if not requested:
        return None
    return [ALIASES.get(str(p).strip().lower(), str(p).strip()) for p in requested if str(p).strip()]


def choose_providers(requested: list[str] | None = None, device_id: int = 0,
                     trt_cache: str | os.PathLike | None = None, fp16: bool = True) -> list:
    """Provider list for ``InferenceSession``: names with their options (device ordinal, cuDNN
    heuristic search; TensorRT engine and timing caches in ``trt_cache``)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    names = provider_names(requested)
    if names:
        missing = [p for p in names if p not in available]
        if missing:
            raise FFrayError(f"onnxruntime here lacks {', '.join(missing)} (has {', '.join(available)})")
        if "TensorrtExecutionProvider" in names and not tensorrt_usable():
            raise FFrayError("--providers asks for TensorRT but its libraries (libnvinfer) do not load "
                             "here; install the tensorrt wheels or use --providers cuda")
    else:
        names = [p for p in _GPU if p in available and (p != _GPU[0] or tensorrt_usable())]
        names = names or ["CPUExecutionProvider"]
        if names == ["CPUExecutionProvider"]:
            warn_once("no GPU execution provider in onnxruntime: models run on the CPU "
                      "(install onnxruntime-gpu with scripts/install-gpu.sh)")
    if "CPUExecutionProvider" not in names:
        names.append("CPUExecutionProvider")
    # Fixed shapes per session (batches are padded), but the heuristic choice is also the
    # reproducible one: an exhaustive search can pick another algorithm on another run.
    cuda = {"device_id": device_id, "cudnn_conv_algo_search": "HEURISTIC",
            "cudnn_conv_use_max_workspace": "1", "arena_extend_strategy": "kSameAsRequested"}
    trt = {"device_id": device_id, "trt_fp16_enable": bool(fp16)}
    if trt_cache:
        Path(trt_cache).mkdir(parents=True, exist_ok=True)
        trt.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(trt_cache),
                   trt_timing_cache_enable=True, trt_timing_cache_path=str(trt_cache))
    opts = {"TensorrtExecutionProvider": trt, "CUDAExecutionProvider": cuda}
    return [(n, opts[n]) if n in opts else n for n in names]


def with_cuda_options(providers: list, **options: str) -> list | None:
    """``providers`` with ``options`` added to the CUDA EP's, or None when the first provider is
    not the CUDA EP (TensorRT has its own graphs and streams; the CPU neither)."""
    if first_provider(providers) != "CUDAExecutionProvider":
        return None
    out = []
    for p in providers:
        name, opts = (p if isinstance(p, tuple) else (p, None))
        out.append((name, {**(opts or {}), **options}) if name == "CUDAExecutionProvider" else p)
    return out


def with_cuda_graphs(providers: list) -> list | None:
    """CUDA graphs on (ONNX Runtime's ``enable_cuda_graph``)."""
    return with_cuda_options(providers, enable_cuda_graph="1")


def first_provider(providers: list) -> str:
    p = providers[0]
    return p[0] if isinstance(p, tuple) else p


def uses_gpu(providers: list) -> bool:
    return first_provider(providers) in _GPU


def tensorrt_usable() -> bool:
    """onnxruntime-gpu lists TensorRT even when the TensorRT libraries are missing; check."""
    import ctypes

    for lib in ("libnvinfer.so.10", "libnvinfer.so.11", "libnvinfer.so"):
        try:
            ctypes.CDLL(lib)
            return True
        except OSError:
            continue
    return False


_warned: set[str] = set()


def warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        log.warning(msg)


def make_session(model: str | os.PathLike | bytes, providers: list | None = None, threads: int = 1,
                 what: str = "model"):
    """An ORT session from a model file or bytes, with ``threads`` intra-op threads that sleep when
    idle (ORT's default spins every core: it fights the encoders for the CPU). A session asked to
    run on a GPU that ended up on the CPU (ORT falls back silently) is an error."""
    import onnxruntime as ort

    from ffray.models.devices import check_provider

    if not isinstance(model, bytes):
        p = Path(model)
        if not p.is_file():
            raise FFrayError(f"model file not found: {p}")
        model = str(p)
    providers = providers or choose_providers()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = max(1, int(threads))
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    session = ort.InferenceSession(model, sess_options=so, providers=providers)
    check_provider(session, first_provider(providers), what)
    return session
