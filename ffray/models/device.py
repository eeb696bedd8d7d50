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

CUDA graphs (``DeviceLoader(graphs=True)``): the sessions are built with ONNX Runtime's
``enable_cuda_graph``, and each stage thread captures its own graph before frames flow
(``DeviceRunner.warm``): static input and output buffers bound once, a few runs (ORT captures
after its regular runs), then one replay checked bit for bit against the same session's ordinary
run. A thread whose graph fails or differs runs ordinarily (``gpu_graph_id = -1``), as do threads
that never warmed (the set-up thread finding source faces).
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
from ffray.models.sessions import make_session, with_cuda_graphs
from ffray.models.streams import thread_stream
from ffray.settings import atomic_write_bytes, atomic_write_text

FP16_TOL = 0.02  # max |fp16 - fp32| / max |fp32| over the probe outputs
BATCH_TOL = 1e-3  # the batch edit must not change outputs beyond float32 reordering
CACHE_BYTES = 8 << 30  # prepared graphs kept per node (least recently used go first)
FP16_DEFAULT = {"det_10g": False, "inswapper_128": True, "gfpgan_1.4": True, "w600k_r50": False}
GRAPH_RUNS = 4  # ORT captures on a thread's 2nd or 3rd run of a session (after 1-2 regular runs)
_NP = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}


class DeviceRunner:
    """Runs one prepared graph. With several ``sessions`` (of the same file), each calling thread
    keeps one of them (round robin): an ONNX Runtime session computes on one CUDA stream, so two
    stage threads sharing a session queue their batches behind each other on the GPU; with a
    session each, their kernels overlap. The sessions share the cuDNN heuristic's algorithm
    choice (``sessions.choose_providers``), so which one ran a batch never changes its bits."""

    device = "cuda"

    def __init__(self, sessions: list, ordinal: int, batch: int, flat_outputs: bool = False,
                 graphs: bool = False, note: dict | None = None):
        import cupy as cp

        self.sessions = list(sessions)
        self.cp, self.session, self.ordinal = cp, self.sessions[0], ordinal
        self._local = threading.local()
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self.batch, self.flat = max(1, int(batch)), flat_outputs
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._types = {i.name: _NP.get(i.type, np.float32) for i in self.session.get_inputs()}
        self.graphs = bool(graphs)
        self.note = note if note is not None else {}  # the loader's verdict: graphs captured, refusals
        self._taken: set[int] = set()  # sessions a thread has captured a graph on
        self._plain_ro = None
        if self.graphs:  # runs outside a captured graph say so (ORT would count them towards capture)
            import onnxruntime as ort

            self._plain_ro = ort.RunOptions()
            self._plain_ro.add_run_config_entry("gpu_graph_id", "-1")

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
            graph = getattr(self._local, "graph", None)
            out = self._plain(self._mine(), feeds, s) if graph is None else self._replay(graph, feeds, s)
            s.synchronize()
            return out

    def _plain(self, session, feeds: dict, s) -> list:
        cp = self.cp
        n = len(next(iter(feeds.values())))
        groups = []
        for i in range(0, n, self.batch):
            g = min(self.batch, n - i)
            groups.append((g, {k: self._group(x[i:i + g], g) for k, x in feeds.items()}))
        s.synchronize()  # the inputs are complete before ONNX Runtime reads them on its stream
        parts: list[list] = [[] for _ in self.output_names]
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
            session.run_with_iobinding(io, self._plain_ro)
            for j, ov in enumerate(io.get_outputs()):
                y = _wrap(cp, ov)
                y = y.reshape(self.batch, -1, *y.shape[1:]) if self.flat else y
                parts[j].append(y[:g])
        return [p[0] if len(p) == 1 else cp.concatenate(p) for p in parts]

    def _replay(self, graph: _Graph, feeds: dict, s) -> list:
        """Groups through this thread's graph: each copied into the static inputs (the last
        padded with copies of its last item), the outputs copied out before the next group."""
        cp = self.cp
        n = len(next(iter(feeds.values())))
        parts: list[list] = [[] for _ in self.output_names]
        for i in range(0, n, self.batch):
            g = min(self.batch, n - i)
            for k, x in feeds.items():
                buf = graph.inputs[k]
                buf[:g] = x[i:i + g]
                if g < self.batch:
                    buf[g:] = x[i + g - 1:i + g]
            s.synchronize()  # inputs written, and the last group's outputs copied out
            graph.run()  # a replay returns with its outputs complete (ORT syncs its stream)
            for j, name in enumerate(self.output_names):
                y = graph.outputs[name]
                y = y.reshape(self.batch, -1, *y.shape[1:]) if self.flat else y
                parts[j].append(y[:g].copy())
        return [p[0] if len(p) == 1 else cp.concatenate(p) for p in parts]

    def warm(self, shapes: dict[str, tuple]) -> None:
        """Capture this thread's CUDA graph (graph runners only; ``shapes``: each input's shape
        without the batch axis). Call before frames flow, one thread at a time: ONNX Runtime
        captures in global mode, where any other thread's CUDA allocation or synchronisation
        breaks the capture. The graph is kept only if its outputs equal the session's ordinary
        run bit for bit; otherwise (and on a session another thread captured on) this thread
        runs ordinarily."""
        if not self.graphs or getattr(self._local, "graph", None) is not None:
            return
        cp = self.cp
        session = self._mine()
        with self._lock:
            if id(session) in self._taken:
                self._refuse("two threads on one session")
                return
            self._taken.add(id(session))
        s = thread_stream(cp, self.ordinal)
        rng = np.random.default_rng(0)
        with cp.cuda.Device(self.ordinal), s:
            probe = {k: cp.asarray(rng.uniform(-1, 1, (self.batch, *shp)), self._types.get(k, np.float32))
                     for k, shp in shapes.items()}
            try:
                expected = self._plain(session, probe, s)
                raw = [e.reshape(-1, *e.shape[2:]) if self.flat else e for e in expected]
                outputs = {nm: cp.empty(r.shape, r.dtype) for nm, r in zip(self.output_names, raw)}
                graph = _Graph(session, self.ordinal, {k: cp.empty_like(v) for k, v in probe.items()},
                               outputs)
                for _ in range(GRAPH_RUNS):
                    got = self._replay(graph, probe, s)
                s.synchronize()
                same = all(bool(cp.array_equal(a, b)) for a, b in zip(expected, got))
            except Exception as e:  # noqa: BLE001 - ORT refused the capture: run ordinarily
                self._refuse(f"{type(e).__name__}: {e}"[:300])
                return
        if not same:
            self._refuse("graph outputs differ from ordinary runs")
            return
        self._local.graph = graph
        with self._lock:
            self.note["graphs"] = self.note.get("graphs", 0) + 1

    def _refuse(self, why: str) -> None:
        with self._lock:
            seen = self.note.setdefault("graph_refused", [])
            if why not in seen:
                seen.append(why)

    def host_run(self, feeds: dict) -> list[np.ndarray]:
        s = thread_stream(self.cp, self.ordinal)
        with self.cp.cuda.Device(self.ordinal), s:
            out = [self.cp.asnumpy(o, stream=s) for o in self.run(feeds)]
            s.synchronize()
        return out


class _Graph:
    """One thread's CUDA graph of one session: static device buffers, bound once (a captured
    graph reads and writes the addresses it was captured with)."""

    def __init__(self, session, ordinal: int, inputs: dict, outputs: dict):
        self.session, self.inputs, self.outputs = session, inputs, outputs
        self.io = session.io_binding()
        for name, x in inputs.items():
            self.io.bind_input(name, "cuda", ordinal, x.dtype, tuple(x.shape), x.data.ptr)
        for name, y in outputs.items():
            self.io.bind_output(name, "cuda", ordinal, y.dtype, tuple(y.shape), y.data.ptr)

    def run(self) -> None:
        self.session.run_with_iobinding(self.io)


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
                 precision: str = "auto", cache: Path | None = None, fetch=None, graphs: bool = False):
        self.graphs = graphs  # runners with CUDA graphs (captured per thread by ``DeviceRunner.warm``)
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
        graphed = with_cuda_graphs(self.providers) if self.graphs else None
        n = max(1, int(sessions))
        made = None
        if graphed is not None:
            try:
                made = [make_session(str(path), graphed, 1, what=name) for _ in range(n)]
            except Exception as e:  # noqa: BLE001 - e.g. nodes outside the CUDA EP: no graphs
                verdict["graph_refused"] = [f"{type(e).__name__}: {e}"[:300]]
        verdict["cuda_graph"] = made is not None
        made = made or [make_session(str(path), self.providers, 1, what=name) for _ in range(n)]
        if not verdict["edited"]:  # an edited graph has a symbolic batch: checked before the edit
            check_contract(made[0], get(name))
        verdict["load_s"] = round(time.perf_counter() - t, 3)
        verdict["sessions"] = n
        self.notes[name] = verdict
        return DeviceRunner(made, self.ordinal, verdict["batch"], flat_outputs,
                            graphs=verdict["cuda_graph"], note=verdict)

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
