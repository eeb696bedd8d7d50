"""Paste-back masks: coverage from geometry, against insightface's own paste-back (run as the
oracle), composition by minimum, padding per side, and a per-face occluder through the stages."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ffray.errors import FFrayError
from ffray.faces.align import insightface_template
from ffray.faces.masks import MaskSpec, box_mask, coverage, ellipse_mask, parse_padding, static_mask
from scripts.mask_coverage import insightface_coverage

S = 128


def _margin(blur: float, size: int = S) -> int:
    """FaceFusion's zeroed border for a blur (half the blur width, at least one pixel)."""
    return max(int(size * 0.5 * blur) // 2, 1)


@pytest.mark.parametrize("blur", [0.0, 0.15, 0.3, 0.5])
def test_box_mask_keeps_the_crop_less_its_blur_margins(blur):
    side = S - 2 * _margin(blur)
    # the Gaussian is symmetric about the zeroed edge: alpha > 0.5 inside, <= 0.5 outside
    assert coverage(box_mask(S, blur)) == pytest.approx((side / S) ** 2, abs=2.5 * side / S ** 2)


def test_padding_moves_each_side_by_its_percentage():
    m = box_mask(S, 0.15, (10, 0, 25, 5)) > 0.5
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    assert abs(rows[0] - int(S * 0.10)) <= 1 and abs((S - 1 - rows[-1]) - int(S * 0.25)) <= 1
    assert abs(cols[0] - int(S * 0.05)) <= 1 and abs((S - 1 - cols[-1]) - _margin(0.15)) <= 1
    assert parse_padding("10,0,25,5") == (10, 0, 25, 5) and parse_padding("3") == (3, 3, 3, 3)
    with pytest.raises(FFrayError):
        parse_padding("1,2")
    with pytest.raises(FFrayError):
        MaskSpec(kinds=("hull",))


def test_default_inswapper_mask_covers_at_least_what_insightface_pastes():
    ours = coverage(static_mask(MaskSpec(), S, insightface_template(S)))
    theirs = [insightface_coverage(a) for a in (0.0, 0.3)]
    assert all(0.7 < t < 0.9 for t in theirs)  # the oracle measured what it should
    assert ours >= max(theirs)
    assert coverage(box_mask(S, 0.3)) == pytest.approx(0.72, abs=0.02)  # FaceFusion's default blur
    old = ellipse_mask(S, insightface_template(S), 0.12)  # the former default: a quarter
    assert coverage(old) < 0.35


def test_masks_combine_by_minimum():
    pts = insightface_template(S)
    both = static_mask(MaskSpec(kinds=("box", "ellipse")), S, pts)
    assert np.array_equal(both, np.minimum(box_mask(S, 0.15), ellipse_mask(S, pts, 0.15)))
    assert coverage(both) <= min(coverage(box_mask(S, 0.15)), coverage(ellipse_mask(S, pts, 0.15)))


class LowerHalfCovered:
    """A test occluder: the lower half of every crop is 'occluded' (say, a hand)."""

    def __call__(self, crops):
        out = np.ones((len(crops),) + crops[0].shape[:2], np.float32)
        out[:, out.shape[1] // 2:, :] = 0.0
        return out


def test_an_occluder_keeps_its_part_of_the_face_untouched(tmp_path):
    from ffray.engine.api import BatchInfo, WorkerContext
    from ffray.faces.pipeline import FaceSwap
    from ffray.models.manifest import MODELS
    from scripts.make_test_models import write_all

    write_all(tmp_path)
    models = {n: (tmp_path / MODELS[n].file).read_bytes() for n in ("det_10g", "w600k_r50", "inswapper_128")}
    src = np.zeros((200, 200, 3), np.uint8)
    src[68:132, 68:132] = (0, 255, 255)
    frame = np.full((240, 320, 3), 20, np.uint8)
    frame[96:104, 152:160] = (255, 255, 255)  # one stride-8 cell: one face at (152, 96)
    outs = {}
    for occ in (None, "tests.test_masks:LowerHalfCovered"):
        proc = FaceSwap(WorkerContext(sources=(cv2.imencode(".png", src)[1].tobytes(),), models=models),
                        detector="scrfd", swapper="inswapper", select="one", mask_occluder=occ)
        outs[occ] = proc.process([frame], BatchInfo(0, (0,), (0,)))[0]
    plain, occluded_ = outs[None], outs["tests.test_masks:LowerHalfCovered"]
    changed = np.any(plain != frame, axis=2)
    ys = np.flatnonzero(changed.any(axis=1))
    mid = (ys[0] + ys[-1]) // 2
    still = np.any(occluded_ != frame, axis=2)
    assert changed[:mid].any() and still[:mid].sum() > 0.5 * changed[:mid].sum()
    assert still[mid + 8:].sum() < 0.1 * changed[mid + 8:].sum()  # the covered half stayed as it was
