"""The frame backend on the host: packed YUV frames, crops, detector input and paste-back, against
the BGR reference functions (``ffray.faces``) on a real photo. The GPU backend has the same checks
in ``scripts/gpu_selftest.py`` (run on the device machine, recorded in docs/benchmarks.md)."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from ffray.engine.colour import Matrix
from ffray.engine.frames import Frame, layout_for, pack, planes, unpack
from ffray.engine.ops_cpu import CpuOps
from ffray.faces.align import crop, insightface_template, similarity
from ffray.faces.blend import face_mask, paste_back
from ffray.faces.scrfd import SCRFD
from ffray.video.probe import Color
from ffray.video.sample import faces_image


def _frame(bgr: np.ndarray, fmt: str = "yuv420p") -> av.VideoFrame:
    vf = av.VideoFrame.from_ndarray(bgr, format="bgr24")
    return vf.reformat(format=fmt, src_colorspace=1, dst_colorspace=1, dst_color_range=1)


def _bgr(vf: av.VideoFrame) -> np.ndarray:
    return vf.reformat(format="bgr24", src_colorspace=1, dst_colorspace=1, src_color_range=1,
                       dst_color_range=2, interpolation=av.video.reformatter.Interpolation.BICUBIC
                       ).to_ndarray()


@pytest.fixture(scope="module")
def photo():
    return cv2.resize(faces_image(), (1280, 720), interpolation=cv2.INTER_AREA)


def _host_frame(photo):
    """The photo as a decoded yuv420p frame, uploaded to the host backend: (ops, frame, decoded)."""
    vf = _frame(photo)
    h, w = photo.shape[:2]
    ops = CpuOps(layout_for("yuv420p", w, h), Matrix.of(Color(1, 1, 1, 1), h))
    f = Frame(decoded=vf)
    ops.upload([f])
    return ops, f, vf


def _faces(n, w, h, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        cx, cy, s = rng.uniform(200, w - 200), rng.uniform(150, h - 150), rng.uniform(40, 90)
        out.append(((insightface_template(112) - 56) / 40 * s + [cx, cy]).astype(np.float32))
    return out


@pytest.mark.parametrize("fmt, size", [("yuv420p", (641, 361)), ("yuv422p", (320, 240)),
                                       ("yuv444p", (96, 64)), ("yuvj420p", (64, 48))])
def test_packed_planes_round_trip_exactly(fmt, size):
    rng = np.random.default_rng(1)
    w, h = size
    vf = av.VideoFrame(w, h, fmt)
    for p in vf.planes:
        np.frombuffer(p, np.uint8)[:] = rng.integers(0, 256, p.buffer_size, dtype=np.uint8)
    lay = layout_for(fmt, w, h)
    buf = unpack(vf, lay)
    assert buf.size == lay.nbytes
    back = pack(buf, lay)
    for a, b, (ph, pw) in zip(vf.planes, back.planes, [(p.shape) for p in planes(buf, lay)]):
        ra = np.frombuffer(a, np.uint8).reshape(-1, a.line_size)[:ph, :pw]
        rb = np.frombuffer(b, np.uint8).reshape(-1, b.line_size)[:ph, :pw]
        assert np.array_equal(ra, rb)


def test_sources_outside_the_working_formats_are_converted_to_the_nearest():
    assert layout_for("yuv420p10le", 64, 48).pix_fmt == "yuv420p"
    assert layout_for("yuv444p10le", 64, 48).pix_fmt == "yuv444p"
    assert layout_for("rgb24", 64, 48).pix_fmt == "yuv444p"
    assert layout_for("nv12", 64, 48).pix_fmt == "yuv420p"


def test_crops_match_the_bgr_reference(photo):
    ops, f, vf = _host_frame(photo)
    ref_img = _bgr(vf)
    kps = _faces(6, 1280, 720)
    mats = [similarity(k, insightface_template(128)) for k in kps]
    got = ops.crops_bgr([f] * 6, mats, 128)
    for g, m in zip(got, mats):
        want = crop(ref_img, m, 128)
        d = np.abs(g.astype(int) - want.astype(int))
        assert d.mean() < 1.5 and np.quantile(d, 0.99) <= 8


def test_detector_input_matches_scrfds_own_preparation(photo):
    ops, f, vf = _host_frame(photo)
    blob, backs = ops.det_blob([f], (640, 640))

    class Fake:
        def get_inputs(self):
            class Input:
                name, shape = "input.1", [1, 3, "H", "W"]
            return [Input()]

        def get_outputs(self):
            return []
    ref, scale = SCRFD(Fake())._prepare(_bgr(vf))
    np.testing.assert_allclose(backs[0], [[1 / scale, 0, 0], [0, 1 / scale, 0]])
    d = np.abs(blob - ref) * 128
    assert d.mean() < 1.0 and np.quantile(d, 0.999) <= 6
    assert np.all(blob[0, :, 360:, :] == ref[0, :, 360:, :])  # the padding, exactly


def test_paste_back_in_yuv_leaves_every_unmasked_pixel_as_decoded(photo):
    ops, f, vf = _host_frame(photo)
    lay = ops.lay
    before = f.host.copy()
    kps = _faces(3, 1280, 720, seed=3)
    mats = [similarity(k, insightface_template(128)) for k in kps]
    rng = np.random.default_rng(2)
    crops = np.clip(cv2.resize(rng.uniform(0, 1, (8, 8, 9)).astype(np.float32), (128, 128)), 0, 1)
    crops = np.ascontiguousarray(crops.transpose(2, 0, 1).reshape(3, 3, 128, 128), np.float32)
    mask = face_mask(128, pts=insightface_template(128))
    ops.paste([f] * 3, crops, mats, mask, 255.0, 0.0)
    assert f.dirty
    # the region any mask could touch, from the BGR reference
    ref = _bgr(vf).copy()
    touched = np.zeros(ref.shape[:2], bool)
    for c, m in zip(crops, mats):
        face = np.clip(c.transpose(1, 2, 0)[:, :, ::-1] * 255 + 0.5, 0, 255).astype(np.uint8)
        paste_back(ref, face, m, mask)
        alpha = cv2.warpAffine(mask, cv2.invertAffineTransform(m), (1280, 720))
        touched |= alpha > 0
    y0, _, _ = planes(before, lay)
    y1, u1, v1 = planes(f.host, lay)
    assert np.array_equal(y1[~touched], y0[~touched])  # untouched luma: bit for bit
    blocks = ~touched.reshape(360, 2, 640, 2).any(axis=(1, 3))
    assert np.array_equal(u1[blocks], planes(before, lay)[1][blocks])  # and chroma
    assert (y1 != y0).mean() > 0.01
    # where faces went in, the YUV paste agrees with the BGR paste-back (same blend, other space)
    got = _bgr(pack(f.host, lay))
    d = np.abs(got.astype(int) - ref.astype(int))[touched]
    assert d.mean() < 3.0


def _gpu_or_skip(photo):
    """(GpuOps, the photo as a decoded frame, its layout, matrix); skips without a usable GPU."""
    from ffray.engine.ops_gpu import available

    why = available(0)
    if why:
        pytest.skip(f"no usable CUDA device here ({why})")
    from ffray.engine.ops_gpu import GpuOps

    return GpuOps, _frame(photo), layout_for("yuv420p", 1280, 720), Matrix.of(Color(1, 1, 1, 1), 720)


def test_gpu_backend_agrees_with_the_host_one_when_a_gpu_is_here(photo):
    GpuOps, vf, lay, mat = _gpu_or_skip(photo)
    cpu, gpu = CpuOps(lay, mat), GpuOps(lay, mat, 0)
    fc, fg = Frame(decoded=vf), Frame(decoded=vf)
    cpu.upload([fc])
    gpu.upload([fg])
    a, _ = cpu.det_blob([fc], (640, 640))
    b, _ = gpu.det_blob([fg], (640, 640))
    assert np.abs(a - gpu.host(b)).max() * 128 <= 3


def test_poisson_paste_clones_the_face_in_and_still_leaves_unmasked_pixels_alone(photo):
    ops, f, vf = _host_frame(photo)
    g = Frame(decoded=vf)
    ops.upload([g])
    before = f.host.copy()
    m = similarity(_faces(1, 1280, 720, seed=5)[0], insightface_template(128))
    crop_ = np.full((1, 3, 128, 128), 0.9, np.float32)  # a flat bright face: cloning adapts it
    mask = face_mask(128, pts=insightface_template(128))
    ops.paste([f], crop_, [m], mask, 255.0, 0.0)
    ops.paste([g], crop_, [m], mask, 255.0, 0.0, poisson=True)
    alpha = cv2.warpAffine(mask, cv2.invertAffineTransform(m), (1280, 720)) > 0
    y0, yf, yp = (planes(b, ops.lay)[0] for b in (before, f.host, g.host))
    assert np.array_equal(yp[~alpha], y0[~alpha])
    inside = cv2.warpAffine(mask, cv2.invertAffineTransform(m), (1280, 720)) > 0.9
    # seamless cloning carries the photo's shading into the face: it differs from the flat paste
    assert np.abs(yp[inside].astype(int) - yf[inside]).mean() > 5
    assert yp[inside].std() > yf[inside].std()


@pytest.mark.parametrize("fmt,size", [("yuv420p", (64, 37)), ("yuv422p", (50, 20)),
                                      ("yuv444p", (33, 17)), ("yuv420p", (1920, 1080))])
def test_band_spans_bring_back_every_pixel_a_paste_box_writes(fmt, size):
    """A device frame changed as the paste kernel changes it (luma rows ``c0*sy..c1*sy``, chroma
    rows ``c0..c1`` of each box, clipped) equals its host copy once ``band_spans``' ranges alone
    are copied back; overlapping and touching bands merge, and small bands copy a small part."""
    from ffray.engine.frames import band_spans

    w, h = size
    lay = layout_for(fmt, w, h)
    rng = np.random.default_rng(w)
    for trial in range(40):
        host = rng.integers(0, 256, lay.nbytes, dtype=np.uint8)
        dev = host.copy()
        bands = []
        for _ in range(int(rng.integers(0, 5))):
            c0 = int(rng.integers(0, lay.ch))
            c1 = int(min(lay.ch, c0 + rng.integers(1, max(2, lay.ch // 3))))
            x0 = int(rng.integers(0, lay.cw))
            x1 = int(min(lay.cw, x0 + rng.integers(1, lay.cw + 1)))
            bands.append((c0, c1))
            y, u, v = planes(dev, lay)
            y[c0 * lay.sy:min(h, c1 * lay.sy), x0 * lay.sx:min(w, x1 * lay.sx)] ^= 0x5A
            u[c0:c1, x0:x1] ^= 0x33
            v[c0:c1, x0:x1] ^= 0x66
        spans = band_spans(lay, bands)
        assert all(a < b for a, b in spans) and all(b < a for (_, b), (a, _) in zip(spans, spans[1:]))
        for a, b in spans:
            host[a:b] = dev[a:b]
        assert np.array_equal(host, dev), (fmt, size, trial, bands, spans)
    assert band_spans(lay, []) == [] and band_spans(lay, [(3, 3)]) == []
    assert band_spans(lay, [(0, lay.ch)]) == [(0, lay.nbytes)]  # everything: one range
    assert len(band_spans(lay, [(0, 2), (2, 4), (1, 3)])) == 3  # one band in each plane
    if lay.ch > 40:
        assert sum(b - a for a, b in band_spans(lay, [(10, 30)])) < lay.nbytes // 10


def test_partial_download_gives_the_full_downloads_bytes_when_a_gpu_is_here(photo, monkeypatch):
    """FFRAY_PARTIAL_DOWNLOAD=1: after pastes of two faces, copying back only the pasted rows
    leaves the host frame byte for byte as a whole-frame download does."""
    GpuOps, vf, lay, mat = _gpu_or_skip(photo)
    got = []
    for partial in ("0", "1"):
        monkeypatch.setenv("FFRAY_PARTIAL_DOWNLOAD", partial)
        ops = GpuOps(lay, mat, 0)
        f = Frame(host=unpack(vf, lay))
        ops.upload([f])
        mats = [similarity(p, insightface_template(128)) for p in _faces(2, 1280, 720, seed=3)]
        crops = np.full((2, 3, 128, 128), 0.8, np.float32)
        ops.paste([f, f], crops, mats, face_mask(128, pts=insightface_template(128)), 255.0, 0.0)
        assert partial == "0" or 0 < len(f.bands) <= 2
        ops.download([f])
        got.append(f.host.copy())
    assert np.array_equal(got[0], got[1]) and not np.array_equal(got[0], unpack(vf, lay))


def test_kernel_argument_struct_has_the_c_layout():
    """The per-launch arguments go to the GPU kernels by value as ``struct Items``: the host's
    structured dtype must have C's layout (sizes, offsets, padding), here as ctypes lays it out
    (on the GPU the kernel module checks it again at start)."""
    import ctypes

    from ffray.engine.kernels import ITEMS, MAX_ITEMS, SOURCE

    class Items(ctypes.Structure):
        _fields_ = [("frames", ctypes.c_uint64 * MAX_ITEMS), ("m", ctypes.c_float * (MAX_ITEMS * 6)),
                    ("box", ctypes.c_int32 * (MAX_ITEMS * 4)), ("sel", ctypes.c_int64 * MAX_ITEMS),
                    ("has_box", ctypes.c_int32)]

    assert f"#define MAX_ITEMS {MAX_ITEMS}" in SOURCE
    assert ITEMS.itemsize == ctypes.sizeof(Items)
    for name, _ in Items._fields_:
        assert ITEMS.fields[name][1] == getattr(Items, name).offset, name
