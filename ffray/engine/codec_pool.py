"""The worker's codec processes: one per chunk slot, each decoding and encoding its chunk in a
process of its own (``ffray.engine.codec_child``), frames shared through an anonymous mapping.

Why processes: on a 16-core GPU node the worker runs 16 chunks at once; in one process their
decoders and libx264 encoders (and the Python loops around them) share one GIL with the stage
threads that feed the GPU. In their own processes they do not, and identity chunks never enter
the worker at all. The frame ring is an anonymous memory file (``memfd``) passed to the child by
descriptor: nothing is named, nothing is left on disk, and it is freed when both processes are gone.

``CodecProcess.run`` returns when a chunk is done or raises its error; after any failure the
process is killed and a fresh one replaces it on the next chunk (its state is unknown), so a
failing chunk never leaves a codec process behind or half-used.
"""

from __future__ import annotations

import mmap
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection

from ffray.engine.codec_child import ChunkJob, slot_views
from ffray.engine.frames import Layout
from ffray.errors import MediaError

READY_TIMEOUT_S = 60.0
_SLOT_POLL_S = 0.05  # take_slot's wait between looks at slots the worker gave back
RING_BYTES = 96 << 20  # shared frame memory per codec process (frames between decoder and encoder)
# Experiment switch FFRAY_CODEC_AFFINITY=N: codec process i runs on N CPUs of the worker's mask,
# from the (i*N)-th on (wrapping), so that its decoder and encoder stay on warm caches instead of
# migrating among 30-odd runnable threads. 0: the kernel places them (the default).
CODEC_AFFINITY = 0
# Experiment switch FFRAY_WORKER_CPUS=K: the worker's own threads (its stage threads, ONNX
# Runtime's and CUDA's, all started after this) on the last K CPUs of its mask and the codec
# processes on the others, so that the encoders' caches are not shared with the GPU stages'
# frequent wake-ups (the 1-face job's codec processes cost ~20 % more CPU a frame than a plain
# transcode on the H200 node). 0: off, everything anywhere (the default).
WORKER_CPUS = 0


def split_cpus(mask, k: int) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """(the worker's CPUs, the codec processes' CPUs): the last ``k`` of ``mask`` (sorted) and
    the others; None when ``k`` is 0 or would leave either side without a CPU."""
    cpus = sorted(mask)
    if k <= 0 or k >= len(cpus):
        return None
    return tuple(cpus[-k:]), tuple(cpus[:-k])


def slot_cpus(slot: int, per: int, mask: list[int] | None = None) -> tuple[int, ...] | None:
    """The CPUs codec process ``slot`` is pinned to: ``per`` consecutive CPUs of ``mask`` (the
    worker's affinity, sorted) from the (slot*per)-th, wrapping; None when ``per`` is 0 (unpinned)."""
    if per <= 0:
        return None
    cpus = sorted(mask if mask is not None else os.sched_getaffinity(0))
    if not cpus:
        return None
    per = min(per, len(cpus))
    start = (slot * per) % len(cpus)
    return tuple(sorted({cpus[(start + k) % len(cpus)] for k in range(per)}))


def ring_slots(lay: Layout, window: int) -> int:
    """Frames in a codec process's ring: the chunk window, fewer for large frames (at least 4)."""
    return max(4, min(int(window), RING_BYTES // max(1, lay.nbytes)))


class CodecDied(RuntimeError):
    pass


def _anon_file(size: int):
    """A file descriptor of ``size`` bytes with no name (memfd), else an unlinked temp file."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("ffray-frames")
        os.ftruncate(fd, size)
        return fd, None
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    f = tempfile.TemporaryFile(dir=shm)
    f.truncate(size)
    return f.fileno(), f


class CodecProcess:
    """One codec process and its frame ring (``views``: packed frame buffers, one per slot)."""

    def __init__(self, lay: Layout, slots: int, cpus: tuple[int, ...] | None = None):
        self.lay, self.slots = lay, slots
        size = lay.nbytes * slots if slots else 0
        self._fd, self._file = _anon_file(size) if size else (-1, None)
        self._mem = mmap.mmap(self._fd, size) if size else None
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # e.g. Ray's working_dir
        fds = (theirs.fileno(),) + ((self._fd,) if size else ())
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "ffray.engine.codec_child", str(theirs.fileno()), str(self._fd),
             str(size), str(os.getpid()), ",".join(map(str, cpus or ()))],
            pass_fds=fds, env=env, stdin=subprocess.DEVNULL)
        theirs.close()
        self._conn = Connection(ours.detach())
        self._conn.send((lay, slots))
        self.views = slot_views(self._mem, lay, slots) if size else []
        self._ready = False
        self.pid = self._proc.pid
        self._unpin: Callable[[], None] | None = None
        self._pin_lock = threading.Lock()  # page-locking (maybe on the pool's pinning thread) vs close
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        self._encode_only = False  # the current chunk's frames come from the worker's decoder

    @property
    def pinned(self) -> bool:
        return self._unpin is not None

    def pin(self, pin: Callable | None) -> None:
        """Page-lock the ring with ``pin`` (``ops.pin``: returns the unlocking call), once; not
        after ``close``. Until it is locked, frames go up and down through staging buffers."""
        with self._pin_lock:
            if pin is not None and self._mem is not None and self._unpin is None:
                try:
                    self._unpin = pin(self._mem)
                except Exception:  # noqa: BLE001 - e.g. a page-lock limit: frames are staged instead
                    self._unpin = None

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def _recv(self):
        try:
            msg = self._conn.recv()
        except (EOFError, OSError):
            code = self._proc.wait(timeout=5) if self._proc.poll() is None else self._proc.returncode
            raise CodecDied(f"codec process {self.pid} died (exit code {code})") from None
        if msg[0] == "error":
            raise (MediaError if msg[1] == "media" else RuntimeError)(
                msg[2] if msg[1] == "media" else f"{msg[1]}: {msg[2]}")
        return msg

    def wait_ready(self) -> None:
        if self._ready:
            return
        if not self._conn.poll(READY_TIMEOUT_S):
            self.kill()
            raise CodecDied(f"codec process {self.pid} did not start in {READY_TIMEOUT_S:.0f} s")
        msg = self._recv()
        if msg[0] != "ready":
            raise CodecDied(f"codec process {self.pid}: unexpected {msg[0]!r}")
        self._ready = True

    def start(self, job: ChunkJob) -> None:
        self.wait_ready()
        self._encode_only = job.encode_only
        self._free = queue.SimpleQueue()  # encode-only chunks: the slots the worker may take
        if job.encode_only:
            for i in range(self.slots):
                self._free.put(i)
        self._conn.send(("chunk", job))

    def take_slot(self) -> int:
        """A free ring slot for the next frame of an encode-only chunk: one the worker has not
        used yet or given back, else the next one the encoder frees (waits). One thread only
        (the chunk's source) calls this: it alone reads the socket while the chunk runs."""
        while True:  # slots come back from the encoder (messages) or the worker (skip)
            try:
                return self._free.get_nowait()
            except queue.Empty:
                pass
            if self._conn.poll(_SLOT_POLL_S):
                msg = self._recv()
                if msg[0] == "free":
                    return msg[1]
                raise CodecDied(f"codec process {self.pid}: unexpected {msg[0]!r} while encoding")

    def abort(self) -> None:
        """Stop the process now (its chunk failed): a thread waiting on its socket wakes with
        ``CodecDied``; the pool replaces the process."""
        try:
            self._proc.kill()
        except OSError:
            pass

    def frames(self) -> Iterator[tuple[int, int, int]]:
        """(seq, slot, pts) of each decoded frame, in presentation order, until the chunk is
        decoded; raises the codec process's error."""
        while True:
            msg = self._recv()
            if msg[0] == "frame":
                yield msg[1], msg[2], msg[3]
            elif msg[0] == "decoded":
                return
            else:
                raise CodecDied(f"codec process {self.pid}: unexpected {msg[0]!r} while decoding")

    def encode(self, seq: int, slot: int, dirty: bool, pts: int | None = None) -> None:
        """Encode frame ``seq`` (frames must come in order): from its slot if a stage changed it,
        else as decoded; the slot is free again once the encoder has it. In an encode-only chunk
        every frame is encoded from its slot, with ``pts``."""
        if self._encode_only:
            self._conn.send(("put", seq, slot, int(pts)))
        else:
            self._conn.send(("enc", seq, slot, bool(dirty)))

    def skip(self, seq: int, slot: int) -> None:
        """Frame ``seq`` is not encoded (a context frame): its slot is free again."""
        if self._encode_only:  # the worker's own slot: back to those it may take
            self._free.put(slot)
        else:
            self._conn.send(("skip", seq, slot))

    def finish(self) -> tuple[bytes, dict]:
        """Flush the encoder: the chunk's NUT bytes and the process's decode/encode seconds."""
        self._conn.send(("finish",))
        while True:
            msg = self._recv()
            if msg[0] == "done":
                return msg[1], msg[2]
            if msg[0] not in ("frame", "decoded", "free"):
                raise CodecDied(f"codec process {self.pid}: unexpected {msg[0]!r} while finishing")

    def kill(self) -> None:
        try:
            self._proc.kill()
            self._proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.close()

    def close(self) -> None:
        try:
            if self.alive:
                self._conn.send(("exit",))
                self._proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
        self._conn.close()
        self.views = []
        with self._pin_lock:  # a page-locking in progress ends first; none starts after this
            if self._unpin is not None:
                try:
                    self._unpin()
                except Exception:  # noqa: BLE001 - the device may be gone with a failed worker
                    pass
                self._unpin = None
            if self._mem is not None:
                try:
                    self._mem.close()
                except BufferError:  # a frame view still exists: the mapping goes with it
                    pass
                self._mem = None
        if self._file is not None:
            self._file.close()
        elif self._fd >= 0:
            os.close(self._fd)
        self._fd = -1


class CodecPool:
    """``slots`` codec processes, started together (they start while the engine is built); a slot's
    process is replaced after a failure."""

    def __init__(self, lay: Layout, slots: int, ring: int):
        self.lay, self.ring = lay, ring
        self._per = int(os.environ.get("FFRAY_CODEC_AFFINITY", CODEC_AFFINITY))
        mask = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        split = split_cpus(mask, int(os.environ.get("FFRAY_WORKER_CPUS", WORKER_CPUS)))
        # the worker pins itself to these once its codec processes run (None: it stays anywhere)
        self.worker_cpus: tuple[int, ...] | None = split[0] if split else None
        self._codec_cpus: tuple[int, ...] | None = split[1] if split else None
        self._mask = list(self._codec_cpus or mask)  # as at the start: replacements get the same
        self._procs: list[CodecProcess | None] = [
            CodecProcess(lay, ring, self._cpus(i)) for i in range(slots)]
        self._lock = threading.Lock()
        self._pin: Callable | None = None
        self._pinning: threading.Thread | None = None  # pin_rings' thread

    def _cpus(self, slot: int) -> tuple[int, ...] | None:
        """Where slot's codec process runs: its own CPUs (``FFRAY_CODEC_AFFINITY``), else the
        codec processes' share (``FFRAY_WORKER_CPUS``), else anywhere (None)."""
        if self._per > 0:
            return slot_cpus(slot, self._per, self._mask)
        return self._codec_cpus

    def pin_rings(self, pin: Callable | None) -> None:
        """Page-lock every ring (``Built.pin``; None: no GPU) on a thread of its own, ring by ring
        from slot 0, so that the worker is ready without waiting (16 rings of 96 MiB: ~0.6 s on
        the H200); a chunk whose ring is not locked yet stages its frames. Replaced processes'
        rings are locked when they are made (``get``)."""
        with self._lock:
            self._pin = pin
            procs = [p for p in self._procs if p is not None]
        if pin is None:
            return
        self._pinning = threading.Thread(target=lambda: [p.pin(pin) for p in procs],
                                         name="ffray-pin-rings", daemon=True)
        self._pinning.start()

    def get(self, slot: int) -> CodecProcess:
        with self._lock:
            p = self._procs[slot]
            if p is None or not p.alive:
                if p is not None:
                    p.close()
                p = self._procs[slot] = CodecProcess(self.lay, self.ring, self._cpus(slot))
                p.pin(self._pin)
            return p

    def discard(self, slot: int) -> None:
        with self._lock:
            p, self._procs[slot] = self._procs[slot], None
        if p is not None:
            p.kill()

    def run(self, slot: int, job: ChunkJob, body: Callable[[CodecProcess], None] | None = None
            ) -> tuple[bytes, dict]:
        """Run ``job`` on the slot's process: ``body(process)`` feeds the frames through the
        stages (None for passthrough); then the encoder is flushed. Any error kills the process."""
        proc = self.get(slot)
        try:
            proc.start(job)
            if body is not None:
                body(proc)
            return proc.finish()
        except BaseException:
            self.discard(slot)
            raise

    def resize(self, slots: int) -> None:
        """Keep ``slots`` processes (the slot count is final once the engine is built)."""
        with self._lock:
            extra = self._procs[slots:]
            self._procs = self._procs[:slots] + [None] * max(0, slots - len(self._procs))
        for p in extra:
            if p is not None:
                p.close()

    def pids(self) -> list[int]:
        with self._lock:
            return [p.pid for p in self._procs if p is not None]

    def close(self) -> None:
        if self._pinning is not None:
            self._pinning.join(timeout=30)
        with self._lock:
            procs, self._procs = self._procs, [None] * len(self._procs)
        for p in procs:
            if p is not None:
                p.close()
