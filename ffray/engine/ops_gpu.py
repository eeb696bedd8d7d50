"""Frame operations on the GPU (CuPy): the GPU backend of the face stages.

Same contract as ``ops_cpu.CpuOps``. Frames go up once as packed YUV (1.5 bytes a pixel for
4:2:0, through pinned memory), every crop, detector input and paste-back is a kernel on the
device (``ffray.engine.kernels``), and model inputs/outputs stay there (the runners bind them
to ONNX Runtime by pointer); a frame comes back down only if a face was pasted into it.

Each calling thread has its own CUDA stream (``ffray.models.streams``); an operation whose result
leaves the thread ends with its stream synchronised, so the next stage (another thread, another
stream, or ONNX Runtime's stream) sees finished data. Model inputs (crops, detector input) are
left unsynchronised: the runner that consumes them on the same thread synchronises first.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import numpy as np

from ffray.engine import anchors
from ffray.engine.colour import Matrix
from ffray.engine.frames import Frame, Layout, back_matrix, band_spans, compose, unpack, upright
from ffray.engine.kernels import ITEMS, MAX_ITEMS, SOURCE
from ffray.engine.ops_cpu import fit, roi
from ffray.models.streams import thread_stream

_BLOCK = 256


class GpuOps:
    name = "gpu"

    def __init__(self, lay: Layout, mat: Matrix, ordinal: int, space: int = 1, rng: int = 1,
                 rotation: int = 0):
        import cupy as cp

        if mat.rgb:
            raise ValueError("the GPU backend works on YUV frames")
        self.cp, self.lay, self.mat, self.ordinal = cp, lay, mat, ordinal
        self._space, self._rng = space, rng
        # experiment switch: bring back only the rows the pastes changed (not measured yet)
        self._partial = os.environ.get("FFRAY_PARTIAL_DOWNLOAD") == "1"
        self.device = cp.cuda.Device(ordinal)
        with self.device:
            mod = cp.RawModule(code=SOURCE + anchors.KERNEL, options=("--std=c++14",))
            self._anchor_hits = mod.get_function("anchor_hits")
            _check_layout(cp, mod.get_function("items_layout"))
            self._warp_norm = mod.get_function("warp_norm")
            self._warp_u8 = mod.get_function("warp_u8")
            self._paste = mod.get_function("paste")
            self._nv12 = mod.get_function("nv12_unpack")
            self._dec = cp.asarray(np.array(mat.decode_coeffs(), np.float32))
            self._enc = cp.asarray(np.array(mat.encode_coeffs(), np.float32))
            self.device.synchronize()  # made on the default stream: done before any stage uses them
        self._local = threading.local()
        self.rotation = int(rotation) % 360
        self.up_w, self.up_h, self.to_stored = upright(self.rotation, lay.width, lay.height)
        self._dims = (np.int32(lay.width), np.int32(lay.height), np.int32(lay.cw), np.int32(lay.ch),
                      np.int32(lay.sx), np.int32(lay.sy))

    # --- per-thread stream and pinned staging buffer
    def _stream(self):
        return thread_stream(self.cp, self.ordinal)

    def _pinned(self, n: int) -> np.ndarray:
        buf = getattr(self._local, "pinned", None)
        if buf is None or buf.size < n:
            mem = self.cp.cuda.alloc_pinned_memory(n)
            buf = np.frombuffer(mem, np.uint8, n)
            self._local.pinned_mem = mem
            self._local.pinned = buf
        return buf[:n]

    @staticmethod
    def _items(frames: list[Frame], mats, box=None, sel=None) -> np.ndarray:
        """A launch's per-item arguments, passed by value (``kernels.ITEMS``, at most
        ``MAX_ITEMS``)."""
        n = len(frames)
        a = np.zeros(1, ITEMS)
        a["frames"][0, :n] = [f.device.data.ptr for f in frames]
        a["m"][0, :6 * n] = np.asarray(mats, np.float32).reshape(-1)
        if box is not None:
            a["box"][0, :box.size] = np.asarray(box, np.int32).reshape(-1)
            a["has_box"] = 1
        if sel is not None:
            a["sel"][0, :n] = sel
        return a

    def pin(self, buf) -> Callable[[], None]:
        """Page-lock a host buffer (a codec process's frame ring) so frames go up and down by DMA
        straight from and to it; returns the call that unlocks it (before the buffer goes)."""
        cp = self.cp
        arr = np.frombuffer(buf, np.uint8)
        ptr, size = arr.ctypes.data, arr.size
        del arr  # no export of ``buf`` stays: it can be closed once unlocked
        with self.device:
            cp.cuda.runtime.hostRegister(ptr, size, 0)

        def unpin() -> None:
            with self.device:
                cp.cuda.runtime.hostUnregister(ptr)
        return unpin

    # --- frames in and out
    def upload(self, frames: list[Frame]) -> None:
        cp, nb = self.cp, self.lay.nbytes
        todo = [f for f in frames if f.device is None]
        if not todo:
            return
        staged = [f for f in todo if not (f.pinned and f.host is not None)]
        stage = self._pinned(nb * len(staged)) if staged else None
        s = self._stream()
        with self.device, s:
            k = 0
            for f in todo:
                f.device = cp.empty(nb, cp.uint8)
                # device == host from here: pastes record the rows they change (the switch on)
                f.bands = [] if self._partial and f.host is not None else None
                if f.pinned and f.host is not None:  # a registered ring slot: DMA from it
                    f.device.set(f.host, stream=s)
                    continue
                view = stage[k * nb:(k + 1) * nb]
                k += 1
                if f.host is not None:
                    view[...] = f.host
                else:
                    unpack(f.decoded, self.lay, out=view, space=self._space, rng=self._rng)
                f.device.set(view, stream=s)
            s.synchronize()
        for f in todo:
            f.host_current = f.host is not None and not f.dirty

    def decoder_ready(self) -> None:
        """Make this device's (primary) context current on the calling thread, for a decoder
        that works in the thread's current context (``decoder_context(on_device=True)``)."""
        self._stream()  # created inside the device's context
        self.device.use()

    def from_cuda_frame(self, frame) -> object:
        """A decoded CUDA frame (NVDEC, NV12 in FFmpeg's frame pool) copied into a packed
        yuv420p device buffer on this thread's stream (one launch: ``nv12_unpack``); the caller
        drops ``frame`` after, so the decoder's pool is never held by frames in flight."""
        cp, lay = self.cp, self.lay
        y, uv = frame.planes[0], frame.planes[1]
        s = self._stream()
        with self.device, s:
            cp.cuda.Stream.null.synchronize()  # FFmpeg copied the picture out on the legacy stream
            buf = cp.empty(lay.nbytes, cp.uint8)
            n = lay.width * lay.height
            self._nv12(((n + _BLOCK - 1) // _BLOCK,), (_BLOCK,),
                       (np.uint64(y.buffer_ptr), np.int64(y.line_size), np.uint64(uv.buffer_ptr),
                        np.int64(uv.line_size), buf, *self._dims[:4]))
            s.synchronize()  # complete before the frame goes back and another stage reads buf
        return buf

    def download(self, frames: list[Frame]) -> None:
        s = self._stream()
        with self.device, s:
            for f in frames:
                if f.dirty and f.device is not None:
                    if f.host is not None and f.host.size == f.device.size:  # e.g. a ring slot
                        spans = [(0, f.host.size)] if f.bands is None else band_spans(self.lay, f.bands)
                        for a, b in spans:  # the whole frame, or only the rows pastes changed
                            f.device[a:b].get(stream=s, out=f.host[a:b])
                    else:
                        f.host = self.cp.asnumpy(f.device, stream=s)
                    f.host_current = True
            s.synchronize()
        for f in frames:
            f.device = None  # back to the pool

    def to_device(self, x):
        s = self._stream()
        with self.device, s:
            out = self.cp.asarray(x)
            s.synchronize()
        return out

    def host(self, x) -> np.ndarray:
        if isinstance(x, np.ndarray):
            return x
        s = self._stream()
        with self.device, s:
            out = self.cp.asnumpy(x, stream=s)
            s.synchronize()
        return out

    def host_many(self, xs: list) -> list[np.ndarray]:
        """Several device arrays to the host in one copy (one synchronisation, not one each)."""
        cp = self.cp
        if not xs:
            return []
        s = self._stream()
        with self.device, s:
            flat = cp.concatenate([cp.ascontiguousarray(x, cp.float32).ravel() for x in xs])
            host = cp.asnumpy(flat, stream=s)
            s.synchronize()
        out, k = [], 0
        for x in xs:
            n = int(np.prod(x.shape))
            out.append(host[k:k + n].reshape(x.shape))
            k += n
        return out

    def anchor_hits(self, scores: list, boxes: list, kps: list, input_hw: tuple[int, int],
                    strides: list[int], per_cell: int, threshold: float) -> list[np.ndarray]:
        """Per image, the anchor-grid detector's candidate rows, thresholded and gathered on the
        device by one kernel (``engine.anchors.hits_cp``): only the candidates come back."""
        s = self._stream()
        with self.device, s:
            return anchors.hits_cp(self.cp, self._anchor_hits, scores, boxes, kps, input_hw, strides,
                                   per_cell, threshold, s)

    def per_face_masks(self, static, masks: list, counts: list[int]):
        """(N, S, S) on the device: the static mask combined by minimum with each face's own."""
        cp = self.cp
        s = self._stream()
        with self.device, s:
            st = cp.asarray(static, cp.float32)
            parts = [cp.minimum(st[None], cp.asarray(m, cp.float32)) if m is not None
                     else cp.repeat(st[None], n, axis=0) for m, n in zip(masks, counts)]
            out = cp.concatenate(parts)
            s.synchronize()
        return out

    def concat(self, xs: list):
        if len(xs) == 1:
            return xs[0]
        s = self._stream()
        with self.device, s:
            out = self.cp.concatenate(xs)
            s.synchronize()
        return out

    # --- sampling kernels
    def _launch_warp(self, frames: list[Frame], mats: np.ndarray, ow: int, oh: int, mean: float,
                     std: float, rgb: bool, valid: np.ndarray | None = None, pad: float = 0.0):
        cp, n = self.cp, len(frames)
        s = self._stream()
        with self.device, s:
            out = cp.empty((n, 3, oh, ow), cp.float32)
            mats = np.asarray(mats, np.float32).reshape(n, 6)
            for i in range(0, n, MAX_ITEMS):
                g = min(MAX_ITEMS, n - i)
                items = self._items(frames[i:i + g], mats[i:i + g],
                                    None if valid is None else np.asarray(valid)[i:i + g])
                total = g * ow * oh
                self._warp_norm(((total + _BLOCK - 1) // _BLOCK,), (_BLOCK,), (
                    items, out[i:i + g], np.int32(g),
                    np.int32(ow), np.int32(oh), *self._dims, self._dec, np.float32(mean),
                    np.float32(1.0 / std), np.int32(1 if rgb else 0), np.float32(pad)))
        # not synchronised: the model input is consumed on this thread's stream, and the runner
        # synchronises it before ONNX Runtime reads it (models.device.DeviceRunner.run)
        return out

    def _view(self, nw: int, nh: int) -> np.ndarray:
        """Output pixel of an nw x nh upright view -> stored pixel (cv2.resize's mapping)."""
        fx, fy = self.up_w / nw, self.up_h / nh
        return compose(self.to_stored, np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5]]))

    def det_blob(self, frames: list[Frame], size: tuple[int, int], mean: float = 127.5,
                 std: float = 128.0):
        iw, ih = size
        nw, nh, scale = fit(self.up_w, self.up_h, iw, ih)
        mats = np.tile(self._view(nw, nh).astype(np.float32).ravel(), (len(frames), 1))
        valid = np.tile(np.array([nw, nh], np.int32), (len(frames), 1))
        blob = self._launch_warp(frames, mats, iw, ih, mean, std, True, valid, (0.0 - mean) / std)
        return blob, [back_matrix(self.to_stored, scale)] * len(frames)

    def _warp_bgr(self, frames: list[Frame], mats: np.ndarray, ow: int, oh: int) -> list[np.ndarray]:
        cp, n = self.cp, len(frames)
        if not n:
            return []
        s = self._stream()
        with self.device, s:
            out = cp.empty((n, oh, ow, 3), cp.uint8)
            mats = np.asarray(mats, np.float32).reshape(n, 6)
            for i in range(0, n, MAX_ITEMS):
                g = min(MAX_ITEMS, n - i)
                total = g * ow * oh
                self._warp_u8(((total + _BLOCK - 1) // _BLOCK,), (_BLOCK,), (
                    self._items(frames[i:i + g], mats[i:i + g]), out[i:i + g], np.int32(g),
                    np.int32(ow), np.int32(oh), *self._dims, self._dec))
            host = cp.asnumpy(out, stream=s)
            s.synchronize()
        return list(host)

    def small_bgr(self, frames: list[Frame], max_side: int) -> tuple[list[np.ndarray], np.ndarray]:
        w, h = self.up_w, self.up_h
        sc = min(1.0, max_side / max(w, h))
        nw, nh = max(1, round(w * sc)), max(1, round(h * sc))
        mats = np.tile(self._view(nw, nh).astype(np.float32).ravel(), (len(frames), 1))
        return self._warp_bgr(frames, mats, nw, nh), back_matrix(self.to_stored, nw / w)

    def crops(self, frames: list[Frame], mats: list[np.ndarray], size: int, mean: float, std: float,
              rgb: bool = True):
        inv = np.array([_invert(m) for m in mats], np.float32).reshape(-1, 6)
        return self._launch_warp(frames, inv, size, size, mean, std, rgb)

    def crops_bgr(self, frames: list[Frame], mats: list[np.ndarray], size: int) -> list[np.ndarray]:
        inv = np.array([_invert(m) for m in mats], np.float32).reshape(-1, 6)
        return self._warp_bgr(frames, inv, size, size)

    def paste(self, frames: list[Frame], crops, mats: list[np.ndarray], mask, scale: float,
              offset: float, strength: float = 1.0) -> None:
        cp = self.cp
        if not frames:
            return
        lay = self.lay
        size = int(crops.shape[-1])
        # one launch per layer: the k-th face of every frame (faces of a frame paste in order)
        seen: dict[int, int] = {}
        layers: list[list[int]] = []
        for i, f in enumerate(frames):
            k = seen.get(id(f), 0)
            seen[id(f)] = k + 1
            if k == len(layers):
                layers.append([])
            layers[k].append(i)
        s = self._stream()
        with self.device, s:
            crops = cp.ascontiguousarray(crops, cp.float32)
            mask = cp.ascontiguousarray(mask, cp.float32)
            per_face = mask.ndim == 3
            for layer in layers:
                for j in range(0, len(layer), MAX_ITEMS):
                    idx = layer[j:j + MAX_ITEMS]
                    boxes = []
                    for i in idx:
                        x0, y0, x1, y1 = roi(mats[i], size, lay, pad=2)
                        boxes.append([x0 // lay.sx, y0 // lay.sy, -(-x1 // lay.sx), -(-y1 // lay.sy)])
                    boxes = np.array(boxes, np.int32)
                    bw = int(max(1, (boxes[:, 2] - boxes[:, 0]).max()))
                    bh = int(max(1, (boxes[:, 3] - boxes[:, 1]).max()))
                    for i, b in zip(idx, boxes):  # the chroma rows this launch writes
                        if frames[i].bands is not None:
                            frames[i].bands.append((int(b[1]), int(b[3])))
                    items = self._items([frames[i] for i in idx], [mats[i] for i in idx], boxes, idx)
                    self._paste(((bw + 15) // 16, (bh + 15) // 16, len(idx)), (16, 16, 1), (
                        items, crops, mask, np.int32(size * size if per_face else 0), np.int32(size),
                        *self._dims, self._enc, np.float32(scale), np.float32(offset),
                        np.float32(strength)))
            s.synchronize()
        for f in frames:
            f.dirty = True
            f.host_current = False


def _check_layout(cp, kernel) -> None:
    """The host's ``ITEMS`` must be the compiler's ``struct Items`` (size and field offsets)."""
    out = cp.zeros(6, cp.uint64)
    kernel((1,), (1,), (out,))
    got = [int(x) for x in out.get()]
    want = [ITEMS.itemsize] + [ITEMS.fields[k][1] for k in ("frames", "m", "box", "sel", "has_box")]
    if got != want:
        raise RuntimeError(f"kernel argument layout {got} differs from the host's {want}")


def _invert(m: np.ndarray) -> np.ndarray:
    a = np.vstack([np.asarray(m, np.float64).reshape(2, 3), [0, 0, 1]])
    return np.linalg.inv(a)[:2]


def available(ordinal: int = 0) -> str | None:
    """None when CuPy can run kernels on device ``ordinal``, else why not (one line)."""
    try:
        import cupy as cp

        with cp.cuda.Device(ordinal):
            x = cp.arange(4, dtype=cp.float32)
            if float((x * 2).sum()) != 12.0:
                return "CuPy computed a wrong result"
        return None
    except Exception as e:  # noqa: BLE001 - no CuPy, no driver, no device
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
