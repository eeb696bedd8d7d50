"""Prepared GPU graphs and their runners: a node-local cache, filled on first use.

``DeviceLoader.runner(name, batch=B)``: on the first use on a node, the original graph (bytes
from the object store) is edited to a symbolic batch when its batch is fixed, converted to fp16
when the precision allows, checked against the original float32 graph on the GPU (B different
probe inputs, relative difference within ``FP16_TOL`` / ``BATCH_TOL``), saved under the cache
with its verdict, then loaded. Later workers on the node load the saved graph directly. A variant
that fails its check falls back (fp16 -> fp32, batch B -> batch 1) and the verdict says why.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np

from ffray.errors import FFrayError
from ffray.models.device import DeviceRunner
from ffray.models.manifest import check_contract, get
from ffray.models.sessions import first_provider, make_session, with_cuda_graphs, with_cuda_options
from ffray.models.store import cached_array
from ffray.settings import atomic_write_bytes, atomic_write_text

FP16_TOL = 0.02  # max |fp16 - fp32| / max |fp32| over the probe outputs
BATCH_TOL = 1e-3  # the batch edit must not change outputs beyond float32 reordering
CACHE_BYTES = 8 << 30  # prepared graphs kept per node (least recently used go first)
KEY_CHARS = 20  # the model digest's characters that name its files in the cache
FP16_DEFAULT = {"det_10g": False, "inswapper_128": True, "gfpgan_1.4": True, "w600k_r50": False}


def cache_dir() -> Path:
    from ffray.settings import data_dir

    return data_dir(None) / "cache" / "models"


class DeviceLoader:
    """Model runners on CUDA device ``ordinal``. ``models``: bytes (or object refs, fetched only
    when the node's cache misses) by manifest name; ``sha256``: their digests (cache keys)."""

    def __init__(self, models: dict, sha256: dict[str, str], ordinal: int, providers: list,
                 precision: str = "auto", cache: Path | None = None, fetch=None, graphs: bool = False,
                 shared_streams: bool = False):
        self.graphs = graphs  # runners with CUDA graphs (captured per thread by ``DeviceRunner.warm``)
        self.shared_streams = shared_streams  # sessions on their threads' streams (not with graphs)
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

    def derived(self, name: str, tag: str, compute) -> np.ndarray:
        """``compute(raw bytes of model name)``, an array, kept in the node's cache beside the
        prepared graphs (keyed by the model's digest): later workers neither fetch the model's
        bytes nor parse its graph (inswapper's emap: a full protobuf parse of ~550 MB)."""
        path = self.cache / f"{self._key(name)}-{tag}.npy"
        return cached_array(path, lambda: compute(self.raw(name)))

    def _key(self, name: str) -> str:
        """What names model ``name``'s files in the cache: its digest's first characters."""
        return self.sha.get(name, name)[:KEY_CHARS]

    def session(self, path):
        return make_session(path, self.providers, 1, what=str(path))

    def _want_fp16(self, name: str) -> bool:
        return {"fp16": True, "fp32": False}.get(self.precision, FP16_DEFAULT.get(name, False))

    def runner(self, name: str, flat_outputs: bool = False, batch: int = 1,
               sessions: int = 1) -> DeviceRunner:
        """``sessions``: sessions of the prepared graph, one per thread that will run it."""
        t = time.perf_counter()
        path, verdict = self._prepared(name, batch, self._want_fp16(name))
        n = max(1, int(sessions))
        cuda = first_provider(self.providers) == "CUDAExecutionProvider"  # graphs and streams: CUDA EP
        made = streams = None
        if self.graphs and cuda:
            made = _attempt(verdict, "graph_refused", lambda: [
                make_session(str(path), with_cuda_graphs(self.providers), 1, what=name) for _ in range(n)])
        elif self.shared_streams and cuda:
            import cupy as cp

            with cp.cuda.Device(self.ordinal):
                streams = [cp.cuda.Stream(non_blocking=True) for _ in range(n)]
            made = _attempt(verdict, "stream_refused", lambda: [
                make_session(str(path), with_cuda_options(self.providers, user_compute_stream=str(st.ptr)),
                             1, what=name) for st in streams])
            streams = streams if made else None
        verdict["cuda_graph"] = bool(self.graphs and made)
        made = made or [make_session(str(path), self.providers, 1, what=name) for _ in range(n)]
        if not verdict["edited"]:  # an edited graph has a symbolic batch: checked before the edit
            check_contract(made[0], get(name))
        verdict["load_s"] = round(time.perf_counter() - t, 3)
        verdict["sessions"] = n
        self.notes[name] = verdict
        return DeviceRunner(made, self.ordinal, verdict["batch"], flat_outputs,
                            graphs=verdict["cuda_graph"], note=verdict, streams=streams)

    def _prepared(self, name: str, batch: int, fp16: bool) -> tuple[Path, dict]:
        key = f"{self._key(name)}-b{batch}-{'h' if fp16 else 'f'}"
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


def _attempt(verdict: dict, key: str, build):
    """``build()``'s sessions, or None when ONNX Runtime refuses them (e.g. a node off the CUDA EP
    for graphs): ``verdict[key]`` then says why, and the caller makes ordinary sessions."""
    try:
        return build()
    except Exception as e:  # noqa: BLE001 - any refusal falls back to ordinary sessions
        verdict[key] = [f"{type(e).__name__}: {e}"[:300]]
        return None


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
    """Delete the least recently used prepared graphs beyond ``limit`` bytes (never the newest),
    and the arrays derived from models none of whose graphs is left."""
    files = sorted(folder.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    total = 0
    for i, p in enumerate(files):
        total += p.stat().st_size
        if i > 0 and total > limit:
            p.unlink(missing_ok=True)
            p.with_suffix(".json").unlink(missing_ok=True)
    kept = {p.name[:KEY_CHARS] for p in folder.glob("*.onnx")}  # digests with a graph left
    for p in folder.glob("*.npy"):  # arrays derived from a model (``derived``) go with its graphs
        if p.name[:KEY_CHARS] not in kept:
            p.unlink(missing_ok=True)
