"""Phone videos stored turned: detection runs on the upright (display) view, faces are mapped back
to stored coordinates, and the output keeps the stored orientation and rotation metadata."""

from __future__ import annotations

import numpy as np
import pytest

from ffray.engine.frames import rotate_upright, upright
from ffray.video.probe import probe
from ffray.video.sample import faces_image, pan_zoom_frames, write_video
from tests.media import frames, swap


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_upright_view_and_its_map_back_agree(rotation):
    img = np.arange(7 * 4 * 3).reshape(4, 7, 3)
    uw, uh, a = upright(rotation, 7, 4)
    up = rotate_upright(img, rotation)
    assert up.shape[:2] == (uh, uw)
    for v in range(uh):
        for u in range(uw):
            x, y = np.rint(a @ [u, v, 1]).astype(int)
            assert np.array_equal(up[v, u], img[y, x])


@pytest.fixture(scope="module")
def turned(tmp_path_factory):
    """The six faces of t1.jpg, upright on screen, stored a quarter turn clockwise with a display
    rotation of 90 (counterclockwise) as phones write them; and the same pixels without it."""
    d = tmp_path_factory.mktemp("rot")
    shown = list(pan_zoom_frames(faces_image(), 12, 640, 360))
    stored = [np.ascontiguousarray(np.rot90(f, k=-1)) for f in shown]
    with_meta = write_video(d / "phone.mp4", iter(stored), fps=12, gop=6, rotation=90)
    without = write_video(d / "sideways.mp4", iter(stored), fps=12, gop=6)
    return with_meta, without


def test_faces_in_a_rotated_video_are_found_upright_and_swapped(cluster, media, data_dir, tmp_path, turned):
    phone, sideways = turned
    assert probe(phone)[0].video.rotation == 90
    out = tmp_path / "out.mp4"
    found = {}
    for name, src in (("phone", phone), ("sideways", sideways)):
        ledger, res = swap(src, tmp_path / f"{name}.mp4", data_dir / name, processor="faceswap",
                           sources=[str(media.face)], actors=1, gpu_per_actor=1, chunk_seconds=0.5,
                           params={"detector": "mtcnn", "swapper": "classic"})
        per = [n for s in ledger.chunk_stats() for n in s["stages"]["per_frame"]["faces_detected"]]
        found[name] = per
    out = tmp_path / "phone.mp4"
    assert min(found["phone"]) >= 4  # the six real faces, seen upright
    assert sum(found["sideways"]) < sum(found["phone"]) / 3  # lying on their side, MTCNN misses them
    info = probe(out)[0].video
    assert info.rotation == 90 and (info.width, info.height) == (360, 640)  # stored as it came
    a, b = frames(phone), frames(out)
    assert len(a) == len(b) == 12
    diff = np.abs(a[5][1].astype(int) - b[5][1]).mean(axis=2) > 25
    assert 0.005 < diff.mean() < 0.3  # faces changed, the rest of the frame did not
