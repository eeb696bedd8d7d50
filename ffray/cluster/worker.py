"""ChunkWorker: a Ray actor that decodes a chunk's packets, runs the frame processor in batches
and encodes the result. It holds one processor (models loaded once) for its whole life."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from fractions import Fraction

import ray

from ffray.processors import BatchInfo, ProcessorSpec, WorkerContext, build
from ffray.video.decode import BgrConverter, ChunkPayload, decode_payload
from ffray.video.encode import ChunkEncoder, EncodeSettings


class _Clock:
    """Seconds spent inside an iterator's ``next()`` (decode time of a streaming decoder)."""

    def __init__(self, it: Iterator):
        self._it, self.seconds = it, 0.0

    def __iter__(self):
        return self

    def __next__(self):
        t = time.perf_counter()
        try:
            return next(self._it)
        finally:
            self.seconds += time.perf_counter() - t


class ChunkWorker:
    def __init__(self, processor: ProcessorSpec, encode: EncodeSettings, sources: tuple[bytes, ...],
                 source_pix_fmt: str, rate: Fraction | None, named: dict | None = None,
                 models: dict | None = None):
        ctx = ray.get_runtime_context()
        self._gpu_ids = tuple(str(g) for g in ray.get_gpu_ids())
        self._node_id = ctx.get_node_id()
        self._actor_id = ctx.get_actor_id()
        self._gpus = float(ctx.get_assigned_resources().get("GPU", 0.0))
        self._gpu_uuids = gpu_uuids(self._gpu_ids)
        self._seen: list[str] | None = None
        # CUDA numbers devices fastest-first unless told otherwise; Ray's ids are NVML (PCI) order
        os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
        self._spec = processor
        self._encode = encode
        self._pix_fmt = source_pix_fmt
        self._rate = rate
        t = time.perf_counter()
        # model bytes come through the object store (refs in a dict are not resolved for us)
        model_bytes = {k: ray.get(v) if isinstance(v, ray.ObjectRef) else v
                       for k, v in (models or {}).items()}
        self._proc = build(processor, WorkerContext(gpu_ids=self._gpu_ids, node_id=self._node_id,
                                                    sources=tuple(sources), named=dict(named or {}),
                                                    models=model_bytes))
        self._setup_s = time.perf_counter() - t

    def info(self) -> dict:
        return {"node_id": self._node_id, "actor_id": self._actor_id, "pid": os.getpid(),
                "host": socket.gethostname(), "gpu_ids": list(self._gpu_ids),
                "gpu_uuids": self._gpu_uuids, "gpu_uuids_seen": self._seen_uuids(), "gpus": self._gpus,
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "processor": self._spec.kind, "setup_s": self._setup_s}

    def process(self, payload: ChunkPayload, attempt: int) -> dict:
        """Decode, process and encode one chunk. Returns the NUT bytes and the chunk's stats."""
        start = time.time()
        t0 = time.perf_counter()
        spec = payload.spec
        conv = BgrConverter(payload.color, payload.height)
        enc = ChunkEncoder(self._encode, payload.width, payload.height, payload.time_base,
                           self._rate, payload.color, self._pix_fmt)
        frames = _Clock(decode_payload(payload))
        process_s = encode_s = convert_s = 0.0
        batch, pts = [], []
        number = spec.first_frame
        bs = max(1, self._spec.batch_size)

        def flush():
            nonlocal process_s, encode_s, number
            t = time.perf_counter()
            out = self._proc.process(batch, BatchInfo(spec.index, tuple(range(number, number + len(batch))),
                                                      tuple(pts)))
            process_s += time.perf_counter() - t
            if len(out) != len(batch):
                raise RuntimeError(f"processor returned {len(out)} frames for {len(batch)}")
            t = time.perf_counter()
            for img, p in zip(out, pts):
                enc.write(img, p)
            encode_s += time.perf_counter() - t
            number += len(batch)
            batch.clear()
            pts.clear()

        for f in frames:
            t = time.perf_counter()
            batch.append(conv(f))
            pts.append(f.pts)
            convert_s += time.perf_counter() - t
            if len(batch) >= bs:
                flush()
        if batch:
            flush()
        t = time.perf_counter()
        data = enc.finish()
        encode_s += time.perf_counter() - t
        stats = {"chunk": spec.index, "attempt": attempt, "frames": enc.frames,
                 "start": start, "end": time.time(), "wall_s": time.perf_counter() - t0,
                 "decode_s": frames.seconds, "convert_s": convert_s, "process_s": process_s,
                 "encode_s": encode_s, "input_bytes": payload.nbytes, "output_bytes": len(data),
                 "stages": self._proc.stats(), **self.info()}
        return {"data": data, "stats": stats}


    def _seen_uuids(self) -> list[str] | None:
        """UUIDs of the GPUs on which NVML lists this process (a CUDA context exists once models
        ran): the independent check that ``gpu_uuids`` names the device really used. None before
        any GPU use or without NVML; [] where NVML shows other PIDs (a container's PID namespace)."""
        if self._seen or not self._gpu_ids:
            return self._seen
        try:
            import pynvml

            pynvml.nvmlInit()
            try:
                seen = []
                for i in range(pynvml.nvmlDeviceGetCount()):
                    h = pynvml.nvmlDeviceGetHandleByIndex(i)
                    pids = {p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h)}
                    if os.getpid() in pids:
                        u = pynvml.nvmlDeviceGetUUID(h)
                        seen.append(u.decode() if isinstance(u, bytes) else str(u))
                self._seen = seen
            finally:
                pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - no NVML (CPU machines, fake GPUs)
            self._seen = None
        return self._seen


def gpu_uuids(gpu_ids: tuple[str, ...]) -> list[str | None]:
    """NVML UUIDs of the physical GPUs Ray assigned (Ray's GPU ids are NVML indices, or UUIDs when
    the node's CUDA_VISIBLE_DEVICES lists UUIDs); None where NVML cannot tell (no driver, or fake
    GPUs in tests)."""
    if not gpu_ids:
        return []
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            out = []
            for g in gpu_ids:
                if g.startswith(("GPU-", "MIG-")):
                    out.append(g)
                    continue
                h = pynvml.nvmlDeviceGetHandleByIndex(int(g))
                u = pynvml.nvmlDeviceGetUUID(h)
                out.append(u.decode() if isinstance(u, bytes) else str(u))
            return out
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVML here, or an index NVML does not know
        return [None for _ in gpu_ids]
