"""The worker engine's structure on the CPU: order, every frame exactly once, bounded memory,
failures confined to their chunk, thread budgets and GPU-share accounting."""

from __future__ import annotations

import random
import threading
import time

import pytest

from ffray.engine.budget import plan_budget
from ffray.engine.chunk import run_chunk
from ffray.engine.pipeline import Engine, StageError
from ffray.engine.share import ShareClock


class Jitter:
    """A stage that sleeps a random moment per batch (so threads overtake each other) and marks
    each item with its name; optionally fails on one chunk. It checks before it changes anything,
    so it is ``pure`` (a failed batch can be re-run)."""

    pure = True

    def __init__(self, name, threads=1, batch=3, fail_chunk=None, fail_after=0, tracker=None):
        self.name, self.threads, self.batch = name, threads, batch
        self.fail_chunk, self.fail_after, self.tracker = fail_chunk, fail_after, tracker
        self.seen = 0
        self._lock = threading.Lock()
        self._rng = random.Random(hash(name) & 0xFFFF)

    def process(self, items):
        with self._lock:
            self.seen += len(items)
            delay = self._rng.random() * 0.004
        for it in items:
            if it.run.index == self.fail_chunk and it.seq >= self.fail_after:
                raise ValueError(f"bad frame {it.seq}")
        time.sleep(delay)
        for it in items:
            it.frame = (*it.frame, self.name)


class Alive:
    """Counts frames between their source and their sink, per chunk (the memory bound)."""

    def __init__(self):
        self.now, self.peak, self.lock = {}, {}, threading.Lock()

    def enter(self, chunk):
        with self.lock:
            self.now[chunk] = self.now.get(chunk, 0) + 1
            self.peak[chunk] = max(self.peak.get(chunk, 0), self.now[chunk])

    def leave(self, chunk):
        with self.lock:
            self.now[chunk] -= 1


def _run(engine, index, total, window=6, alive=None, sink_error_at=None, source_error_at=None):
    out = []

    def frames():
        for i in range(total):
            if i == source_error_at:
                raise RuntimeError("corrupt packet")
            if alive:
                alive.enter(index)
            yield 1000 + i, 10 * i, (index, i)

    def sink(item):
        if item.seq == sink_error_at:
            raise OSError("disk full")
        out.append((item.seq, item.number, item.pts, item.frame))
        if alive:
            alive.leave(index)

    run_chunk(engine, index, total, window, frames(), sink)
    return out


def test_every_frame_once_in_order_through_threaded_stages_with_chunks_in_parallel():
    stages = [Jitter("a", threads=3), Jitter("b", threads=1, batch=5), Jitter("c", threads=4)]
    eng = Engine(stages, queue_size=4)
    results, errors = {}, []

    def chunk(k):
        try:
            results[k] = _run(eng, k, 37 + k)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=chunk, args=(k,)) for k in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    eng.close()
    assert not errors
    for k in range(5):
        got = results[k]
        assert [s for s, *_ in got] == list(range(37 + k))  # in order, each exactly once
        assert [n for _, n, _, _ in got] == [1000 + i for i in range(37 + k)]
        assert all(f == (k, s, "a", "b", "c") for s, _, _, f in got)  # every stage, in order
    assert [s.seen for s in stages] == [sum(37 + k for k in range(5))] * 3
    st = eng.stats()["stages"]
    assert st["a"]["items"] == st["c"]["items"] == sum(37 + k for k in range(5))
    assert st["b"]["batches"] >= sum(37 + k for k in range(5)) / 5


def test_frames_in_flight_stay_within_the_window_and_queues_stay_bounded():
    class Slow(Jitter):
        def process(self, items):
            time.sleep(0.002 * len(items))
            super().process(items)

    alive = Alive()
    eng = Engine([Jitter("a", threads=2), Slow("slow", batch=2)], queue_size=3)
    peak_q = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak_q.append(max(q.qsize() for q in eng._queues))
            time.sleep(0.001)

    w = threading.Thread(target=watch)
    w.start()
    out = _run(eng, 0, 120, window=8, alive=alive)
    stop.set()
    w.join()
    eng.close()
    assert len(out) == 120
    # never more than the window between source and sink, plus the one decoded frame waiting
    assert alive.peak[0] <= 8 + 1
    assert max(peak_q) <= max(q.maxsize for q in eng._queues)


@pytest.mark.parametrize("where", ["a", "b"])
def test_a_stage_error_fails_its_chunk_only_and_the_engine_keeps_serving(where):
    """Frames of chunks 0 and 2 share batches with chunk 1's bad frames: only chunk 1 fails."""
    a = Jitter("a", threads=2, fail_chunk=1 if where == "a" else None, fail_after=5)
    b = Jitter("b", threads=2, batch=1, fail_chunk=1 if where == "b" else None, fail_after=20)
    eng = Engine([a, b], queue_size=4)
    results, errors = {}, {}

    def chunk(k):
        try:
            results[k] = _run(eng, k, 40)
        except BaseException as e:
            errors[k] = e

    threads = [threading.Thread(target=chunk, args=(k,)) for k in (0, 1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert set(errors) == {1}, errors
    assert isinstance(errors[1], StageError) and f"{where} stage" in str(errors[1])
    assert "bad frame" in str(errors[1])
    assert len(results[0]) == len(results[2]) == 40
    n_threads = threading.active_count()
    assert len(_run(eng, 3, 25)) == 25  # the worker is free: a new chunk goes through
    assert threading.active_count() == n_threads  # no stage thread died or was added
    eng.close()


def test_a_failed_mixed_batch_is_retried_per_chunk_only_for_pure_stages():
    """Re-running a stage that changes frames in place could apply it twice: its failed batch
    fails all the chunks it held (the driver retries them whole); a pure stage's batch is re-run
    chunk by chunk so only the bad chunk fails."""
    from ffray.engine.pipeline import ChunkRun, Item

    for pure, failed in ((True, {1}), (False, {0, 1, 2})):
        runs = [ChunkRun(k, 4, 4) for k in range(3)]
        items = [Item(run=runs[k], seq=i, number=i, pts=i, frame=(k, i)) for i in range(2) for k in range(3)]
        stage = Jitter("s", fail_chunk=1)
        stage.pure = pure
        try:
            stage.process(items)
        except ValueError as e:
            go_on = Engine._isolate(stage, items, e)
        assert go_on == pure
        assert {r.index for r in runs if r.failed} == failed
        if pure:  # the good chunks' frames went through the stage (once: the check precedes changes)
            assert all(it.frame == (it.run.index, it.seq, "s") for it in items if not it.run.failed)


def test_source_and_sink_errors_fail_the_chunk_without_hanging():
    eng = Engine([Jitter("a", threads=2)], queue_size=2)
    with pytest.raises(RuntimeError, match="corrupt packet"):
        _run(eng, 0, 50, source_error_at=17)
    with pytest.raises(OSError, match="disk full"):
        _run(eng, 1, 50, sink_error_at=9)
    with pytest.raises(RuntimeError, match="gave 10 of 11 frames"):
        run_chunk(eng, 2, 11, 4, ((i, i, (2, i)) for i in range(10)), lambda it: None)
    assert len(_run(eng, 3, 30)) == 30
    eng.close()


def test_an_engine_without_stages_hands_frames_straight_to_the_sink():
    eng = Engine([])
    assert [f for *_, f in _run(eng, 0, 9)] == [(0, i) for i in range(9)]


def test_thread_budget_from_cpus_and_fixed_encoder_threads():
    b16 = plan_budget(16, gpu=True)
    assert b16.slots == 16 and b16.encoder_threads == 1 and b16.ort_threads == 1
    b2 = plan_budget(2, gpu=False)
    assert b2.slots == 2 and b2.ort_threads == 1 and b2.decoder_threads == 1
    assert plan_budget(64, gpu=False, encoder_threads=2).slots == 24
    assert plan_budget(16, gpu=True, slots=3).slots == 3
    assert plan_budget(0.5, gpu=False).slots == 2  # at least two chunks overlap


def test_chunks_sharing_a_gpu_add_up_to_its_time():
    now = [0.0]
    clock = ShareClock(gpus=1.0, clock=lambda: now[0])
    a = clock.start()
    now[0] = 2.0
    b = clock.start()
    now[0] = 4.0
    sa = clock.stop(a)
    now[0] = 5.0
    sb = clock.stop(b)
    assert sa == pytest.approx(2.0 + 1.0)  # alone, then half the GPU
    assert sb == pytest.approx(1.0 + 1.0)
    assert sa + sb == pytest.approx(5.0)  # the device's wall time, not 7
    half = ShareClock(gpus=0.5, clock=lambda: now[0])
    c = half.start()
    now[0] = 9.0
    assert half.stop(c) == pytest.approx(2.0)  # a worker holding half a GPU is charged half


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="Linux thread names")
def test_stage_and_sink_threads_carry_native_names():
    """``top -H`` / ``ps -L`` on a worker show which stage uses the CPU: every stage thread and
    chunk sink has an OS thread name, not just the process's."""
    import glob
    import os

    class Named:
        name, batch, threads = "detect", 2, 2

        def __init__(self):
            self.seen: set[str] = set()

        def process(self, items):
            tid = threading.get_native_id()
            self.seen.add(open(f"/proc/self/task/{tid}/comm").read().strip())

    stage = Named()
    eng = Engine([stage])
    sinks: set[str] = set()

    def sink(item):
        sinks.add(open(f"/proc/self/task/{threading.get_native_id()}/comm").read().strip())

    try:
        run_chunk(eng, 7, 6, 4, ((k, k, object()) for k in range(6)), sink)
        names = set()
        for f in glob.glob(f"/proc/{os.getpid()}/task/*/comm"):
            try:
                names.add(open(f).read().strip())
            except FileNotFoundError:  # a thread (of Ray, of another test) ended meanwhile
                pass
    finally:
        eng.close()
    assert stage.seen <= {"ffray-detect-0", "ffray-detect-1"} and stage.seen
    assert {"ffray-detect-0", "ffray-detect-1"} <= names
    assert sinks == {"ffray-sink-7"}


class Warmed(Jitter):
    """A stage with per-thread set-up: it records which thread warmed, and whether two warmed at
    once or a frame came before its thread had warmed."""

    def __init__(self, name, threads, log, fail=False, **kw):
        super().__init__(name, threads=threads, **kw)
        self.log, self.fail, self.warmed = log, fail, set()

    def warm(self):
        me = threading.current_thread().name
        self.log.append(("start", me))
        time.sleep(0.02)  # long enough for an overlapping warm-up to show in the log
        self.log.append(("end", me))
        if self.fail:
            raise RuntimeError("capture refused")
        self.warmed.add(me)

    def process(self, items):
        assert threading.current_thread().name in self.warmed
        super().process(items)


def test_stage_threads_warm_one_at_a_time_before_any_frame():
    """CUDA graphs are captured per thread, in a mode where no other thread may use CUDA: every
    thread of every stage warms once, never two at a time, and the engine takes frames only
    once all have."""
    log: list = []
    a, b = Warmed("a", 2, log), Warmed("b", 3, log)
    eng = Engine([a, Jitter("plain", threads=2), b], queue_size=4)
    assert len(log) == 2 * 5  # all warmed when the constructor returns
    assert all(log[k][0] == "start" and log[k + 1] == ("end", log[k][1]) for k in range(0, 10, 2))
    assert len({name for _, name in log}) == 5
    assert len(_run(eng, 0, 30)) == 30  # process() asserts its thread had warmed
    eng.close()


def test_a_failed_warm_up_fails_the_engine_with_the_stage_named():
    n = threading.active_count()
    with pytest.raises(StageError, match="b stage: RuntimeError: capture refused"):
        Engine([Warmed("a", 1, []), Warmed("b", 2, [], fail=True)])
    deadline = time.time() + 5
    while threading.active_count() > n and time.time() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == n  # its threads stopped


def test_cuda_graphs_only_on_a_cuda_ep_first():
    from ffray.models.sessions import with_cuda_graphs

    cuda = [("CUDAExecutionProvider", {"device_id": 1, "cudnn_conv_algo_search": "HEURISTIC"}),
            "CPUExecutionProvider"]
    got = with_cuda_graphs(cuda)
    assert got[0] == ("CUDAExecutionProvider", {"device_id": 1, "cudnn_conv_algo_search": "HEURISTIC",
                                                "enable_cuda_graph": "1"})
    assert got[1] == "CPUExecutionProvider" and "enable_cuda_graph" not in cuda[0][1]
    assert with_cuda_graphs(["CPUExecutionProvider"]) is None
    assert with_cuda_graphs([("TensorrtExecutionProvider", {}), cuda[0], "CPUExecutionProvider"]) is None


def test_a_thread_given_a_stream_uses_it_and_finishes_the_old_one_first():
    """Shared streams: a model stage thread computes on its session's stream from its warm-up on;
    other threads keep their own."""
    from ffray.models.streams import thread_stream, use_stream

    class FakeStream:
        def __init__(self):
            self.synced = 0

        def synchronize(self):
            self.synced += 1

    mine, old, seen = FakeStream(), FakeStream(), {}

    def stage_thread():
        use_stream(0, old)
        use_stream(0, mine)  # replaces the first, which is finished first
        seen["stage"] = thread_stream(None, 0)  # no CuPy needed: the thread has its stream

    def other_thread():
        use_stream(0, old)
        seen["other"] = thread_stream(None, 0)

    for fn in (stage_thread, other_thread):
        t = threading.Thread(target=fn)
        t.start()
        t.join()
    assert seen == {"stage": mine, "other": old}
    assert old.synced == 1 and mine.synced == 0


def test_experiment_switches_become_worker_options():
    """Set on the driver, the switches reach the workers' environment (``experiment_env``) and the
    worker turns them into typed options; without them the job's options stand."""
    from ffray.cluster.worker import EXPERIMENT_SWITCHES, experiment_env, experiment_options
    from ffray.engine.build import WorkerOptions

    base = WorkerOptions(gpu_batches={"det": 8}, window=24)
    assert experiment_options(base, {}) == base
    env = {"FFRAY_GPU_BATCHES": "swap=16", "FFRAY_STAGE_THREADS": "enhance=3", "FFRAY_CUDA_GRAPH": "1",
           "FFRAY_WINDOW": "30", "FFRAY_SHARED_STREAM": "1", "PATH": "/bin"}
    o = experiment_options(base, env)
    assert o.gpu_batches == {"det": 8, "swap": 16} and o.stage_threads == {"enhance": 3}
    assert o.cuda_graphs is True and o.window == 30 and o.shared_streams is True
    assert experiment_options(WorkerOptions(cuda_graphs=True), {"FFRAY_CUDA_GRAPH": "0"}).cuda_graphs is False
    passed = set(experiment_env(env))
    assert passed == set(env) - {"PATH"} and passed <= set(EXPERIMENT_SWITCHES)
