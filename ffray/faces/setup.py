"""Driver-side face-pipeline setup (no cluster needed): choose the pipeline, find the models it
needs, check their contracts, and gather the role images (reference, --map pairs)."""

from __future__ import annotations

from pathlib import Path

import onnx

from ffray.errors import FFrayError
from ffray.faces.landmarks import choose_warp, unavailable
from ffray.models.manifest import ModelEntry, get
from ffray.models.store import locate


def _have(name: str, dirs: list[Path]) -> bool:
    try:
        locate(name, dirs)
        return True
    except FFrayError:
        return False


def check_contract_file(path: Path, entry: ModelEntry) -> None:
    """The contract check on the ONNX graph itself (no session, so no GPU needed here)."""
    from ffray.models.manifest import check_contract

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf/ONNX raise various types for a damaged file
        raise FFrayError(f"{path} is not a readable ONNX model ({str(e).splitlines()[0][:120]})") from None
    inits = {i.name for i in model.graph.initializer}

    class _Arg:
        def __init__(self, v):
            self.name = v.name
            dims = v.type.tensor_type.shape.dim
            self.shape = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]

    class _Graph:
        def get_inputs(self):
            return [_Arg(v) for v in model.graph.input if v.name not in inits]

        def get_outputs(self):
            return [_Arg(v) for v in model.graph.output]

    check_contract(_Graph(), entry, str(path))


def resolve(params: dict, model_dirs: list[Path]) -> tuple[dict, dict[str, Path], str]:
    """Explicit detector/swapper choices ("auto": insightface models when all are present, else
    the offline mtcnn + classic), the model files needed, and a one-line description."""
    p = dict(params)
    full = all(_have(n, model_dirs) for n in ("det_10g", "w600k_r50", "inswapper_128"))
    if p.get("detector", "auto") == "auto":
        p["detector"] = "scrfd" if full else "mtcnn"
    if p.get("swapper", "auto") == "auto":
        p["swapper"] = "inswapper" if full else "classic"
    warp_note = ""
    if p["swapper"] == "classic":
        p["classic_warp"], warp_note = choose_warp(p.get("classic_warp", "auto"), unavailable())
    needed = []
    if p["detector"] == "scrfd":
        needed.append("det_10g")
    if p["swapper"] == "inswapper":
        needed += ["inswapper_128", "w600k_r50"]
    if p.get("select") == "reference" or p.get("mapping"):
        if not _have("w600k_r50", model_dirs):
            what = "--map" if p.get("mapping") else "--select reference"
            raise FFrayError(f"{what} needs a face recognizer (w600k_r50): run `ffray models fetch "
                             "w600k_r50` or pass --model-dir")
        needed.append("w600k_r50")
    if p.get("enhance") == "gfpgan":
        needed.append("gfpgan_1.4")
    paths = {}
    for name in dict.fromkeys(needed):
        path = locate(name, model_dirs)
        check_contract_file(path, get(name))
        paths[name] = path
    desc = f"{p['detector']} detector + {p['swapper']} swapper" + \
        (f" ({warp_note})" if warp_note else "") + \
        (" + gfpgan enhancer" if p.get("enhance") == "gfpgan" else "") + \
        (" (offline default: no models installed)" if not full and params.get("swapper", "auto") == "auto"
         else "")
    return p, paths, desc
