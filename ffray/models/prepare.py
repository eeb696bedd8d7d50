"""Model graphs prepared for the GPU: a symbolic batch axis and fp16 weights, each checked
against the original graph before use.

- ``dynamic_batch``: det_10g and inswapper_128 are exported with batch 1 fixed. The edit names
  the inputs' first axis ``batch``, clears stale shape annotations, and turns the leading 1 of
  constant ``Reshape`` targets into 0 ("keep the input's dimension"), which is what carries the
  batch through a graph exported at batch 1. Graphs where that is not enough produce different
  outputs; ``compare`` catches it and the caller keeps batch 1.
- ``to_fp16``: ONNX Runtime's own converter (``onnxruntime.transformers.float16``), float32 inputs
  and outputs kept, so callers feed the same arrays.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def dynamic_batch(model: onnx.ModelProto, name: str = "batch") -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    for v in g.input:
        if v.name in inits:
            continue
        dims = v.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = name
    for v in g.output:
        dims = v.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
            dims[0].Clear()
            dims[0].dim_param = name
    unique_dims(m, keep=name)
    consts = {n.output[0]: n for n in g.node if n.op_type == "Constant" and n.output}
    users: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            users[i] = users.get(i, 0) + 1
    for n in g.node:
        if n.op_type != "Reshape" or len(n.input) < 2:
            continue
        if any(a.name == "allowzero" and a.i == 1 for a in n.attribute):
            continue
        src = n.input[1]
        if src in inits:
            arr = numpy_helper.to_array(inits[src])
        elif src in consts:
            arr = numpy_helper.to_array(consts[src].attribute[0].t)
        else:
            continue
        if arr.ndim != 1 or len(arr) < 2 or arr[0] != 1:
            continue
        new = arr.copy()
        new[0] = 0
        new_name = f"{src}__batch"
        if new_name not in inits:
            t = numpy_helper.from_array(new.astype(arr.dtype), new_name)
            g.initializer.append(t)
            inits[new_name] = t
        n.input[1] = new_name
    return m


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return unique_dims(convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=True))


def unique_dims(model: onnx.ModelProto, keep: str = "batch") -> onnx.ModelProto:
    """Give every symbolic output dimension its own name (except the batch axis) and drop stale
    shape annotations: ONNX Runtime takes equal names for equal sizes and reuses buffers on that
    basis (det_10g-like graphs whose 9 outputs all say ``N`` then fail at run time)."""
    del model.graph.value_info[:]
    for k, v in enumerate(model.graph.output):
        for j, d in enumerate(v.type.tensor_type.shape.dim):
            if d.HasField("dim_param") and d.dim_param != keep:
                d.dim_param = f"{d.dim_param}_{k}_{j}"
    return model


def fixed_batch(model: onnx.ModelProto) -> bool:
    """The graph's inputs have a numeric batch axis (det_10g, inswapper_128: 1)."""
    inits = {i.name for i in model.graph.initializer}
    for v in model.graph.input:
        if v.name in inits:
            continue
        dims = v.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value"):
            return True
    return False


def compare(ref: list[np.ndarray], got: list[np.ndarray]) -> float:
    """Largest difference between two sets of outputs, relative to the reference's largest
    magnitude (so one tolerance fits scores in [0, 1] and distances in pixels)."""
    worst = 0.0
    if len(ref) != len(got):
        return float("inf")
    for a, b in zip(ref, got):
        a = np.asarray(a, np.float64)
        b = np.asarray(b, np.float64)
        if a.size != b.size:
            return float("inf")
        b = b.reshape(a.shape)
        if not np.all(np.isfinite(b)):
            return float("inf")
        scale = max(1e-6, float(np.abs(a).max()) if a.size else 1.0)
        worst = max(worst, float(np.abs(a - b).max()) / scale if a.size else 0.0)
    return worst
