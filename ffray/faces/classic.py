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

    def __init__(self, source_bgr: np.ndarray, source_face: Face, opts: BlendOptions = BlendOptions()):
        self.opts = opts
        self.source = crop(source_bgr, align_matrix(source_face.kps, SIZE, SCALE), SIZE)
        self.mask = face_mask(SIZE, SCALE, opts)

    def swap(self, frame: np.ndarray, face: Face) -> tuple[int, int, int, int]:
        """Swap ``face`` in ``frame`` (in place); returns the frame region that changed."""
        m = align_matrix(face.kps, SIZE, SCALE)
        target = crop(frame, m, SIZE)
        src = match_colour(self.source, target, self.mask)
        return paste_back(frame, src, m, self.mask, self.opts)
