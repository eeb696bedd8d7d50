"""GPU model execution: sessions on a prepared graph (fixed batch, fp16 where it holds accuracy),
IO binding with CuPy arrays, and a node-local cache of prepared graphs.

``DeviceLoader.runner(name, batch=B)``: on the first use on a node, the original graph (bytes
from the object store) is edited to a symbolic batch when its batch is fixed, converted to fp16
when the precision allows, checked against the original float32 graph on the GPU (B different
probe inputs, relative difference within ``FP16_TOL`` / ``BATCH_TOL``), saved under the cache
with its verdict, then loaded. Later workers on the node load the saved graph directly. A variant
that fails its check falls back (fp16 -> fp32, batch B -> batch 1) and the verdict says why.

``DeviceRunner`` runs every call at batch B exactly (the last group padded with copies), with
inputs and outputs bound to device memory by pointer: the same kernels run whatever the load, and
no frame or crop leaves the GPU for a model call.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from pathlib import Path

import numpy as np

from ffray.errors import FFrayError
from ffray.models.manifest import check_contract, get
from ffray.models.sessions import make_session
from ffray.models.streams import thread_stream
from ffray.settings import atomic_write_bytes, atomic_write_text

FP16_TOL = 0.02  # max |fp16 - fp32| / max |fp32| over the probe outputs
BATCH_TOL = 1e-3  # the batch edit must not change outputs beyond float32 reordering
CACHE_BYTES = 8 << 30  # prepared graphs kept per node (least recently used go first)
FP16_DEFAULT = {"det_10g": False, "inswapper_128": True, "gfpgan_1.4": True, "w600k_r50": False}
_NP = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}


class DeviceRunner:
    """Runs one prepared graph. With several ``sessions`` (of the same file), each calling thread
    keeps one of them (round robin): an ONNX Runtime session computes on one CUDA stream, so two
    stage threads sharing a session queue their batches behind each other on the GPU; with a
    session each, their kernels overlap. The sessions share the cuDNN heuristic's algorithm
    choice (``sessions.choose_providers``), so which one ran a batch never changes its bits."""

    device = "cuda"

    def __init__(self, sessions: list, ordinal: int, batch: int, flat_outputs: bool = False):
        import cupy as cp

        self.sessions = list(sessions)
        self.cp, self.session, self.ordinal = cp, self.sessions[0], ordinal
        self._local = threading.local()
        self._turn = itertools.count()
        self.batch, self.flat = max(1, int(batch)), flat_outputs
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._types = {i.name: _NP.get(i.type, np.float32) for i in self.session.get_inputs()}

    def _mine(self):
        """This thread's session (assigned on its first call)."""
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = self.sessions[next(self._turn) % len(self.sessions)]
        return s

    def _group(self, x, g: int):
        cp = self.cp
        if g == self.batch:
            return cp.ascontiguousarray(x)
        pad = cp.repeat(x[-1:], self.batch - g, axis=0)
        return cp.ascontiguousarray(cp.concatenate([x, pad]))

    def run(self, feeds: dict) -> list:
        """Outputs (CuPy, on this runner's device) for ``feeds`` (CuPy or NumPy) of N items."""
        cp = self.cp
        s = thread_stream(cp, self.ordinal)
        with cp.cuda.Device(self.ordinal), s:
            feeds = {k: cp.asarray(v, dtype=self._types.get(k, np.float32)) for k, v in feeds.items()}
            n = len(next(iter(feeds.values())))
            groups = []
            for i in range(0, n, self.batch):
                g = min(self.batch, n - i)
                groups.append((g, {k: self._group(x[i:i + g], g) for k, x in feeds.items()}))
            s.synchronize()  # the inputs are complete before ONNX Runtime reads them on its stream
            parts: list[list] = [[] for _ in self.output_names]
            session = self._mine()
            for g, group in groups:
                io = session.io_binding()
                for name, xb in group.items():
                    io.bind_input(name, "cuda", self.ordinal, xb.dtype, tuple(xb.shape), xb.data.ptr)
                for name in self.output_names:
                    io.bind_output(name, "cuda", self.ordinal)
                # Run returns with its outputs complete (ONNX Runtime synchronizes its stream at
                # the end of a run). ``io.synchronize_outputs()`` would add a device-wide CUDA sync
                # while holding the GIL: measured on the H200 (py-spy --gil), it stalled every other
                # stage thread of the worker.
                session.run_with_iobinding(io)
                for j, ov in enumerate(io.get_outputs()):
                    y = _wrap(cp, ov)
                    y = y.reshape(self.batch, -1, *y.shape[1:]) if self.flat else y
                    parts[j].append(y[:g])
            out = [p[0] if len(p) == 1 else cp.concatenate(p) for p in parts]
            s.synchronize()
            return out

    def host_run(self, feeds: dict) -> list[np.ndarray]:
        s = thread_stream(self.cp, self.ordinal)
        with self.cp.cuda.Device(self.ordinal), s:
            out = [self.cp.asnumpy(o, stream=s) for o in self.run(feeds)]
            s.synchronize()
        return out


def _wrap(cp, ov):
    """A CuPy view of an ORT OrtValue on the device (kept alive by the view)."""
    shape = tuple(ov.shape())
    dtype = np.float16 if "float16" in ov.data_type() else np.float32
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    mem = cp.cuda.UnownedMemory(ov.data_ptr(), nbytes, ov)
    return cp.ndarray(shape, dtype, cp.cuda.MemoryPointer(mem, 0))


def cache_dir() -> Path:
    from ffray.settings import data_dir

    return data_dir(None) / "cache" / "models"


class DeviceLoader:
    """Model runners on CUDA device ``ordinal``. ``models``: bytes (or object refs, fetched only
    when the node's cache misses) by manifest name; ``sha256``: their digests (cache keys)."""

    def __init__(self, models: dict, sha256: dict[str, str], ordinal: int, providers: list,
                 precision: str = "auto", cache: Path | None = None, fetch=None):
        self.models, self.sha = dict(models), dict(sha256)
        self.ordinal, self.providers, self.precision = ordinal, providers, precision
        self.cache = Path(cache) if cache else cache_dir()
        self.fetch = fetch or (lambda x: x)
        self.notes: dict[str, dict] = {}
        self._lock = threading.Lock()

    def raw(self, name: str) -> bytes:
        if name not in self.models:
            raise FFrayError(f"the face pipeline needs the {name} model: run `ffray models fetch {name}` "
                             "or pass --model-dir")
        with self._lock:
            data = self.models[name]
            if not isinstance(data, bytes):
                data = self.fetch(data)
                self.models[name] = data
            return data

    def session(self, path):
        return make_session(path, self.providers, 1, what=str(path))

    def _want_fp16(self, name: str) -> bool:
        return {"fp16": True, "fp32": False}.get(self.precision, FP16_DEFAULT.get(name, False))

    def runner(self, name: str, flat_outputs: bool = False, batch: int = 1,
               sessions: int = 1) -> DeviceRunner:
        """``sessions``: sessions of the prepared graph, one per thread that will run it."""
        t = time.perf_counter()
        path, verdict = self._prepared(name, batch, self._want_fp16(name))
        session = make_session(str(path), self.providers, 1, what=name)
        if not verdict["edited"]:  # an edited graph has a symbolic batch: checked before the edit
            check_contract(session, get(name))
        more = [make_session(str(path), self.providers, 1, what=name)
                for _ in range(max(1, int(sessions)) - 1)]
        verdict["load_s"] = round(time.perf_counter() - t, 3)
        verdict["sessions"] = 1 + len(more)
        self.notes[name] = verdict
        return DeviceRunner([session, *more], self.ordinal, verdict["batch"], flat_outputs)

    def _prepared(self, name: str, batch: int, fp16: bool) -> tuple[Path, dict]:
        key = f"{self.sha.get(name, name)[:20]}-b{batch}-{'h' if fp16 else 'f'}"
        meta = self.cache / f"{key}.json"
        if meta.is_file():
            try:
                verdict = json.loads(meta.read_text())
                path = self.cache / verdict["file"]
                if path.is_file():
                    os.utime(path)  # recently used
                    return path, {**verdict, "cached": True}
            except (OSError, ValueError, KeyError):
                pass
        verdict = self._build(name, batch, fp16, key)
        atomic_write_text(meta, json.dumps(verdict))
        trim(self.cache, CACHE_BYTES)
        return self.cache / verdict["file"], {**verdict, "cached": False}

    def _build(self, name: str, batch: int, fp16: bool, key: str) -> dict:
        import onnx

        from ffray.models import prepare

        data = self.raw(name)
        original = onnx.load_from_string(data)
        ref = make_session(data, self.providers, 1, what=name)
        feeds = probe_feeds(ref, max(batch, 2))
        expected = [_run_each(ref, feeds, i) for i in range(max(batch, 2))]
        tries = []
        plans = [(batch, fp16)] + ([(batch, False)] if fp16 else []) + \
            ([(1, fp16)] if batch > 1 else []) + ([(1, False)] if batch > 1 and fp16 else [])
        for b, h in plans:
            edited = b > 1 and prepare.fixed_batch(original)
            model = prepare.dynamic_batch(original) if edited else original
            model = prepare.to_fp16(model) if h else model
            blob = model.SerializeToString()
            n = b if b > 1 else 1
            try:
                sess = make_session(blob, self.providers, 1, what=name)
                got = [_run_group(sess, feeds, n, k) for k in range(max(batch, 2) // n)]
                got = [o for grp in got for o in grp]
                err = max(prepare.compare(e, g) for e, g in zip(expected, got))
            except Exception:  # noqa: BLE001 - an edit the runtime refuses: the next variant
                err = float("inf")
            tol = FP16_TOL if h else BATCH_TOL
            tries.append({"batch": b, "fp16": h, "rel_err": err, "ok": err <= tol})
            if err <= tol:
                fname = f"{key}.onnx"
                atomic_write_bytes(self.cache / fname, blob)
                return {"model": name, "file": fname, "batch": b, "fp16": h, "edited": edited,
                        "tries": tries}
        raise FFrayError(f"{name}: no GPU variant matched the original graph ({tries})")


def probe_feeds(session, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` probe inputs per model input, fixed seed: images in their models' ranges, latents
    normalised (the contracts' inputs are images and the inswapper latent)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in session.get_inputs():
        shape = [n] + [d if isinstance(d, int) else 640 for d in i.shape[1:]]
        if len(shape) == 2:  # a latent / embedding
            x = rng.standard_normal(shape).astype(np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
        else:  # a smooth image in [-1, 1] (as normalised faces are): noise blurred by resizing
            small = rng.uniform(-1, 1, (n, shape[1], 8, 8)).astype(np.float32)
            reps = (shape[2] + 7) // 8, (shape[3] + 7) // 8
            x = np.kron(small, np.ones(reps, np.float32))[:, :, :shape[2], :shape[3]]
        feeds[i.name] = np.ascontiguousarray(x)
    return feeds


def _run_each(session, feeds: dict, i: int) -> list[np.ndarray]:
    return session.run(None, {k: v[i:i + 1] for k, v in feeds.items()})


def _run_group(session, feeds: dict, n: int, k: int) -> list[list[np.ndarray]]:
    outs = session.run(None, {k_: v[k * n:(k + 1) * n] for k_, v in feeds.items()})
    per = []
    for j in range(n):
        item = []
        for o in outs:
            if o.shape[0] == n:
                item.append(o[j:j + 1])
            else:  # no batch axis: n images' rows stacked
                rows = o.shape[0] // n
                item.append(o[j * rows:(j + 1) * rows])
        per.append(item)
    return per


def trim(folder: Path, limit: int) -> None:
    """Delete the least recently used prepared graphs beyond ``limit`` bytes (never the newest)."""
    files = sorted(folder.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    total = 0
    for i, p in enumerate(files):
        total += p.stat().st_size
        if i > 0 and total > limit:
            p.unlink(missing_ok=True)
            p.with_suffix(".json").unlink(missing_ok=True)
