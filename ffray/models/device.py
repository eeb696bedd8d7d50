"""GPU model execution: a prepared graph's sessions with IO binding on CuPy arrays.

``DeviceRunner`` runs every call at batch B exactly (the last group padded with copies), with
inputs and outputs bound to device memory by pointer: the same kernels run whatever the load, and
no frame or crop leaves the GPU for a model call. Its sessions come from
``ffray.models.gpu_loader.DeviceLoader`` (graphs prepared and cached per node).

CUDA graphs (``DeviceLoader(graphs=True)``): the sessions are built with ONNX Runtime's
``enable_cuda_graph``, and each stage thread captures its own graph before frames flow
(``DeviceRunner.warm``): static input and output buffers bound once, a few runs (ORT captures
after its regular runs), then one replay checked bit for bit against the same session's ordinary
run. A thread whose graph fails or differs runs ordinarily (``gpu_graph_id = -1``), as do threads
that never warmed (the set-up thread finding source faces).

Shared streams (``DeviceLoader(shared_streams=True)``, an experiment): each session computes on a
CUDA stream of its own given to ONNX Runtime (``user_compute_stream``), and the stage thread that
warms on that session makes it its CuPy stream too, so its frame kernels and the model's are
ordered on one stream: a call then synchronises once, at its end, instead of before the run,
inside ORT's run and at its end (run option ``disable_synchronize_execution_providers``).
"""

from __future__ import annotations

import itertools
import threading

import numpy as np

from ffray.models.streams import thread_stream, use_stream

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
                 graphs: bool = False, note: dict | None = None, streams: list | None = None):
        import cupy as cp

        self.sessions = list(sessions)
        self.cp, self.session, self.ordinal = cp, self.sessions[0], ordinal
        self._local = threading.local()
        self._turn = itertools.count()
        self._lock = threading.RLock()  # _take refuses (_refuse) while it holds it
        self.batch, self.flat = max(1, int(batch)), flat_outputs
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._types = {i.name: _NP.get(i.type, np.float32) for i in self.session.get_inputs()}
        self.graphs = bool(graphs)
        self.note = note if note is not None else {}  # the loader's verdict: graphs captured, refusals
        self._taken: set[int] = set()  # sessions a thread has captured a graph on
        self.streams = streams  # per session: the CUDA stream it computes on (shared streams)
        self._plain_ro = self._async_ro = None
        if self.graphs or streams:
            import onnxruntime as ort

            if self.graphs:  # runs outside a captured graph say so (ORT would count them towards capture)
                self._plain_ro = ort.RunOptions()
                self._plain_ro.add_run_config_entry("gpu_graph_id", "-1")
            if streams:  # a thread on its session's stream: no sync at the end of ORT's run
                self._async_ro = ort.RunOptions()
                self._async_ro.add_run_config_entry("disable_synchronize_execution_providers", "1")

    def _mine(self):
        """This thread's session (assigned on its first call)."""
        s = getattr(self._local, "session", None)
        if s is None:
            self._local.index = next(self._turn) % len(self.sessions)
            s = self._local.session = self.sessions[self._local.index]
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
        shared = getattr(self._local, "stream", None)  # this thread computes on its session's stream
        s = shared or thread_stream(cp, self.ordinal)
        with cp.cuda.Device(self.ordinal), s:
            feeds = {k: cp.asarray(v, dtype=self._types.get(k, np.float32)) for k, v in feeds.items()}
            graph = getattr(self._local, "graph", None)
            out = self._plain(self._mine(), feeds, s, ordered=shared is not None) if graph is None \
                else self._replay(graph, feeds, s)
            s.synchronize()
            return out

    def _plain(self, session, feeds: dict, s, ordered: bool = False) -> list:
        """``ordered``: ``s`` is the session's own stream (no sync needed between them)."""
        cp = self.cp
        n = len(next(iter(feeds.values())))
        groups = []
        for i in range(0, n, self.batch):
            g = min(self.batch, n - i)
            groups.append((g, {k: self._group(x[i:i + g], g) for k, x in feeds.items()}))
        if not ordered:
            s.synchronize()  # the inputs are complete before ONNX Runtime reads them on its stream
        ro = self._async_ro if ordered else self._plain_ro
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
            session.run_with_iobinding(io, ro)
            for j, ov in enumerate(io.get_outputs()):
                parts[j].append(self._items(_wrap(cp, ov))[:g])
        return self._join(parts)

    def _items(self, y):
        """A batch's output by item: flat outputs (rows of all items stacked) as (B, rows, ...)."""
        return y.reshape(self.batch, -1, *y.shape[1:]) if self.flat else y

    def _join(self, parts: list[list]) -> list:
        return [p[0] if len(p) == 1 else self.cp.concatenate(p) for p in parts]

    def _replay(self, graph: _Graph, feeds: dict, s) -> list:
        """Groups through this thread's graph: each copied into the static inputs (the last
        padded with copies of its last item), the outputs copied out before the next group."""
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
                parts[j].append(self._items(graph.outputs[name])[:g].copy())
        return self._join(parts)

    def warm(self, shapes: dict[str, tuple]) -> None:
        """Capture this thread's CUDA graph (graph runners only; ``shapes``: each input's shape
        without the batch axis). Call before frames flow, one thread at a time: ONNX Runtime
        captures in global mode, where any other thread's CUDA allocation or synchronisation
        breaks the capture. The graph is kept only if its outputs equal the session's ordinary
        run bit for bit; otherwise (and on a session another thread captured on) this thread
        runs ordinarily."""
        if self.streams and getattr(self._local, "stream", None) is None:
            self._share_stream()
        if not self.graphs or getattr(self._local, "graph", None) is not None:
            return
        cp = self.cp
        session = self._take()
        if session is None:
            return
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

    def _take(self):
        """This thread's session, if no other thread has warmed on it (a captured graph or a
        shared stream belongs to one thread); else None, and the note says so."""
        session = self._mine()
        with self._lock:
            if id(session) in self._taken:
                self._refuse("two threads on one session")
                return None
            self._taken.add(id(session))
        return session

    def _share_stream(self) -> None:
        """Compute on this thread's session's stream from now on (shared streams)."""
        if self._take() is None:
            return
        with self._lock:
            self.note["shared_streams"] = self.note.get("shared_streams", 0) + 1
        self._local.stream = self.streams[self._local.index]
        use_stream(self.ordinal, self._local.stream)

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
