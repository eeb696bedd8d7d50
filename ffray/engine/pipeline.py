"""The worker's stage runner: shared stages joined by bounded queues, fed by chunks in flight.

A worker processes several chunks at once. Each chunk has a source (its decode loop, in the Ray
call's own thread) and a sink (its encoder thread); the stages between them (upload, detect,
select, swap, paste, enhance, download) are shared by every chunk in flight, so one set of models
serves them all and one batch may hold frames of several chunks.

- Queues between stages are bounded (``queue_size`` items), and each chunk holds at most
  ``window`` frames between its decoder and its encoder, so memory stays bounded whatever the
  input length.
- A stage's thread takes what is queued, up to the stage's ``batch``, and processes it; items of
  a failed chunk are dropped wherever they are.
- An exception in a stage fails the chunk it came from (its call raises, the driver retries it)
  and nothing else: a failed batch of a ``pure`` stage is re-run chunk by chunk to find it; a stage
  that changes frames in place fails every chunk of the batch. The stage thread carries on.
- Items leave the last stage in any order (a stage may have several threads); the sink restores
  the chunk's frame order.
- A stage may ``warm`` each of its threads before the first frame (CUDA graphs are captured per
  thread, in a mode where no other thread may use CUDA meanwhile): one thread at a time, and the
  engine is ready once all have.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ffray.engine.threadname import name_this_thread

_STOP = object()
_POLL = 0.1  # seconds between checks of a chunk's failure while blocked


class StageError(RuntimeError):
    """A stage raised while processing a batch; the message names the stage and the cause (a
    plain message, so it crosses process boundaries: Ray pickles it back to the driver)."""

    @classmethod
    def of(cls, stage: str, cause: BaseException) -> StageError:
        return cls(f"{stage} stage: {type(cause).__name__}: {cause}")


class ChunkRun:
    """One chunk in flight: where its finished frames go, its frame window and its failure."""

    def __init__(self, index: int, total: int, window: int, on_fail=None):
        self.index, self.total = index, total
        self._on_fail = on_fail  # called once, on the first failure (e.g. unblock a source)
        self.done: queue.SimpleQueue = queue.SimpleQueue()  # items out of the last stage
        self.window = threading.Semaphore(max(1, window))
        self.stage_s: dict[str, float] = {}
        self.counters: dict = {}  # a BGR processor's own stats for this chunk (numbers, lists)
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    @property
    def error(self) -> BaseException | None:
        return self._error

    @property
    def failed(self) -> bool:
        return self._error is not None

    def fail(self, exc: BaseException) -> None:
        """Record the first failure and wake the sink (later failures are consequences)."""
        with self._lock:
            if self._error is not None:
                return
            self._error = exc
        self.done.put(None)
        if self._on_fail is not None:
            self._on_fail()

    def charge(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.stage_s[stage] = self.stage_s.get(stage, 0.0) + seconds

    def add_counts(self, stats: dict) -> None:
        """Merge a processor's ``stats()``: numbers add up, lists (per-frame values) extend."""
        with self._lock:
            for k, v in stats.items():
                if isinstance(v, dict):
                    d = self.counters.setdefault(k, {})
                    for kk, vv in v.items():
                        d.setdefault(kk, []).extend(vv)
                elif isinstance(v, (int, float)):
                    self.counters[k] = self.counters.get(k, 0) + v

    def acquire_slot(self) -> bool:
        """Wait for room in the chunk's window; False once the chunk has failed."""
        while not self.window.acquire(timeout=_POLL):
            if self.failed:
                return False
        return not self.failed


@dataclass(eq=False)
class Item:
    """One frame on its way through the stages. ``frame`` is the backend's frame object; the
    face fields are filled by the face stages (``faces``: detections, ``targets``: what to swap)."""

    run: ChunkRun
    seq: int  # position in the chunk
    number: int  # source frame number
    pts: int
    frame: Any
    faces: list = field(default_factory=list)
    targets: list = field(default_factory=list)
    crops: Any = None  # swapped (or enhanced) crops of ``targets``, the backend's array type
    masks: Any = None  # per-target masks from an occluder (N, S, S), the backend's array type
    mats: list | None = None  # per-target frame -> crop matrices of ``crops`` (set by the swapper)
    tracks: list | None = None  # per face in ``faces``: its track id (set by the select stage)
    context: bool = False  # a frame from before the chunk: tracked, never swapped or encoded


class Stage(Protocol):
    name: str
    threads: int
    batch: int
    # optional: ``pure = True`` when processing items again is harmless (the stage only sets item
    # fields, e.g. detections or crops); a failed mixed batch is then retried chunk by chunk
    # optional: ``ordered = True``: the stage sees each chunk's frames in order, each once (one
    # thread; frames that arrive early wait), for per-chunk state such as face tracks

    def process(self, items: list[Item]) -> None:
        """Work on ``items`` in place (a stage returns nothing; it fills or changes the items)."""

    # optional: ``warm()``, called once in each of the stage's threads before any frame comes
    # (one thread at a time; the engine's constructor waits for all, and raises what one raised):
    # per-thread set-up such as capturing CUDA graphs


@dataclass
class StageStats:
    name: str
    threads: int
    batch: int
    busy_s: float = 0.0
    items: int = 0
    batches: int = 0

    def to_json(self) -> dict:
        return {"threads": self.threads, "batch": self.batch, "busy_s": round(self.busy_s, 4),
                "items": self.items, "batches": self.batches}


class Engine:
    """Runs ``stages`` in threads; ``submit`` puts a chunk's frame in, the chunk's sink takes it
    out of ``item.run.done``. With no stages, items go straight to their sink."""

    def __init__(self, stages: Sequence[Stage], queue_size: int = 16):
        self.stages = list(stages)
        self._queues = [queue.Queue(maxsize=max(queue_size, s.batch * 2)) for s in self.stages]
        for s in self.stages:
            if getattr(s, "ordered", False):
                s.threads = 1
        self._stats = [StageStats(s.name, s.threads, s.batch) for s in self.stages]
        self._held: list[dict] = [{} for _ in self.stages]  # ordered stages: early frames per chunk
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._warm_lock = threading.Lock()  # one stage thread warms at a time
        self._warm_errors: list[StageError] = []
        ready = []
        for i, s in enumerate(self.stages):
            for k in range(max(1, s.threads)):
                ev = threading.Event()
                t = threading.Thread(target=self._loop, args=(i, ev), name=f"ffray-{s.name}-{k}",
                                     daemon=True)
                t.start()
                self._threads.append(t)
                ready.append(ev)
        for ev in ready:  # every thread warmed before the first frame goes in
            ev.wait()
        if self._warm_errors:
            self.close()
            raise self._warm_errors[0]
        self._started = time.perf_counter()

    def submit(self, item: Item) -> bool:
        """Hand a frame to the first stage; blocks while it is full. False if the chunk failed."""
        if not self.stages:
            item.run.done.put(item)
            return True
        return _put(self._queues[0], item)

    def _loop(self, i: int, ready: threading.Event) -> None:
        name_this_thread()  # e.g. "ffray-detect-0" in top -H
        stage, q_in = self.stages[i], self._queues[i]
        warm = getattr(stage, "warm", None)
        if warm is not None:  # per-thread set-up (CUDA graphs), while no frame is in flight
            try:
                with self._warm_lock:
                    warm()
            except BaseException as e:  # noqa: BLE001 - the engine's constructor raises it
                with self._lock:
                    self._warm_errors.append(StageError.of(stage.name, e))
        ready.set()
        q_out = self._queues[i + 1] if i + 1 < len(self._queues) else None
        st = self._stats[i]
        while True:
            first = q_in.get()
            if first is _STOP:
                q_in.put(_STOP)  # let this stage's other threads see it too
                return
            batch = [first]
            while len(batch) < stage.batch:
                try:
                    nxt = q_in.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    q_in.put(_STOP)
                    break
                batch.append(nxt)
            live = [it for it in batch if not it.run.failed]
            if getattr(stage, "ordered", False):
                live = _in_order(self._held[i], live)
            if not live:
                continue
            t = time.perf_counter()
            try:
                stage.process(live)
                ok = True
            except BaseException as e:  # noqa: BLE001 - fail the chunks, keep the stage alive
                ok = self._isolate(stage, live, e)
            dt = time.perf_counter() - t
            with self._lock:
                st.busy_s += dt
                st.items += len(live)
                st.batches += 1
            share = dt / len(live)
            for it in live:
                it.run.charge(stage.name, share)
            if not ok:
                continue
            for it in live:
                if it.run.failed:
                    continue
                if q_out is None:
                    it.run.done.put(it)
                else:
                    _put(q_out, it)

    @staticmethod
    def _isolate(stage: Stage, live: list[Item], e: BaseException) -> bool:
        """A batch failed. If it held frames of several chunks and the stage is ``pure`` (running it
        again on the same items is harmless: it only sets fields), run each chunk's frames again
        alone, so only the chunk that fails again fails; otherwise fail every chunk in the batch.
        True when some items may go on (the caller forwards those whose chunk did not fail)."""
        runs: dict[int, list[Item]] = {}
        for it in live:
            runs.setdefault(id(it.run), []).append(it)
        if len(runs) == 1 or not getattr(stage, "pure", False):
            err = StageError.of(stage.name, e)
            for group in runs.values():
                group[0].run.fail(err)
            return False
        for group in runs.values():
            try:
                stage.process(group)
            except BaseException as e2:  # noqa: BLE001
                group[0].run.fail(StageError.of(stage.name, e2))
        return True

    def stats(self) -> dict:
        """Per stage: threads, batch size, busy seconds, items and batches since the start, and
        ``busy_share``: busy seconds per thread over the engine's lifetime."""
        wall = max(1e-9, time.perf_counter() - self._started)
        with self._lock:
            out = {}
            for s in self._stats:
                d = s.to_json()
                d["busy_share"] = round(s.busy_s / (wall * max(1, s.threads)), 4)
                out[s.name] = d
            return {"wall_s": round(wall, 3), "stages": out}

    def close(self) -> None:
        for q in self._queues:
            _force_put(q, _STOP)
        for t in self._threads:
            t.join(timeout=5)


def run_inline(stages: Sequence[Stage], items: list[Item]) -> None:
    """Run ``items`` through ``stages`` in this thread, all items at once per stage (no queues):
    for still images and tests. Charges each stage's time to the items' chunk."""
    for stage in stages:
        live = [it for it in items if not it.run.failed]
        if not live:
            return
        t = time.perf_counter()
        stage.process(live)
        dt = time.perf_counter() - t
        for it in live:
            it.run.charge(stage.name, dt / len(live))


def _in_order(held: dict, items: list[Item]) -> list[Item]:
    """Of ``items`` and the frames held back before, those next in their chunk's order (per chunk,
    seq 0, 1, 2, ...); the others stay in ``held``. A chunk's entry goes when its last frame has
    passed or it failed."""
    for it in items:
        held.setdefault(id(it.run), [it.run, 0, {}])[2][it.seq] = it
    out = []
    for key in list(held):
        run, nxt, pend = held[key]
        if run.failed:
            del held[key]
            continue
        while nxt in pend:
            out.append(pend.pop(nxt))
            nxt += 1
        if nxt >= run.total:
            del held[key]
        else:
            held[key][1] = nxt
    return out


def _put(q: queue.Queue, item: Item) -> bool:
    while True:
        if item.run.failed:
            return False
        try:
            q.put(item, timeout=_POLL)
            return True
        except queue.Full:
            continue


def _force_put(q: queue.Queue, obj) -> None:
    """Put ``obj`` even into a full queue (for the stop marker): make room by dropping items."""
    while True:
        try:
            q.put_nowait(obj)
            return
        except queue.Full:
            try:
                q.get_nowait()
            except queue.Empty:
                pass
