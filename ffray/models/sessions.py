"""ONNX Runtime sessions: one per model per actor, providers chosen once.

Default providers: TensorRT and CUDA when this onnxruntime build has them (onnxruntime-gpu),
else CPU, with one warning per process.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ffray.errors import FFrayError

log = logging.getLogger("ffray")
_GPU = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def choose_providers(requested: list[str] | None = None, device_id: int = 0) -> list:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise FFrayError(f"onnxruntime here lacks {', '.join(missing)} (has {', '.join(available)})")
        names = list(requested)
    else:
        names = [p for p in _GPU if p in available and (p != _GPU[0] or tensorrt_usable())]
        names = names or ["CPUExecutionProvider"]
        if names == ["CPUExecutionProvider"]:
            warn_once("no GPU execution provider in onnxruntime: models run on the CPU "
                      "(install onnxruntime-gpu with scripts/install-gpu.sh)")
    if "CPUExecutionProvider" not in names:
        names.append("CPUExecutionProvider")
    # Batch sizes vary (faces per batch), so exhaustive cuDNN algorithm searches would rerun for
    # every new shape: use the heuristic choice.
    opts = {"TensorrtExecutionProvider": {"device_id": device_id},
            "CUDAExecutionProvider": {"device_id": device_id, "cudnn_conv_algo_search": "HEURISTIC"}}
    return [(n, opts[n]) if n in opts else n for n in names]


def tensorrt_usable() -> bool:
    """onnxruntime-gpu lists TensorRT even when the TensorRT libraries are missing; check."""
    import ctypes

    for lib in ("libnvinfer.so.10", "libnvinfer.so"):
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


def make_session(model: str | os.PathLike | bytes, providers: list | None = None, threads: int = 0):
    """An ORT session from a model file or the model's bytes."""
    import onnxruntime as ort

    if not isinstance(model, bytes):
        p = Path(model)
        if not p.is_file():
            raise FFrayError(f"model file not found: {p}")
        model = str(p)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(model, sess_options=so,
                                providers=providers or choose_providers())
