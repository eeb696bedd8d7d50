"""The driver's scheduling loop over a pool of ChunkWorker actors.

- every worker first builds its engine and says how many chunks it runs at once (its slots);
  the driver keeps slots + 1 chunks in flight per worker (so a slot never idles waiting for the
  driver), handed out one at a time to the least loaded worker;
- payloads are cut lazily from one sequential demux of the input and put into the object store
  once; a retry reuses the same object;
- a chunk whose actor dies goes back to the front of the queue and is given to another actor when
  one is free; a replacement actor is started in place of the dead one, without waiting for it
  (it joins the pool once built; one whose node left may never fit, and the others go on);
- a chunk whose input cannot be decoded (``MediaError`` from the worker: deterministic) fails
  the job at its first attempt; others are counted per chunk;
- a chunk that fails ``max_attempts`` times fails the job: no
  new chunk starts, the chunks already running finish (and stay in the ledger with the others
  for ``ffray resume``), then the job fails with the chunk's reason; the workers are stopped.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from ffray.cluster.jobprogress import every_seconds, layout_of
from ffray.errors import JobFailed, MediaError
from ffray.video.decode import ChunkPayload


@dataclass(frozen=True)
class PoolOptions:
    actors: int
    gpu_per_actor: float = 0.0
    cpu_per_actor: float = 0.0
    max_attempts: int = 3
    inflight: int | None = None  # chunks in flight per actor (default: its slots + 1)
    max_replacements: int | None = None  # default: 2 x actors
    replacement_wait_s: float = 300.0  # with no worker left, how long to wait for a replacement


@dataclass
class Progress:
    total_frames: int
    total_chunks: int
    frames_done: int = 0
    chunks_done: int = 0
    inflight: int = 0
    retries: int = 0
    actors: int = 0
    slots: int = 0  # chunks the workers can run at once, together
    started: float = field(default_factory=time.time)
    workers_ready: float | None = None  # when every first worker had built its engine
    worker_info: list = field(default_factory=list)
    gpu_util: float | None = None  # the job's GPUs' mean utilization now (telemetry), None unknown
    gpus: bool | None = None  # whether the job's nodes have GPUs (None: no telemetry sample yet)


@dataclass
class _Actor:
    handle: object
    key: int
    inflight: int = 0
    alive: bool = True
    capacity: int = 2
    info: dict = field(default_factory=dict)  # the worker's ``info()``: where its attempts run


def run_pool(make_actor: Callable[[], object], payloads: Iterator[ChunkPayload],
             on_done: Callable[[dict], None], opts: PoolOptions, progress: Progress,
             on_progress: Callable[[Progress], None] = lambda p: None,
             on_event: Callable[..., None] = lambda **kw: None) -> None:
    """Run every payload through the pool; ``on_done`` gets each result (data + stats)."""
    actors: list[_Actor] = []
    starting: dict = {}  # info ref -> replacement actor still building its engine
    keys = itertools.count()
    replacements = opts.max_replacements if opts.max_replacements is not None else 2 * opts.actors

    def spawn(n: int = 1) -> None:
        new = [_Actor(handle=make_actor(), key=next(keys)) for i in range(n)]
        # every worker builds its engine (models, sessions) first: a setup error fails the job here,
        # before any chunk is sent, and the driver learns how many chunks each takes at once
        try:
            infos = ray.get([a.handle.info.remote() for a in new])
        except RayActorError as e:
            raise JobFailed(f"worker setup failed: {_root_cause(e)}") from None
        except RayTaskError as e:
            raise JobFailed(f"worker setup failed: {_first_line(e.cause if e.cause else e)}") from None
        for a, info in zip(new, infos):
            join(a, info)

    def join(a: _Actor, info: dict) -> None:
        a.capacity = opts.inflight or int(info.get("slots", 1)) + 1
        a.info = info
        progress.worker_info.append(info)
        actors.append(a)

    def respawn() -> None:
        a = _Actor(handle=make_actor(), key=next(keys))
        starting[a.handle.info.remote()] = a

    spawn(opts.actors)
    if every_seconds(os.environ):  # a detached job: `ffray jobs` reads this from its log
        print(layout_of(progress.worker_info).line(), file=sys.stderr, flush=True)
    progress.workers_ready = time.time()
    progress.actors = opts.actors
    progress.slots = sum(int(i.get("slots", 1)) for i in progress.worker_info)
    refs: dict = {}  # payload object refs by chunk index, kept until the chunk is done
    sizes: dict[int, int] = {}
    attempts: dict[int, int] = {}
    failed_on: dict[int, set[int]] = {}
    retry: deque[int] = deque()
    pending: dict = {}  # task ref -> (actor, chunk index, attempt)
    submitted: dict = {}  # task ref -> submission time (failed attempts become spans)
    source = iter(payloads)
    exhausted = False

    def next_chunk(actor: _Actor) -> int | None:
        nonlocal exhausted
        # A retry goes to an actor it has not failed on when possible.
        for i, c in enumerate(retry):
            tried = failed_on.get(c, set())
            if actor.key not in tried or all(b.key in tried for b in _alive()):
                del retry[i]
                return c
        if exhausted:
            return None
        try:
            p = next(source)
        except StopIteration:
            exhausted = True
            return None
        refs[p.spec.index] = ray.put(p)
        sizes[p.spec.index] = p.spec.frames
        return p.spec.index

    def _alive() -> list[_Actor]:
        return [a for a in actors if a.alive]

    def fill() -> None:
        """One chunk at a time to the least loaded actor (by share of its capacity), so chunks
        spread over every worker before any worker takes a second."""
        skip: set[int] = set()
        while True:
            free = [a for a in _alive() if a.inflight < a.capacity and a.key not in skip]
            if not free:
                return
            a = min(free, key=lambda a: (a.inflight / a.capacity, a.key))
            c = next_chunk(a)
            if c is None:
                skip.add(a.key)  # nothing for this actor; a retry may still suit another one
                continue
            attempts[c] = attempts.get(c, 0) + 1
            ref = a.handle.process.remote(refs[c], attempts[c])
            pending[ref] = (a, c, attempts[c])
            submitted[ref] = time.time()
            a.inflight += 1

    fatal: list[JobFailed] = []  # the job is failing: no new chunks, the running ones finish

    def fail(actor: _Actor, chunk: int, attempt: int, reason: str, since: float | None,
             deterministic: bool = False) -> None:
        progress.retries += 1
        failed_on.setdefault(chunk, set()).add(actor.key)
        on_event(kind="attempt_failed", chunk=chunk, attempt=attempt, actor=actor.key,
                 reason=reason, submitted=since, **where(actor.info))
        if deterministic and not fatal:  # the input itself: another attempt would fail the same way
            fatal.append(JobFailed(f"{reason} (not retried: the input is at fault, not the worker)"))
        if attempt >= opts.max_attempts and not fatal:
            fatal.append(JobFailed(f"chunk {chunk} failed {attempt} times; last error: {reason}. "
                                   "Finished chunks are kept: fix the cause and run `ffray resume`"))
        if not fatal:
            retry.appendleft(chunk)

    alone_since: float | None = None  # when the last worker died with replacements starting

    try:
        fill()
        while pending or (retry and not fatal):
            progress.inflight = len(pending)
            on_progress(progress)
            if not _alive():
                alone_since = alone_since or time.time()
                if time.time() - alone_since > opts.replacement_wait_s:
                    raise JobFailed("every worker actor died and no replacement could start in "
                                    f"{opts.replacement_wait_s:.0f} s; finished chunks are kept for "
                                    "`ffray resume`")
            ready, _ = ray.wait(list(pending) + list(starting), num_returns=1, timeout=0.5)
            for ref in ready:
                if ref in starting:
                    new = starting.pop(ref)
                    try:
                        join(new, ray.get(ref))
                        alone_since = None
                    except (RayActorError, RayTaskError) as e:
                        on_event(kind="replacement_failed", actor=new.key, reason=_first_line(e))
                    continue
                actor, chunk, attempt = pending.pop(ref)
                since = submitted.pop(ref, None)
                actor.inflight -= 1
                try:
                    result = ray.get(ref)
                except RayActorError as e:
                    if getattr(e, "actor_init_failed", False):
                        # the processor could not be built (missing library, bad model): retrying
                        # on another actor would fail the same way
                        raise JobFailed(f"worker setup failed: {_root_cause(e)}") from None
                    if actor.alive:
                        actor.alive = False
                        on_event(kind="actor_died", actor=actor.key, reason=_first_line(e))
                        if replacements > 0 and not fatal:
                            replacements -= 1
                            respawn()
                    fail(actor, chunk, attempt, f"worker died ({_first_line(e)})", since)
                    if not _alive() and not starting:
                        raise JobFailed("every worker actor died; finished chunks are kept for "
                                        "`ffray resume`") from None
                    continue
                except RayTaskError as e:
                    fail(actor, chunk, attempt, _first_line(e.cause if e.cause else e), since,
                         deterministic=isinstance(e.cause, MediaError))
                    continue
                on_done(result)
                progress.frames_done += sizes.get(chunk, result["stats"]["frames"])
                progress.chunks_done += 1
                refs.pop(chunk, None)
            if not fatal:
                fill()
    finally:
        progress.inflight = 0
        on_progress(progress)
        for a in actors + list(starting.values()):
            if a.alive:
                try:
                    ray.kill(a.handle)
                except (RayActorError, GetTimeoutError, ValueError):
                    pass
    if fatal:
        raise fatal[0]


def where(info: dict) -> dict:
    """Where a worker runs, for a failed attempt's event (its span's lane): node, Ray node id,
    GPU UUID, process and actor ids, from the worker's ``info()``."""
    uuids = info.get("gpu_uuids") or [None]
    return {"node": info.get("node"), "node_id": info.get("node_id"), "gpu_uuid": uuids[0],
            "pid": info.get("pid"), "actor_id": info.get("actor_id")}


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):  # Ray puts the original error last
        if "Error" in ln or "error" in ln:
            return ln.strip()[:300]
    return (lines[-1] if lines else type(e).__name__)[:300]


def _root_cause(e: BaseException) -> str:
    """The original exception's line from a Ray error's text, without the module path."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    last = lines[-1] if lines else type(e).__name__
    name, sep, msg = last.partition(": ")
    if sep and " " not in name:
        return msg if name.endswith("FFrayError") else f"{name.rsplit('.', 1)[-1]}: {msg}"
    return last[:300]
