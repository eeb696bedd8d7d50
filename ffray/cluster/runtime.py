"""Connecting to Ray: an embedded local instance by default, or an existing cluster.

- no ``--address``: start a private local instance (``address="local"``; never attach to a
  stale cluster by accident) and shut it down afterwards;
- ``--address auto|HOST:PORT``: attach to a running cluster (token auth as the cluster has it);
- ``--address ray://HOST:10001``: Ray Client.
"""

from __future__ import annotations

import gc
import logging
import threading
from dataclasses import dataclass, field

import ray

from ffray.cluster.watchdog import start as start_watchdog
from ffray.cluster.watchdog import stop as stop_watchdog
from ffray.errors import FFrayError
from ffray.settings import token_auth_for_clients as _token_auth_for_clients

NAMESPACE = "ffray"


@dataclass(frozen=True)
class ClusterInfo:
    address: str
    started_here: bool
    cpus: float
    gpus: float
    nodes: int
    cpu_nodes: int = 1  # alive nodes with at least one CPU
    watchdog: object = field(default=None, compare=False, repr=False)  # private instance only


def connect(address: str | None = None, verbose: bool = False) -> ClusterInfo:
    """Connect (or start) Ray; reuses an already initialised connection in this process."""
    started, watchdog = False, None
    if not ray.is_initialized():
        before = _sigterm()
        common = {"namespace": NAMESPACE, "logging_level": logging.INFO if verbose else logging.ERROR}
        try:
            if address in (None, "", "local"):
                kids = _children()
                ray.init(address="local", include_dashboard=False, log_to_driver=verbose, **common)
                started = True
                watchdog = start_watchdog(kids)  # tears the instance down if this process dies
            elif address.startswith("ray://"):
                _token_auth_for_clients()
                ray.init(address=address, **common)
            else:
                _token_auth_for_clients()
                ray.init(address=address, log_to_driver=verbose, **common)
        except Exception as e:  # noqa: BLE001 - Ray raises bare Exception, e.g. on a startup timeout
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise FFrayError(f"cannot connect to Ray at {address or 'local'}: {first}") from None
        _restore_sigterm(before)
    res = ray.cluster_resources()
    alive = [n for n in ray.nodes() if n.get("Alive")]
    cpu_nodes = sum(1 for n in alive if float(n.get("Resources", {}).get("CPU", 0)) >= 1)
    return ClusterInfo(address=address or "local", started_here=started,
                       cpus=float(res.get("CPU", 0)), gpus=float(res.get("GPU", 0)), nodes=len(alive),
                       cpu_nodes=max(1, cpu_nodes), watchdog=watchdog)


def _children() -> set[int]:
    import psutil

    return {c.pid for c in psutil.Process().children()}


def _sigterm():
    import signal

    return signal.getsignal(signal.SIGTERM)


def _restore_sigterm(handler) -> None:
    """``ray.init`` replaces the driver's SIGTERM handler (with one that exits at once, skipping
    the job's cleanup); a Python handler set before it (the CLI's: SIGTERM -> interrupted job) is
    put back so the job still ends cleanly."""
    import signal

    if callable(handler) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def disconnect(info: ClusterInfo) -> None:
    if ray.is_initialized() and info.started_here:
        ray.shutdown()
    stop_watchdog(info.watchdog)


class Teardown:
    """``disconnect`` on a thread of its own (``Teardown.start``): stopping a private instance is
    mostly waiting (Ray gives each of its processes a second to exit), so the driver assembles
    the output meanwhile. ``join`` waits for it and re-raises what it raised; the driver calls it
    before the job returns, so no Ray process outlives the job and the next job in this process
    starts from a clean state.

    Start it only once the job's Ray objects are gone: an object ref freed on another thread while
    Ray stops makes Ray's core worker end the process ("The core worker has already been
    shutdown", seen on the H200 when the refs of the job's model bytes died as the thread
    started). ``start`` collects reference cycles first, so none is freed during the stop."""

    def __init__(self, info: ClusterInfo):
        self.info, self.error = info, None
        self._thread: threading.Thread | None = None

    @classmethod
    def start(cls, info: ClusterInfo) -> Teardown:
        t = cls(info)
        if info.started_here:
            gc.collect()
            t._thread = threading.Thread(target=t._run, name="ray-teardown")
            t._thread.start()
        else:  # nothing to wait for: the connection to a cluster stays with this process
            disconnect(info)
        return t

    def _run(self) -> None:
        try:
            disconnect(self.info)
        except BaseException as e:  # noqa: BLE001 - handed to the joining thread
            self.error = e

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.error is not None:
            e, self.error = self.error, None
            raise e
