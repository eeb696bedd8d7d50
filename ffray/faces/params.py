"""The face-swap processor's options, typed and checked before any work starts."""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields

from ffray.errors import FFrayError
from ffray.faces.masks import MaskSpec, parse_padding
from ffray.faces.select import ORDERS

DETECTORS = ("auto", "scrfd", "mtcnn")
SWAPPERS = ("auto", "inswapper", "classic")
CLASSIC_WARPS = ("auto", "dense", "5point")  # the classic swapper's warp (ffray.faces.dense)
ENHANCERS = ("gfpgan",)
SELECTS = ("many", "one", "reference")
BLENDS = ("feather", "poisson")
PRECISIONS = ("auto", "fp16", "fp32")
FRAME_OPS = ("auto", "gpu", "cpu")


@dataclass(frozen=True)
class FaceSwapParams:
    detector: str = "auto"
    swapper: str = "auto"
    classic_warp: str = "auto"  # dense (68-point mesh) when its model is installed, else 5point
    enhance: str | None = None
    enhance_blend: float = 0.8
    select: str = "many"
    order: str = "largest"
    distance: float = 0.6
    track: bool = True  # faces tracked across frames: stable selection, smoothed landmarks
    smooth_cutoff: float = 1.5  # One-Euro min cutoff (Hz); 0 turns smoothing off (ffray.faces.track)
    smooth_beta: float = 0.5  # One-Euro speed coefficient (per face size per second)
    det_threshold: float | None = None
    det_size: int = 640
    min_face: int = 20
    blend: str = "feather"
    mask: tuple[str, ...] = ("box",)  # paste-back masks, combined by minimum (ffray.faces.masks)
    mask_blur: float = 0.15
    mask_padding: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # top, right, bottom, left %
    mask_occluder: str | None = None  # module:attribute giving a mask per face crop
    providers: tuple[str, ...] | None = None
    mapping: int = 0  # number of --map pairs (their images travel as named images)
    precision: str = "auto"  # GPU models: fp16 where it holds accuracy (auto), or forced
    frame_ops: str = "auto"  # where frames are worked on: the GPU when there is one (auto)
    cuda_graphs: bool = False  # GPU models replay CUDA graphs (CUDA EP; ffray.models.device)
    model_paths: dict[str, str] = field(default_factory=dict)  # filled by the driver's setup
    model_sha256: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        def one_of(name, value, allowed):
            if value not in allowed:
                raise FFrayError(f"unknown {name} {value!r}; choose {', '.join(map(str, allowed))}")

        one_of("--detector", self.detector, DETECTORS)
        one_of("--swapper", self.swapper, SWAPPERS)
        one_of("--classic-warp", self.classic_warp, CLASSIC_WARPS)
        if self.enhance not in (None, ""):
            one_of("--enhance", self.enhance, ENHANCERS)
        one_of("--select", self.select, SELECTS)
        one_of("--order", self.order, ORDERS)
        one_of("--blend", self.blend, BLENDS)
        one_of("precision", self.precision, PRECISIONS)
        one_of("frame_ops", self.frame_ops, FRAME_OPS)
        if not 0.0 <= self.enhance_blend <= 1.0:
            raise FFrayError("--enhance-blend must be between 0 and 1")
        if self.det_size < 32 or self.detector == "scrfd" and self.det_size % 32:
            raise FFrayError("--det-size must be at least 32 (a multiple of 32 for scrfd)")
        if self.smooth_cutoff < 0 or self.smooth_beta < 0:
            raise FFrayError("--smooth values must be >= 0")
        if self.min_face < 4:
            raise FFrayError("--min-face must be at least 4 pixels")
        kinds = tuple(k.strip() for k in (self.mask.split(",") if isinstance(self.mask, str)
                                           else self.mask) if k.strip())
        object.__setattr__(self, "mask", kinds)
        object.__setattr__(self, "mask_padding", parse_padding(self.mask_padding))
        self.mask_spec()  # checks kinds, blur and padding
        if self.providers is not None:
            object.__setattr__(self, "providers", tuple(self.providers))

    @classmethod
    def from_dict(cls, d: dict | None) -> FaceSwapParams:
        """Typed options from a dict (the job spec, ``--processor-opt``); a misspelt key is an
        error that names the closest option, not silently ignored."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        for k in d:
            if k not in known:
                close = difflib.get_close_matches(k, sorted(known), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise FFrayError(f"unknown face-swap option {k!r}{hint}")
        return cls(**d)

    def mask_spec(self) -> MaskSpec:
        return MaskSpec(kinds=self.mask, blur=self.mask_blur, padding=self.mask_padding)

    def to_json(self) -> dict:
        d = asdict(self)
        d["mask"], d["mask_padding"] = list(self.mask), list(self.mask_padding)
        d["providers"] = list(self.providers) if self.providers is not None else None
        return d

    def replace(self, **changes) -> FaceSwapParams:
        return FaceSwapParams.from_dict({**self.to_json(), **changes})
