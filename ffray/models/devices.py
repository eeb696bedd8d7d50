"""Which CUDA device a worker's models run on, and checking that they really do.

Ray hands a worker GPU ids (NVML indices, or UUIDs when the node lists UUIDs) and sets
``CUDA_VISIBLE_DEVICES`` to them, so inside the worker CUDA numbers only those devices, from 0.
The ordinal to give ONNX Runtime and CuPy is therefore the id's position in that list, never the
id itself (a worker on physical GPU 3 uses CUDA device 0). Pure functions, tested without GPUs.
"""

from __future__ import annotations

from ffray.errors import FFrayError

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def cuda_ordinal(gpu_ids: tuple | list, visible: str | None) -> int:
    """The CUDA ordinal of the worker's first assigned GPU.

    ``gpu_ids``: Ray's ids for the worker (``ray.get_gpu_ids()``), as strings or ints;
    ``visible``: the worker's ``CUDA_VISIBLE_DEVICES`` (None when unset). With the variable set,
    the ordinal is the first id's position in it; unset, CUDA sees every device and the id (an
    index) is the ordinal. A UUID id needs the variable (CUDA orders devices by its own rules)."""
    if not gpu_ids:
        raise FFrayError("this worker has no GPU assigned")
    first = str(gpu_ids[0]).strip()
    if visible is None or visible.strip() == "":
        if first.isdigit():
            return int(first)
        raise FFrayError(f"GPU {first} is a UUID but CUDA_VISIBLE_DEVICES is unset: cannot tell its "
                         "CUDA ordinal")
    listed = [v.strip() for v in visible.split(",") if v.strip()]
    for i, v in enumerate(listed):
        if v == first or _same_uuid(v, first):
            return i
    raise FFrayError(f"GPU {first} assigned by Ray is not in CUDA_VISIBLE_DEVICES={visible!r}")


def _same_uuid(a: str, b: str) -> bool:
    """CUDA accepts UUID prefixes (``GPU-8f3b``) in CUDA_VISIBLE_DEVICES."""
    a, b = a.lower(), b.lower()
    return (a.startswith(("gpu-", "mig-")) and b.startswith(("gpu-", "mig-"))
            and (a.startswith(b) or b.startswith(a)))


def check_provider(session, wanted: str, what: str) -> None:
    """Fail in one line when ONNX Runtime did not put ``what`` on the provider asked for (it falls
    back to the CPU silently, e.g. for a device id it cannot open)."""
    active = session.get_providers()
    if wanted in GPU_PROVIDERS and (not active or active[0] not in GPU_PROVIDERS):
        raise FFrayError(f"{what}: ONNX Runtime did not start {wanted} (active: "
                         f"{', '.join(active) or 'none'}); check the GPU and its libraries, or pass "
                         "--providers cpu")
