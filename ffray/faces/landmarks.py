"""Dense (68-point) face landmarks for the offline swap: dlib's shape predictor on aligned crops.

The weights are ``shape_predictor_68_face_landmarks.dat`` from the PyPI package
``face_recognition_models`` (located with ``find_spec``, never imported: its ``__init__`` needs
``pkg_resources``); dlib itself comes from the ``dlib-bin`` wheel. The predictor (an ensemble of
regression trees, Kazemi & Sullivan 2014) runs on the 5-point aligned crop that the classic swapper
already samples, so faces are upright and of one size whatever the frame's roll or scale, and it
is given one fixed box in that crop: the box dlib's own HOG face detector finds there (calibrated
on t1.jpg and the astronaut, where it found (46, 64..81, 201, 219..236) in the 256 crop).

Point groups (iBUG 300-W order): jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, outer lips
48-59, inner lips 60-67.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from ffray.errors import FFrayError
from ffray.faces.align import Face, align_matrix, crop

SIZE = 256  # the aligned crop the predictor sees (the classic swapper's)
SCALE = 0.8
BOX = (46, 72, 201, 227)  # left, top, right, bottom in the SIZE crop (see the module docstring)
MODEL_FILE = "shape_predictor_68_face_landmarks.dat"
JAW, BROWS, NOSE = slice(0, 17), slice(17, 27), slice(27, 36)
EYES, OUTER_LIPS, INNER_LIPS = slice(36, 48), slice(48, 60), slice(60, 68)


def weights_path() -> Path:
    """The 68-point predictor file, or FFrayError saying what to install."""
    spec = importlib.util.find_spec("face_recognition_models")  # located, never imported
    if spec is None or not spec.submodule_search_locations:
        raise FFrayError("the dense landmark weights are missing: pip install face_recognition_models")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / MODEL_FILE
    if not path.is_file():
        raise FFrayError(f"the dense landmark weights are missing: {path} not found")
    return path


def unavailable() -> str | None:
    """Why the dense landmarks cannot run here (dlib or the weights missing), or None."""
    try:
        weights_path()
    except FFrayError as e:
        return str(e)
    if importlib.util.find_spec("dlib") is None:
        return "dlib is not installed: pip install dlib-bin"
    return None


def choose_warp(requested: str, missing: str | None) -> tuple[str, str]:
    """The classic swapper's warp for ``--classic-warp`` (auto, dense, 5point) given why the dense
    model is missing (None: it is there), and a note for the pipeline line."""
    if requested == "5point" or requested == "auto" and missing:
        note = "5-point warp" + (f"; dense landmarks unavailable: {missing}" if missing else "")
        return "5point", note
    if missing:
        raise FFrayError(f"--classic-warp dense: {missing}")
    return "dense", "dense 68-point warp"


class Landmarks68:
    """dlib's 68-point predictor on SIZE x SIZE aligned BGR crops; points in crop pixels."""

    name = "dlib68"

    def __init__(self, path: Path | None = None):
        try:
            import dlib
        except ImportError as e:
            raise FFrayError(f"dlib is not importable ({e}): pip install dlib-bin") from None
        self._predictor = dlib.shape_predictor(str(path or weights_path()))
        self._box = dlib.rectangle(*BOX)

    def predict(self, crops: list[np.ndarray]) -> np.ndarray:
        """(N, 68, 2) float32 landmarks of aligned crops (BGR uint8, SIZE x SIZE)."""
        out = np.empty((len(crops), 68, 2), np.float32)
        for i, c in enumerate(crops):
            if c.shape[:2] != (SIZE, SIZE):
                raise ValueError(f"landmark crops must be {SIZE}x{SIZE}, got {c.shape[:2]}")
            shape = self._predictor(np.ascontiguousarray(c[:, :, ::-1]), self._box)
            out[i] = [(p.x, p.y) for p in shape.parts()]
        return out

    def on_image(self, img: np.ndarray, face: Face) -> np.ndarray:
        """(68, 2) landmarks of ``face`` in ``img``'s pixels (through its aligned crop)."""
        m = align_matrix(face.kps, SIZE, SCALE)
        pts = self.predict([crop(img, m, SIZE)])[0]
        return to_frame(pts, m)


def to_frame(pts: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Crop points mapped back to frame pixels by the inverse of the frame->crop matrix ``m``."""
    inv = cv2.invertAffineTransform(np.asarray(m, np.float64))
    return (np.asarray(pts, np.float64) @ inv[:, :2].T + inv[:, 2]).astype(np.float32)
