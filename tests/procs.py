"""Test-only frame processors, loaded by workers as ``tests.procs:NAME``."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ffray.processors import Stamp


class CrashOnce(Stamp):
    """Stamps frames, but kills its worker process the first time any worker reaches chunk
    ``chunk`` (a marker file records that it happened, so the retry goes through)."""

    name = "crash-once"

    def __init__(self, ctx, chunk: int = 1, marker: str = ""):
        super().__init__(ctx)
        self._chunk, self._marker = chunk, Path(marker)

    def process(self, frames, info):
        if info.chunk == self._chunk and not self._marker.exists():
            self._marker.write_text(str(os.getpid()))
            os._exit(17)  # the worker dies mid-chunk, like a segfault or an OOM kill
        return super().process(frames, info)


class Slow(Stamp):
    """Stamps frames slowly, so a test can kill the driver while chunks are still running."""

    name = "slow"

    def __init__(self, ctx, delay: float = 0.05):
        super().__init__(ctx)
        self._delay = delay

    def process(self, frames, info):
        time.sleep(self._delay * len(frames))
        return super().process(frames, info)


class FailOn(Stamp):
    """Raises on every attempt at chunk ``chunk`` (a bug or bad data, not a dead worker)."""

    name = "fail-on"

    def __init__(self, ctx, chunk: int = 1):
        super().__init__(ctx)
        self._chunk = chunk

    def process(self, frames, info):
        if info.chunk == self._chunk:
            raise ValueError(f"cannot process chunk {info.chunk}")
        return super().process(frames, info)


class BadInit(Stamp):
    """Fails while the worker builds it (a missing library, a broken model file)."""

    name = "bad-init"

    def __init__(self, ctx, **params):
        raise RuntimeError("cannot load libnvinfer.so.10 (test)")


class UndecodableWorker:
    """A chunk worker (as the driver sees it) whose chunks cannot be decoded: the error a real
    worker raises when the input is at fault (``MediaError``), which no retry can mend."""

    def info(self) -> dict:
        return {"slots": 1}

    def process(self, payload, attempt: int) -> dict:
        from ffray.errors import MediaError

        raise MediaError(f"chunk {payload.spec.index}: cannot open the h264 decoder (test)")


class Gate(Stamp):
    """Stamps frames, but waits while the file ``hold`` exists: a test keeps a job running for
    exactly as long as it needs to."""

    name = "gate"

    def __init__(self, ctx, hold: str = ""):
        super().__init__(ctx)
        self._hold = Path(hold)

    def process(self, frames, info):
        while self._hold.exists():
            time.sleep(0.05)
        return super().process(frames, info)


def kill_and_wait(procs: list, timeout: float = 10.0) -> None:
    """SIGKILL the given ``psutil.Process``es (gone ones are skipped) and wait for them."""
    import psutil

    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=timeout)


class Weighted(Stamp):
    """Stamps frames; takes ``model_paths`` as the face swap does, so the driver ships those
    files' bytes to the workers as object refs (``ctx.models``), which it checks arrived."""

    name = "weighted"

    def __init__(self, ctx, model_paths: dict | None = None):
        super().__init__(ctx)
        import ray

        got = {k: ray.get(v) if isinstance(v, ray.ObjectRef) else v for k, v in ctx.models.items()}
        want = {k: Path(p).read_bytes() for k, p in (model_paths or {}).items()}
        if got != want:
            raise ValueError(f"model bytes did not arrive: {sorted(got)} vs {sorted(want)}")
