"""The ``classic`` swapper: no learned weights. The source face, aligned by its 5 points, is
warped onto each target face by a similarity transform, colour-matched to the target's skin (Lab
mean/std inside the face mask) and blended with a feathered or Poisson mask."""

from __future__ import annotations

import numpy as np

from ffray.faces.align import Face, align_matrix, crop
from ffray.faces.blend import BlendOptions, face_mask, match_colour, paste_back

SIZE = 256
SCALE = 0.8  # the crop shows a little more than the ArcFace template's tight face


class ClassicSwapper:
    name = "classic"
    size = SIZE

    def __init__(self, source_bgr: np.ndarray, source_face: Face, opts: BlendOptions = BlendOptions()):
        self.opts = opts
        self.source = crop(source_bgr, align_matrix(source_face.kps, SIZE, SCALE), SIZE)
        self.mask = face_mask(SIZE, SCALE, opts)

    @staticmethod
    def matrix(face: Face) -> np.ndarray:
        """Frame -> aligned crop matrix of a target face."""
        return align_matrix(face.kps, SIZE, SCALE)

    def render(self, target_crop: np.ndarray) -> np.ndarray:
        """The source face colour-matched to a target's aligned crop (BGR uint8, SIZE x SIZE)."""
        return match_colour(self.source, target_crop, self.mask)

    def swap(self, frame: np.ndarray, face: Face) -> tuple[int, int, int, int]:
        """Swap ``face`` in a BGR ``frame`` (in place); returns the frame region that changed."""
        m = self.matrix(face)
        return paste_back(frame, self.render(crop(frame, m, SIZE)), m, self.mask, self.opts)
