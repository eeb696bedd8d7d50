"""Write test-contract ONNX models: exactly the inputs/outputs of the real face models, small weights.

    python scripts/make_test_models.py OUT_DIR [--cost-matched]

Files (names as in the manifest): det_10g.onnx (SCRFD: `input.1` [1,3,H,W] -> scores/boxes/kps for
strides 8/16/32, 2 anchors per cell), w600k_r50.onnx (ArcFace: `input.1` [N,3,112,112] -> `683`
[N,512]), inswapper_128.onnx (`target` [1,3,128,128], `source` [1,512] -> `output`, with a 512x512
`emap` as the last initializer), GFPGANv1.4.onnx (`input` [1,3,512,512] -> `output`).

What they compute is simple and known, so tests can check the code around them:
- det: per stride s, score = sigmoid(10 * mean of the s x s cell of channel 0 of the normalised
  input), so a bright square on black scores ~1 in its cells; box distances are 1 stride on each
  side; keypoints sit at fixed offsets (KPS_OFFSETS x stride) from the anchor centre.
- arcface: a fixed random projection of the 8x8-average-pooled face (different faces differ,
  the same face matches).
- inswapper: output = 0.5 * target + 0.5 * sigmoid(latent @ W) per channel: the source identity
  decides the colour the face is pushed towards.
- gfpgan: a fixed 3x3 smoothing of the face plus the input (a visible but mild change).

`--cost-matched` adds compute branches (scaled by 1e-9 into the result) so the GPU cost is close to
the real models' (detector ~13 GMAC at 640x640, swapper ~175 GMAC per face, enhancer ~198 GMAC),
for benchmarks. They are stand-ins for cost and I/O only, never for quality. The cost-matched
detector also changes what counts as a face, so benchmark videos control the face count exactly:
it fires only at stride 32, only where a cell is saturated red (10 * (mean R - mean G) - 15 in the
normalised input: skin and ordinary red objects stay far below), with boxes of 3 strides each
side, so a red marker of about two stride-32 cells (64 px at the detector's 640 input, ~190 px in
1080p) yields exactly one face (see scripts/bench_media.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 9  # readable by onnxruntime >= 1.15 (newer onnx writes IR versions ORT may not know)
KPS_OFFSETS = np.array([-0.5, -0.4, 0.5, -0.4, 0.0, 0.1, -0.35, 0.5, 0.35, 0.5], np.float32)
SCRFD_OUTPUTS = {8: ("448", "451", "454"), 16: ("471", "474", "477"), 32: ("494", "497", "500")}
MARKER_STRIDE = 32  # the cost-matched detector fires on red markers at this stride only


def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr, np.float32), name)


def _heavy_chain(x: str, ch_in: int, ch: int, n: int, prefix: str, nodes, inits) -> str:
    """``n`` 3x3 convs of ``ch`` channels sharing one weight tensor, scaled to ~0; returns a
    tensor with ``ch_in`` channels to add to ``x``."""
    rng = np.random.default_rng(1)
    inits += [_init(f"{prefix}_win", rng.standard_normal((ch, ch_in, 3, 3)) * 0.01),
              _init(f"{prefix}_w", rng.standard_normal((ch, ch, 3, 3)) * 0.01),
              _init(f"{prefix}_wout", rng.standard_normal((ch_in, ch, 1, 1)) * 0.01),
              _init(f"{prefix}_eps", [1e-9])]
    nodes.append(helper.make_node("Conv", [x, f"{prefix}_win"], [f"{prefix}_0"], pads=[1, 1, 1, 1]))
    cur = f"{prefix}_0"
    for i in range(n):
        nodes.append(helper.make_node("Conv", [cur, f"{prefix}_w"], [f"{prefix}_{i + 1}"],
                                      pads=[1, 1, 1, 1]))
        cur = f"{prefix}_{i + 1}"
    nodes.append(helper.make_node("Conv", [cur, f"{prefix}_wout"], [f"{prefix}_o"]))
    nodes.append(helper.make_node("Mul", [f"{prefix}_o", f"{prefix}_eps"], [f"{prefix}_tiny"]))
    return f"{prefix}_tiny"


def make_scrfd(cost: bool) -> onnx.ModelProto:
    nodes, inits, outs = [], [], []
    x = "input.1"
    if cost:  # ~13 GMAC at 640x640: 3x3 convs of 64 channels at stride 2 (320x320)
        inits += [_init("c_pool_w", np.full((3, 3, 2, 2), 0.25 / 3)), _init("c_scales", [1, 1, 2, 2])]
        nodes.append(helper.make_node("Conv", [x, "c_pool_w"], ["c_half"], strides=[2, 2]))
        tiny = _heavy_chain("c_half", 3, 64, 3, "det_cost", nodes, inits)
        nodes.append(helper.make_node("Resize", [tiny, "", "c_scales"], ["c_tiny_up"], mode="nearest"))
        nodes.append(helper.make_node("Add", [x, "c_tiny_up"], ["x_used"]))
        x = "x_used"
    for s, (sc, bb, kp) in SCRFD_OUTPUTS.items():
        w_sc = np.zeros((2, 3, s, s), np.float32)
        b_sc = np.zeros(2, np.float32)
        box = 1.0
        if not cost:
            w_sc[:, 0] = 10.0 / (s * s)
        elif s == MARKER_STRIDE:  # benchmark "faces": saturated red markers, one detection each
            w_sc[:, 0], w_sc[:, 1], b_sc[:] = 10.0 / (s * s), -10.0 / (s * s), -15.0
            box = 3.0
        else:
            b_sc[:] = -20.0
        inits += [_init(f"w_sc{s}", w_sc), _init(f"b_sc{s}", b_sc), _init(f"w_bb{s}", np.zeros((8, 3, s, s))),
                  _init(f"b_bb{s}", np.full(8, box)), _init(f"w_kp{s}", np.zeros((20, 3, s, s))),
                  _init(f"b_kp{s}", np.tile(KPS_OFFSETS, 2))]
        for kind, k in (("sc", 1), ("bb", 4), ("kp", 10)):
            ins = [x, f"w_{kind}{s}", f"b_{kind}{s}"]
            nodes.append(helper.make_node("Conv", ins, [f"{kind}{s}_map"], strides=[s, s]))
            nodes.append(helper.make_node("Transpose", [f"{kind}{s}_map"], [f"{kind}{s}_t"],
                                          perm=[0, 2, 3, 1]))
            inits.append(numpy_helper.from_array(np.array([-1, k], np.int64), f"shape_{kind}{s}"))
            name = {"sc": sc, "bb": bb, "kp": kp}[kind]
            raw = f"{kind}{s}_flat" if kind == "sc" else name
            nodes.append(helper.make_node("Reshape", [f"{kind}{s}_t", f"shape_{kind}{s}"], [raw]))
            if kind == "sc":
                nodes.append(helper.make_node("Sigmoid", [raw], [name]))
            outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", k]))
    return _scrfd_model(nodes, inits, outs, "scrfd_contract")


def _scrfd_model(nodes, inits, outs, name: str) -> onnx.ModelProto:
    """det_10g's graph interface: input ``input.1`` [1,3,H,W]; outputs in its order (scores of
    strides 8/16/32, then boxes, then keypoints)."""
    order = [n for s in (8, 16, 32) for n in SCRFD_OUTPUTS[s][:1]] + \
            [n for s in (8, 16, 32) for n in SCRFD_OUTPUTS[s][1:2]] + \
            [n for s in (8, 16, 32) for n in SCRFD_OUTPUTS[s][2:]]
    outs.sort(key=lambda o: order.index(o.name))
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info(
        "input.1", TensorProto.FLOAT, [1, 3, "H", "W"])], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model


_RANDOM_SCORE_LOGIT_98 = {8: 3.0, 16: 1.7, 32: 2.9}  # 98th percentile of the seed-5 score logits


def make_scrfd_random(seed: int = 5) -> onnx.ModelProto:
    """det_10g's exact I/O with fixed random weights: every score, box side and keypoint coordinate
    its own function of the image (a decoder that mixed up outputs, sides or coordinates would
    disagree with insightface's ``SCRFD``, the oracle in tests/test_reference.py). About 2 % of
    the anchors score above 0.5 on a natural photo (a few hundred: below the pre-NMS cap)."""
    rng = np.random.default_rng(seed)
    nodes, inits, outs = [], [], []
    x = "input.1"
    for s, (sc, bb, kp) in SCRFD_OUTPUTS.items():
        fan = 3 * s * s
        specs = (("sc", 2, 1), ("bb", 8, 4), ("kp", 20, 10))
        for kind, ch, k in specs:
            w = rng.standard_normal((ch, 3, s, s)).astype(np.float32) * (3.0 / np.sqrt(fan))
            b = np.zeros(ch, np.float32)
            if kind == "sc":  # ~2 % of anchors above 0.5 on t1.jpg and the astronaut (measured)
                b[:] = -_RANDOM_SCORE_LOGIT_98[s]
            inits += [_init(f"w_{kind}{s}", w), _init(f"b_{kind}{s}", b)]
            nodes.append(helper.make_node("Conv", [x, f"w_{kind}{s}", f"b_{kind}{s}"], [f"{kind}{s}_map"],
                                          strides=[s, s]))
            nodes.append(helper.make_node("Transpose", [f"{kind}{s}_map"], [f"{kind}{s}_t"],
                                          perm=[0, 2, 3, 1]))
            inits.append(numpy_helper.from_array(np.array([-1, k], np.int64), f"shape_{kind}{s}"))
            name = {"sc": sc, "bb": bb, "kp": kp}[kind]
            raw = f"{kind}{s}_flat" if kind != "kp" else name
            nodes.append(helper.make_node("Reshape", [f"{kind}{s}_t", f"shape_{kind}{s}"], [raw]))
            if kind == "sc":
                nodes.append(helper.make_node("Sigmoid", [raw], [name]))
            elif kind == "bb":  # distances: positive, 0.5 to ~4 strides
                inits.append(_init(f"half{s}", 0.5))
                nodes.append(helper.make_node("Softplus", [raw], [f"bb{s}_sp"]))
                nodes.append(helper.make_node("Add", [f"bb{s}_sp", f"half{s}"], [name]))
            outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", k]))
    return _scrfd_model(nodes, inits, outs, "scrfd_random")


def make_arcface(cost: bool) -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    nodes = [helper.make_node("AveragePool", ["input.1"], ["pooled"], kernel_shape=[8, 8],
                              strides=[8, 8]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Gemm", ["flat", "proj"], ["683"])]
    inits = [_init("proj", rng.standard_normal((3 * 14 * 14, 512)) / np.sqrt(588))]
    graph = helper.make_graph(
        nodes, "arcface_contract",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", 512])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def make_inswapper(cost: bool) -> onnx.ModelProto:
    rng = np.random.default_rng(11)
    nodes = [helper.make_node("Gemm", ["source", "to_rgb"], ["rgb_logit"]),
             helper.make_node("Sigmoid", ["rgb_logit"], ["rgb"]),
             helper.make_node("Reshape", ["rgb", "rgb_shape"], ["rgb4"]),
             helper.make_node("Mul", ["target", "half"], ["t_half"]),
             helper.make_node("Mul", ["rgb4", "half"], ["c_half"]),
             helper.make_node("Add", ["t_half", "c_half"], ["mixed"])]
    inits = [_init("to_rgb", rng.standard_normal((512, 3)) * 2.0), _init("half", [0.5]),
             numpy_helper.from_array(np.array([1, 3, 1, 1], np.int64), "rgb_shape")]
    out = "mixed"
    if cost:  # ~175 GMAC: 3x3 convs of 1024 channels at 32x32, like the style blocks
        inits.append(_init("down_w", np.full((3, 3, 4, 4), 1 / 48)))
        nodes.append(helper.make_node("Conv", ["target", "down_w"], ["t32"], strides=[4, 4]))
        tiny = _heavy_chain("t32", 3, 1024, 17, "swap_cost", nodes, inits)
        inits.append(_init("up4", [1, 1, 4, 4]))
        nodes.append(helper.make_node("Resize", [tiny, "", "up4"], ["tiny128"], mode="nearest"))
        nodes.append(helper.make_node("Add", ["mixed", "tiny128"], ["mixed_c"]))
        out = "mixed_c"
    nodes.append(helper.make_node("Clip", [out, "zero", "one"], ["output"]))
    inits += [_init("zero", 0.0), _init("one", 1.0)]
    inits.append(_init("emap", rng.standard_normal((512, 512)) / np.sqrt(512)))  # must stay last
    graph = helper.make_graph(
        nodes, "inswapper_contract",
        [helper.make_tensor_value_info("target", TensorProto.FLOAT, [1, 3, 128, 128]),
         helper.make_tensor_value_info("source", TensorProto.FLOAT, [1, 512])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 128, 128])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def make_gfpgan(cost: bool) -> onnx.ModelProto:
    k = np.zeros((3, 1, 3, 3), np.float32)
    k[:, 0] = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32) / 16
    nodes = [helper.make_node("Conv", ["input", "blur"], ["smooth"], pads=[1, 1, 1, 1], group=3),
             helper.make_node("Sub", ["smooth", "input"], ["detail"]),
             helper.make_node("Sub", ["input", "detail"], ["sharp"])]
    inits = [_init("blur", k), _init("m1", -1.0), _init("p1", 1.0)]
    out = "sharp"
    if cost:  # ~198 GMAC: 3x3 convs of 256 channels at 128x128
        inits += [_init("gdown", np.full((3, 3, 4, 4), 1 / 48)), _init("gup", [1, 1, 4, 4])]
        nodes.append(helper.make_node("Conv", ["input", "gdown"], ["g128"], strides=[4, 4]))
        tiny = _heavy_chain("g128", 3, 256, 20, "enh_cost", nodes, inits)
        nodes.append(helper.make_node("Resize", [tiny, "", "gup"], ["g512"], mode="nearest"))
        nodes.append(helper.make_node("Add", ["sharp", "g512"], ["sharp2"]))
        out = "sharp2"
    nodes.append(helper.make_node("Clip", [out, "m1", "p1"], ["output"]))
    graph = helper.make_graph(
        nodes, "gfpgan_contract",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 512, 512])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 512, 512])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


MAKERS = {"det_10g.onnx": make_scrfd, "w600k_r50.onnx": make_arcface,
          "inswapper_128.onnx": make_inswapper, "GFPGANv1.4.onnx": make_gfpgan}


def write_all(out_dir: str | Path, cost_matched: bool = False) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, make in MAKERS.items():
        model = make(cost_matched)
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        paths[name] = out / name
        onnx.save(model, str(paths[name]))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--cost-matched", action="store_true")
    a = ap.parse_args()
    for name, p in write_all(a.out_dir, a.cost_matched).items():
        print(f"{p}  {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
