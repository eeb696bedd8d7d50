"""The face models ffray knows: files, sources, sizes, SHA-256 and I/O contracts.

Sizes and hashes are the published ones (sources in docs/models.md); where no hash
is published for a file, the first verified fetch records it (``hashes.json`` in the model cache).
A contract lists each input/output name with its shape; ``None`` is a dynamic dimension.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ffray.errors import FFrayError


@dataclass(frozen=True)
class Contract:
    inputs: tuple[tuple[str, tuple], ...]
    outputs: tuple[tuple[str, tuple], ...]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    file: str
    kind: str  # detector | recognizer | swapper | enhancer
    urls: tuple[str, ...]
    size: int | None
    sha256: str | None
    licence: str
    contract: Contract
    notes: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)


_SCRFD_OUT = tuple((n, (None, k)) for n, k in (("448", 1), ("471", 1), ("494", 1), ("451", 4),
                                               ("474", 4), ("497", 4), ("454", 10), ("477", 10),
                                               ("500", 10)))

MODELS: dict[str, ModelEntry] = {m.name: m for m in (
    ModelEntry(
        name="det_10g", file="det_10g.onnx", kind="detector",
        urls=("https://github.com/visomaster/visomaster-assets/releases/download/v1.0.0/det_10g.onnx",),
        size=16_923_827,
        sha256="5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91",
        licence="insightface buffalo_l: non-commercial research use only",
        contract=Contract(inputs=(("input.1", (1, 3, None, None)),), outputs=_SCRFD_OUT),
        notes="SCRFD-10G with keypoints, from insightface buffalo_l"),
    ModelEntry(
        name="w600k_r50", file="w600k_r50.onnx", kind="recognizer",
        urls=("https://github.com/visomaster/visomaster-assets/releases/download/v1.0.0/w600k_r50.onnx",),
        size=174_383_860,
        sha256="4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43",
        licence="insightface buffalo_l: non-commercial research use only",
        contract=Contract(inputs=(("input.1", (None, 3, 112, 112)),),
                          outputs=(("683", (None, 512)),)),
        notes="ArcFace IResNet-50 trained on WebFace600K, from insightface buffalo_l"),
    ModelEntry(
        name="inswapper_128", file="inswapper_128.onnx", kind="swapper",
        urls=("https://huggingface.co/datasets/Gourieff/ReActor/resolve/main/models/inswapper_128.onnx",
              "https://github.com/facefusion/facefusion-assets/releases/download/models/inswapper_128.onnx"),
        size=554_253_681,
        sha256="e4a3f08c753cb72d04e10aa0f7dbe3deebbf39567d4ead6dce08e98aa49e16af",
        licence="insightface inswapper: non-commercial research use only",
        contract=Contract(inputs=(("target", (1, 3, 128, 128)), ("source", (1, 512))),
                          outputs=(("output", (1, 3, 128, 128)),)),
        notes="emap (512x512) is the graph's last initializer"),
    ModelEntry(
        name="gfpgan_1.4", file="GFPGANv1.4.onnx", kind="enhancer",
        urls=("https://github.com/visomaster/visomaster-assets/releases/download/v1.0.0/GFPGANv1.4.onnx",),
        size=340_256_690,
        sha256="6548e54cbcf248af385248f0c1193b359c37a0f98b836282b09cf48af4fd2b73",
        licence="GFPGAN: Apache-2.0 (StyleGAN2 parts under NVIDIA's licence)",
        contract=Contract(inputs=(("input", (1, 3, 512, 512)),),
                          outputs=(("output", (1, 3, 512, 512)),)),
        notes="GFPGAN v1.4 ONNX export (Rope/VisoMaster file); other exports differ",
        aliases=("gfpgan",)),
)}


def get(name: str) -> ModelEntry:
    for m in MODELS.values():
        if name in (m.name, m.file, *m.aliases):
            return m
    raise FFrayError(f"unknown model {name!r}; known: {', '.join(MODELS)}")


def check_contract(session, entry: ModelEntry, path: str = "") -> None:
    """Refuse a model whose inputs/outputs differ from the contract, saying exactly how."""
    where = f" ({path})" if path else ""

    def describe(args):
        return [(a.name, tuple(d if isinstance(d, int) else None for d in a.shape)) for a in args]

    for label, got, want in (("inputs", describe(session.get_inputs()), entry.contract.inputs),
                             ("outputs", describe(session.get_outputs()), entry.contract.outputs)):
        got_names = [n for n, _ in got]
        want_names = [n for n, _ in want]
        if sorted(got_names) != sorted(want_names):
            raise FFrayError(f"{entry.name}{where} does not match its contract: {label} are "
                             f"{got_names}, expected {want_names}")
        shapes = dict(got)
        for n, shape in want:
            g = shapes[n]
            if len(g) != len(shape) or any(w is not None and gd is not None and gd != w
                                           for gd, w in zip(g, shape)):
                raise FFrayError(f"{entry.name}{where} does not match its contract: {label[:-1]} "
                                 f"{n} has shape {list(g)}, expected {list(shape)}")
