"""The classic swapper's dense mode: the source face warped onto each target's 68-point mesh.

Per target face, in the 5-point aligned crop both faces share (``landmarks.SIZE``):
1. the target's 68 landmarks (``Landmarks68``, run by the swap stage on the crop it samples);
2. a piecewise-affine warp of the source crop onto them: one Delaunay triangulation of the
   source's points (fixed topology, computed once), each target pixel mapped through the affine
   map of the triangle it lies in, one ``cv2.remap`` for the whole crop; so the target's pose,
   face shape and expression (eyes, mouth, jaw) are kept, the source's texture moves onto them;
3. the face region: the convex hull of the target's points, jaw drawn in a little
   (``inner_mesh``, in both meshes), up to the brows (nothing above them, so the source's fringe
   or forehead never comes along), less the target's inner-lip
   polygon (an open mouth stays the target's own: teeth, tongue, darkness), eroded a little;
4. local colour transfer (``local_colour``: the target's skin tone and shading, the source's
   features), or with ``poisson`` blending seamless cloning (``cv2.seamlessClone``) of the warp
   into the target crop (OpenCV solves for the target's colours at the region's edge; at these
   sizes the result keeps visibly less of the source than the local transfer);
5. a feathered copy of the region is the paste-back mask (per face).

Pure functions and one class; no frames, no engine: the swap stage calls ``DenseSwapper.render``.
"""

from __future__ import annotations

import cv2
import numpy as np

from ffray.faces.align import Face, align_matrix, crop
from ffray.faces.landmarks import EYES, INNER_LIPS, JAW, SCALE, SIZE, Landmarks68

ERODE = 0.02  # face region shrunk by this share of the crop (keeps the seam on skin)
JAW_IN = 0.12  # jaw line drawn in by this share towards the nose in both meshes: the source's face
# edge often shows hair or background (the astronaut's hair covers her temples)
NOSE_TIP = 30
FEATHER = 0.03  # paste mask feather (Gaussian sigma) as a share of the crop
COLOUR_SIGMA = 0.6  # local colour transfer blur (Gaussian sigma) in eye distances


def triangulate(points: np.ndarray) -> np.ndarray:
    """(T, 3) vertex indices of a Delaunay triangulation of ``points`` (N, 2)."""
    from scipy.spatial import Delaunay  # ~0.4 s to import: only the dense warp needs it

    return Delaunay(np.asarray(points, np.float64)).simplices.astype(np.int32)


def _signed_area(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    a, b, c = p[tri[:, 0]], p[tri[:, 1]], p[tri[:, 2]]
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


def mesh_maps(src_pts: np.ndarray, dst_pts: np.ndarray, tri: np.ndarray,
              size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Piecewise-affine ``cv2.remap`` maps taking each pixel of a ``size`` crop inside the mesh
    ``dst_pts`` to its place in the mesh ``src_pts`` (same triangles ``tri``); and the covered
    pixels (uint8 0/255). Triangles folded over in the target (a turned face folds the far
    cheek's) are drawn first, so unfolded ones win where they overlap; pixels left to a folded
    one are not covered (they would show the source mirrored, often past its face's edge)."""
    src = np.asarray(src_pts, np.float64)
    dst = np.asarray(dst_pts, np.float64)
    ids = np.full((size, size), -1, np.int32)
    area = _signed_area(dst, tri)
    flipped = np.sign(_signed_area(src, tri)) != np.sign(area)
    solid = np.abs(area) > 1e-6  # a degenerate target triangle (a closed mouth's) covers nothing
    # every triangle's affine map target -> source at once: [x y 1] @ X = source point
    d1 = np.concatenate([dst[tri], np.ones((len(tri), 3, 1))], axis=2)
    d1[~solid] = np.eye(3)
    affine = np.linalg.solve(d1, src[tri]).transpose(0, 2, 1)  # (T, 2, 3)
    for k in np.concatenate([np.flatnonzero(flipped & solid), np.flatnonzero(~flipped & solid)]):
        cv2.fillConvexPoly(ids, np.round(dst[tri[k]] * 16).astype(np.int32), int(k),
                           lineType=cv2.LINE_8, shift=4)
    covered = ((ids >= 0) & ~flipped[np.maximum(ids, 0)]).astype(np.uint8) * 255
    map_x = np.full((size, size), -1.0, np.float32)  # outside the mesh: off the source (unused)
    map_y = np.full((size, size), -1.0, np.float32)
    if not covered.any():
        return map_x, map_y, covered
    x0, y0, w, h = cv2.boundingRect(covered)  # the maps only where the mesh is
    ys, xs = np.mgrid[y0:y0 + h, x0:x0 + w].astype(np.float32)
    a = affine.astype(np.float32)[np.maximum(ids[y0:y0 + h, x0:x0 + w], 0)]
    map_x[y0:y0 + h, x0:x0 + w] = a[..., 0, 0] * xs + a[..., 0, 1] * ys + a[..., 0, 2]
    map_y[y0:y0 + h, x0:x0 + w] = a[..., 1, 0] * xs + a[..., 1, 1] * ys + a[..., 1, 2]
    return map_x, map_y, covered


def inner_mesh(pts: np.ndarray, jaw: float = JAW_IN) -> np.ndarray:
    """The 68 points with the jaw line drawn ``jaw`` of the way in towards the nose tip: the mesh
    both faces are warped by, so the target's cheeks take the source's cheeks, not what lies at
    the source's face edge (hair over the temples, background)."""
    pts = np.asarray(pts, np.float64).copy()
    pts[JAW] += (pts[NOSE_TIP] - pts[JAW]) * jaw
    return pts


def face_region(pts: np.ndarray, size: int, erode: float = ERODE) -> np.ndarray:
    """uint8 0/255: the convex hull of the points less the inner-lip polygon, eroded by
    ``erode`` x size pixels and kept 2 px off the crop's border."""
    pts = np.asarray(pts, np.float64)
    m = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(m, cv2.convexHull(np.round(pts * 16).astype(np.int32)), 255,
                       lineType=cv2.LINE_8, shift=4)
    cv2.fillPoly(m, [np.round(pts[INNER_LIPS] * 16).astype(np.int32)], 0, lineType=cv2.LINE_8, shift=4)
    k = int(round(erode * size)) * 2 + 1
    if k > 1:
        m = cv2.erode(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    m[:2], m[-2:], m[:, :2], m[:, -2:] = 0, 0, 0, 0
    return m


def feathered(region: np.ndarray, feather: float = FEATHER) -> np.ndarray:
    """float32 [0, 1] paste mask: the region eroded by one sigma then blurred (so alpha reaches 1
    inside the region and 0 just outside it)."""
    size = region.shape[0]
    sigma = max(0.5, feather * size)
    k = int(round(sigma)) * 2 + 1
    inner = cv2.erode(region, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    return cv2.GaussianBlur(inner.astype(np.float32) / 255.0, (0, 0), sigma)


def local_colour(face: np.ndarray, target: np.ndarray, region: np.ndarray,
                 sigma: float) -> np.ndarray:
    """Local colour transfer (as in Matthew Earl's 68-point faceswap): each pixel of ``face``
    scaled by the ratio of the target's to the face's Gaussian-blurred colour, blurs normalised
    over ``region`` (so the background never bleeds in). Low frequencies (skin tone, lighting,
    shading) become the target's; the features (eyes, brows, nose, lips) stay the source's."""
    size = region.shape[0]
    k = max(1, int(sigma // 4))  # a blur this wide loses nothing at 1/k of the size: k x faster
    small = (size // k, size // k)

    def down(x: np.ndarray) -> np.ndarray:
        return cv2.resize(x, small, interpolation=cv2.INTER_AREA)

    m = down((region > 0).astype(np.float32))
    den = np.maximum(cv2.GaussianBlur(m, (0, 0), sigma / k), 1e-3)[..., None]

    def blur(x: np.ndarray) -> np.ndarray:
        b = cv2.GaussianBlur(down(x) * m[..., None], (0, 0), sigma / k) / den
        return cv2.resize(b, (size, size), interpolation=cv2.INTER_LINEAR)

    f, t = face.astype(np.float32), target.astype(np.float32)
    return np.clip(f * (blur(t) + 1.0) / (blur(f) + 1.0) + 0.5, 0, 255).astype(np.uint8)


def seamless(face: np.ndarray, target: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``face`` Poisson-cloned into ``target`` over ``region`` (OpenCV NORMAL_CLONE); the target
    where the region is too small to clone."""
    ys, xs = np.nonzero(region)
    if len(xs) < 16:
        return target.copy()
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    center = (int((x0 + x1 + 1) // 2), int((y0 + y1 + 1) // 2))
    # a copy: OpenCV's seamlessClone writes into its mask argument
    return cv2.seamlessClone(face, target, region.copy(), center, cv2.NORMAL_CLONE)


class DenseSwapper:
    """The source face (one image) ready to be warped onto target meshes. Same aligned crop as the
    5-point ``ClassicSwapper`` (``matrix``), so the engine samples and pastes it the same way."""

    name = "classic"
    size = SIZE
    dense = True

    def __init__(self, source_bgr: np.ndarray, source_face: Face, landmarks: Landmarks68,
                 poisson: bool = False):
        self.landmarks, self.poisson = landmarks, poisson
        self.source = crop(source_bgr, align_matrix(source_face.kps, SIZE, SCALE), SIZE)
        self.points = landmarks.predict([self.source])[0]
        self.mesh = inner_mesh(self.points)
        self.tri = triangulate(self.mesh)

    @staticmethod
    def matrix(face: Face) -> np.ndarray:
        """Frame -> aligned crop matrix of a target face."""
        return align_matrix(face.kps, SIZE, SCALE)

    def render(self, target_crop: np.ndarray, target_pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The swapped crop (BGR uint8: the target crop with the source face in its region) and
        its paste mask (float32 [0, 1])."""
        mesh = inner_mesh(target_pts)
        map_x, map_y, covered = mesh_maps(self.mesh, mesh, self.tri, SIZE)
        warped = cv2.remap(self.source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        region = face_region(mesh, SIZE) & covered
        if self.poisson:
            out = seamless(warped, target_crop, region)
        else:
            eyes = np.linalg.norm(target_pts[EYES][:6].mean(0) - target_pts[EYES][6:].mean(0))
            out = local_colour(warped, target_crop, region, max(1.0, COLOUR_SIGMA * eyes))
            out = np.where(region[..., None] > 0, out, target_crop)
        return out, feathered(region)
