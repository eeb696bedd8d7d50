"""A codec process: decodes a chunk's packets and encodes its frames, outside the worker process.

A worker runs one codec process per chunk slot (``ffray.engine.codec_pool``). Decoding and
libx264 encoding are most of a worker's CPU work; in separate processes they neither compete for
the worker's GIL with the GPU stages nor with each other. Frames cross through shared memory: the
decoder writes each frame's planes into a free slot of the process's ring (an anonymous mapping
both processes hold), the worker's stages read and change them there, and the encoder takes
them back from the slot (a frame no stage changed is encoded from the decoded frame itself). Only
small messages go over the socket: (frame number, slot, pts) and the encoded chunk at the end.

Identity chunks (``passthrough``) never leave the process: decoded frames go to the encoder.
``encode_only`` chunks are decoded by the worker (NVDEC in its own CUDA context): it writes every
frame into a ring slot it took, sends ``("put", seq, slot, pts)``, and the process answers
``("free", slot)`` once that frame is encoded.

Messages, worker -> codec process: ``("chunk", ChunkJob)``, ``("enc", seq, slot, dirty)``,
``("skip", seq, slot)`` (a context frame: decoded for face tracking, not encoded), ``("put", seq,
slot, pts)`` (encode-only chunks), ``("finish",)``, ``("exit",)``. Codec process -> worker:
``("ready", pid)``, ``("frame", seq, slot, pts)``, ``("decoded", n)``, ``("free", slot)``
(encode-only chunks), ``("done", data, stats)``, ``("error", kind, message)``.

The process exits when the worker closes its socket, sends ``exit`` or dies (its parent pid
changes): it never outlives the worker.
"""

from __future__ import annotations

import mmap
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from multiprocessing.connection import Connection

import numpy as np

from ffray.engine.frames import Frame, Layout, unpack
from ffray.engine.threadname import name_this_thread
from ffray.errors import FFrayError
from ffray.video.decode import ChunkPayload, DecodeReport, decode_payload, sws_range, sws_space
from ffray.video.encode import ChunkEncoder, EncodeSettings

_PARENT_POLL_S = 0.5
# Experiment switch FFRAY_CODEC_NICE=N: the codec processes run N nice levels below the worker
# (and SCHED_BATCH), so that on a node whose cores are all encoding the worker's stage threads get
# a core first. Measured on the H200 (docs/benchmarks.md, fifth pass): no gain within the
# run-to-run spread (1 face 250.8 with +5 vs 292.1 and 225.3 without), so off by default.
CODEC_NICE = 0


def lower_priority(increment: int) -> None:
    """Lower this process's CPU priority (niceness + ``increment``, SCHED_BATCH: a CPU-bound
    process that does not preempt interactive ones on wake-up). Never raises: priority is a
    speed choice, and unprivileged processes may always lower their own."""
    if increment <= 0:
        return
    try:
        os.nice(increment)
        if hasattr(os, "SCHED_BATCH"):
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except OSError:
        pass


@dataclass(frozen=True)
class ChunkJob:
    """One chunk for a codec process: its packets and how to encode it."""

    payload: ChunkPayload
    encode: EncodeSettings
    rate: Fraction | None
    pix_fmt: str  # the source's pixel format
    encoder_threads: int
    decoder_threads: int
    passthrough: bool = False  # identity: decoded frames straight to the encoder
    hw_device: int | None = None  # CUDA ordinal whose NVDEC decodes (None: the CPU decodes)
    encode_only: bool = False  # the worker decodes and puts every frame into a ring slot


def slot_views(mem, lay: Layout, slots: int) -> list[np.ndarray]:
    """The ring's slots: one packed frame buffer each, over the shared mapping."""
    nb = lay.nbytes
    buf = np.frombuffer(mem, np.uint8, slots * nb)
    return [buf[i * nb:(i + 1) * nb] for i in range(slots)]


class _Chunk:
    """One chunk being decoded and encoded (two threads: decoder, encoder)."""

    def __init__(self, job: ChunkJob, lay: Layout, views: list[np.ndarray], send):
        self.job, self.lay, self.views, self.send = job, lay, views, send
        self.free: queue.SimpleQueue = queue.SimpleQueue()
        for i in range(len(views)):
            self.free.put(i)
        self.todo: queue.Queue = queue.Queue(maxsize=max(2, len(views)) if job.passthrough else 0)
        self.kept: dict[int, object] = {}  # seq -> decoded frame, until encoded
        self.lock = threading.Lock()
        self.decode_s = self.encode_s = 0.0
        self.report = DecodeReport()
        self.failed = threading.Event()
        self.threads = [threading.Thread(target=self._encode, daemon=True, name="encode")]
        if not job.encode_only:
            self.threads.append(threading.Thread(target=self._decode, daemon=True, name="decode"))
        for t in self.threads:
            t.start()

    def _fail(self, e: BaseException) -> None:
        if not self.failed.is_set():
            self.failed.set()
            kind = "media" if isinstance(e, FFrayError) else type(e).__name__
            self.send(("error", kind, str(e) or type(e).__name__))

    def _decode(self) -> None:
        name_this_thread("codec-decode")
        job, p = self.job, self.job.payload
        space, rng = sws_space(p.color, p.height), sws_range(p.color)  # for non-native layouts
        n = 0
        try:
            it = iter(decode_payload(job.payload, threads=job.decoder_threads, report=self.report,
                                     hw_device=job.hw_device))
            while True:
                t = time.perf_counter()
                f = next(it, None)
                self.decode_s += time.perf_counter() - t
                if f is None or self.failed.is_set():
                    break
                if job.passthrough:
                    self.todo.put((n, f))
                else:
                    slot = self.free.get()
                    t = time.perf_counter()
                    unpack(f, self.lay, out=self.views[slot], space=space, rng=rng)
                    self.decode_s += time.perf_counter() - t
                    with self.lock:
                        self.kept[n] = f
                    self.send(("frame", n, slot, int(f.pts)))
                n += 1
            if not self.failed.is_set():
                if job.passthrough:
                    self.todo.put(None)
                else:
                    self.send(("decoded", n))
        except BaseException as e:  # noqa: BLE001 - reported to the worker, which fails the chunk
            self._fail(e)

    def _encode(self) -> None:
        name_this_thread("codec-encode")
        job, p = self.job, self.job.payload
        try:
            enc = ChunkEncoder(job.encode, p.width, p.height, p.time_base, job.rate, p.color,
                               job.pix_fmt, layout=self.lay, threads=job.encoder_threads)
            while True:
                m = self.todo.get()
                if m is None:
                    break
                t = time.perf_counter()
                if job.passthrough:
                    seq, decoded = m
                    enc.write_frame(Frame(decoded=decoded), decoded.pts)
                elif job.encode_only:  # the slot holds the frame as the worker left it
                    seq, slot, pts = m
                    enc.write_frame(Frame(host=self.views[slot], dirty=True), pts)
                    self.send(("free", slot))
                else:
                    seq, slot, dirty = m
                    with self.lock:
                        decoded = self.kept.pop(seq)
                    if dirty is not None:  # None: a frame not to encode (a context frame)
                        frame = Frame(decoded=decoded, host=self.views[slot], dirty=dirty)
                        enc.write_frame(frame, decoded.pts)
                    self.free.put(slot)  # the encoder copied what it needs
                self.encode_s += time.perf_counter() - t
            t = time.perf_counter()
            data = enc.finish()
            self.encode_s += time.perf_counter() - t
            self.send(("done", data, {"frames": enc.frames, "decode_s": self.decode_s,
                                      "encode_s": self.encode_s, "pid": os.getpid(),
                                      "decode_report": self.report.to_json()}))
        except BaseException as e:  # noqa: BLE001
            self._fail(e)

    def enc(self, seq: int, slot: int, dirty: bool | None) -> None:
        """Encode frame ``seq`` from its slot (``dirty``) or as decoded; None: drop it."""
        self.todo.put((seq, slot, dirty))

    def put(self, seq: int, slot: int, pts: int) -> None:
        """Encode frame ``seq`` (an encode-only chunk) from ``slot`` with ``pts``."""
        self.todo.put((seq, slot, pts))

    def finish(self) -> None:
        if not self.job.passthrough:  # a passthrough chunk ends when its decoder does
            self.todo.put(None)


def _watch_parent(ppid: int) -> None:
    while True:
        time.sleep(_PARENT_POLL_S)
        if os.getppid() != ppid:
            os._exit(3)


def serve(conn: Connection, mem, lay: Layout, slots: int) -> None:
    views = slot_views(mem, lay, slots) if slots else []
    send_lock = threading.Lock()

    def send(msg) -> None:
        with send_lock:
            try:
                conn.send(msg)
            except OSError:  # the worker is gone
                os._exit(0)

    send(("ready", os.getpid()))
    chunk: _Chunk | None = None
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        kind = msg[0]
        if kind == "chunk":
            chunk = _Chunk(msg[1], lay, views, send)
        elif kind == "enc" and chunk is not None:
            chunk.enc(*msg[1:])
        elif kind == "put" and chunk is not None:
            chunk.put(*msg[1:])
        elif kind == "skip" and chunk is not None:
            chunk.enc(msg[1], msg[2], None)
        elif kind == "finish" and chunk is not None:
            chunk.finish()
        elif kind == "exit":
            return


def pin_to(cpus: str) -> None:
    """Run this process (its threads started from now on) on ``cpus`` ("3,4"; "": anywhere).
    Never raises: placement is a speed choice."""
    want = {int(c) for c in cpus.split(",") if c.strip()}
    if not want or not hasattr(os, "sched_setaffinity"):
        return
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]  # e.g. BLAS threads of imports
    except OSError:
        tids = [0]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, want)
        except OSError:
            pass


def main(argv: list[str]) -> None:
    sock_fd, mem_fd, size, ppid = (int(a) for a in argv[:4])
    pin_to(argv[4] if len(argv) > 4 else "")  # before any thread starts: they inherit it
    lower_priority(int(os.environ.get("FFRAY_CODEC_NICE", CODEC_NICE)))
    threading.Thread(target=_watch_parent, args=(ppid,), daemon=True).start()
    conn = Connection(sock_fd)
    lay, slots = conn.recv()
    mem = mmap.mmap(mem_fd, size) if size else None
    serve(conn, mem, lay, slots)
    os._exit(0)  # skip interpreter teardown: the decoder/encoder threads may still hold frames


if __name__ == "__main__":
    main(sys.argv[1:])
