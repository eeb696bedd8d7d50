"""One chunk through the engine: its source (decode loop) feeds the shared stages, its sink
(encoder thread) takes the frames back in order."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ffray.engine.pipeline import ChunkRun, Engine, Item
from ffray.engine.threadname import name_this_thread


class ChunkTimes:
    """Seconds spent in the chunk's own source and sink (the shared stages charge ``run``)."""

    def __init__(self):
        self.source_s = 0.0  # decoding (inside the source iterator)
        self.sink_s = 0.0  # encoding (inside the sink callback)


def run_chunk(engine: Engine, index: int, total: int, window: int,
              frames: Iterable[tuple[int, int, Any]], sink: Callable[[Item], None],
              times: ChunkTimes | None = None, context: int = 0, on_fail=None) -> ChunkRun:
    """Push ``frames`` ((number, pts, frame) in presentation order) through ``engine`` and call
    ``sink`` for each finished item, in order, from a sink thread. Returns when every frame was
    sunk or the chunk failed; raises the chunk's first error (a stage's, the source's or the
    sink's). ``total`` is the number of frames ``frames`` must yield, the first ``context`` of
    them context frames (``Item.context``: the sink must not encode them). ``on_fail`` is
    called once when the chunk fails (a codec process is stopped, so that a source waiting on
    it wakes up)."""
    run = ChunkRun(index, total, window, on_fail)
    times = times or ChunkTimes()
    received = [0]

    def drain() -> None:
        name_this_thread()
        pending: dict[int, Item] = {}
        nxt = 0
        try:
            while nxt < total:
                it = run.done.get()
                if it is None:  # the chunk failed somewhere
                    return
                pending[it.seq] = it
                while nxt in pending:
                    item = pending.pop(nxt)
                    t = time.perf_counter()
                    sink(item)
                    times.sink_s += time.perf_counter() - t
                    nxt += 1
                    received[0] = nxt
                    run.window.release()
        except BaseException as e:  # noqa: BLE001 - an encoder error fails the chunk
            run.fail(e)

    th = threading.Thread(target=drain, name=f"ffray-sink-{index}", daemon=True)
    th.start()
    seq = 0
    try:
        it = iter(frames)
        while True:
            t = time.perf_counter()
            try:
                number, pts, frame = next(it)
            except StopIteration:
                times.source_s += time.perf_counter() - t
                break
            times.source_s += time.perf_counter() - t
            if seq >= total:
                raise RuntimeError(f"chunk {index}: the source gave more than {total} frames")
            if not run.acquire_slot():
                break
            if not engine.submit(Item(run=run, seq=seq, number=number, pts=pts, frame=frame,
                                      context=seq < context)):
                break
            seq += 1
        if not run.failed and seq != total:
            raise RuntimeError(f"chunk {index}: the source gave {seq} of {total} frames")
    except BaseException as e:  # noqa: BLE001
        run.fail(e)
    th.join()
    if run.error is not None:
        raise run.error
    if received[0] != total:  # cannot happen unless a stage lost an item
        raise RuntimeError(f"chunk {index}: {received[0]} of {total} frames came back")
    return run
