#!/usr/bin/env bash
# Installs ffray for NVIDIA GPUs: onnxruntime-gpu instead of the CPU onnxruntime, and CuPy for
# the GPU frame backend (CUPY_PACKAGE=cupy-cuda12x for a CUDA 12 driver stack).
# Both wheels provide the same `onnxruntime` module and must never be installed together, and
# insightface depends on the CPU one, so: install ffray, remove onnxruntime, add onnxruntime-gpu.
#   bash scripts/install-gpu.sh            # from a checkout
#   FFRAY_SPEC=ffray bash install-gpu.sh   # from an index
set -euo pipefail
spec=${FFRAY_SPEC:-"$(cd "$(dirname "$0")/.." && pwd)"}
python3 -m pip install "$spec"
python3 -m pip uninstall -y onnxruntime onnxruntime-gpu
python3 -m pip install --no-deps "onnxruntime-gpu${ORT_GPU_VERSION:+==$ORT_GPU_VERSION}"
python3 -m pip install coloredlogs flatbuffers packaging protobuf sympy  # onnxruntime-gpu's needs
python3 -m pip install "${CUPY_PACKAGE:-cupy-cuda13x}"
python3 - <<'PY'
import onnxruntime as ort
providers = ort.get_available_providers()
print("onnxruntime", ort.__version__, "providers:", ", ".join(providers))
if "CUDAExecutionProvider" not in providers:
    raise SystemExit("CUDAExecutionProvider missing: check the CUDA/cuDNN libraries")
from ffray.engine.ops_gpu import available
why = available(0)
print("GPU frame backend (CuPy):", "ok" if why is None else f"unavailable ({why})")
PY
