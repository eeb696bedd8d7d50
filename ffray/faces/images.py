"""Still images: decoding the source/reference/map photos and finding their main face."""

from __future__ import annotations

import cv2
import numpy as np

from ffray.errors import FFrayError
from ffray.faces.align import Face
from ffray.faces.select import order_faces


def decode_image(data: bytes, what: str) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise FFrayError(f"{what} is not a readable image")
    return img


def largest_face(detector, img: np.ndarray, what: str) -> Face:
    faces = detector.detect([img])[0]
    if not faces:
        raise FFrayError(f"no face found in {what}")
    return order_faces(faces, "largest")[0]
